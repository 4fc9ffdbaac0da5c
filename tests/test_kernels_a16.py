"""The A16 kernels (add16, copy16, layernorm16: int16 activations, quant/wide.py).

Their random-case generators live here and join test_kernels.GENERATORS, so the C is
checked against the numpy reference there (400 cases through ctypes, the in-place run,
ASan/UBSan); the tests below pin the references' meaning with hand-made values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuc.kernels import add16, copy16, layernorm, layernorm16
from mcuc.kernels.fixedpoint import quantize_multiplier


@dataclass
class Case:
    params: dict
    inputs: list[np.ndarray]
    out_size: int
    out_init: np.ndarray | None = None


def rand_s16(rng: np.random.Generator, n: int) -> np.ndarray:
    """n int16 values (extremes, constants, narrow or full range) as their bytes."""
    mode = rng.integers(6)
    if mode == 0:
        v = np.full(n, -32768)
    elif mode == 1:
        v = np.full(n, 32767)
    elif mode == 2:
        v = np.full(n, rng.integers(-32768, 32768))
    elif mode == 3:
        v = np.clip(rng.integers(-300, 300) * 100 + rng.integers(-50, 51, n), -32768, 32767)
    else:
        v = rng.integers(-32768, 32768, n)
    return np.asarray(v, dtype="<i2").view(np.int8)


def rand_any(rng: np.random.Generator, n: int, wide: int) -> np.ndarray:
    if wide:
        return rand_s16(rng, n)
    return rng.integers(-128, 128, n).astype(np.int8)


def _requant(rng: np.random.Generator) -> tuple[int, int]:
    from test_kernels import rand_requant

    return rand_requant(rng)


def _zp(rng: np.random.Generator, wide: int) -> int:
    if wide:  # mcuc's int16 tensors are symmetric; the kernel allows |zp| <= 32767
        return int(rng.choice([0, 0, int(rng.integers(-32767, 32768))]))
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


def gen_add16(rng: np.random.Generator) -> Case:
    size = int(rng.integers(1, 60))
    b_size = int(rng.choice([size, 1, int(rng.integers(1, size + 1))]))
    aw, bw, yw = (int(v) for v in rng.integers(0, 2, 3))
    if rng.random() < 0.5:
        s_a, s_b, s_y = 10.0 ** rng.uniform(-4, 0, 3)
        mp = add16.make_params(s_a, s_b, s_y)
    else:
        (am, ash), (bm, bsh), (ym, ysh) = (_requant(rng) for _ in range(3))
        mp = dict(a_mult=am, a_shift=ash, b_mult=bm, b_shift=bsh, y_mult=ym, y_shift=ysh)
    p = dict(size=size, b_size=b_size, a_wide=aw, b_wide=bw, y_wide=yw, a_zp=_zp(rng, aw),
             b_zp=_zp(rng, bw), y_zp=_zp(rng, yw), **mp)
    a = rand_any(rng, size, aw)
    out_size = size * (2 if yw else 1)
    if a.size < out_size:  # room for the in-place run (test_kernels.test_inplace)
        a = np.concatenate([a, rng.integers(-128, 128, out_size - a.size).astype(np.int8)])
    return Case(p, [a, rand_any(rng, b_size, bw)], out_size)


def gen_copy16(rng: np.random.Generator) -> Case:
    from test_kernels import gen_copy

    c = gen_copy(rng)
    xw, yw = (int(v) for v in rng.integers(0, 2, 2))
    if not xw and not yw:
        yw = 1
    p = dict(c.params, x_wide=xw, y_wide=yw)
    n_in, n_out = c.inputs[0].size, c.out_size
    x = rand_any(rng, n_in, xw)
    init = rand_any(rng, n_out, yw)
    return Case(p, [x], n_out * (2 if yw else 1), init)


def gen_layernorm16(rng: np.random.Generator) -> Case:
    rows = int(rng.integers(1, 6))
    cols = int(rng.integers(1, 65)) if rng.random() < 0.9 else 512
    hi = int(rng.choice([1 << 16, 1 << 22, 2**31 - 1]))
    eps_q = int(rng.choice([0, int(rng.integers(0, 10**6)), int(rng.integers(0, 2**50))]))
    x = rand_s16(rng, rows * cols)
    if rng.random() < 0.2:  # constant rows
        x = np.repeat(rng.integers(-32768, 32768, rows), cols).astype("<i2").view(np.int8)
    gamma_q, beta_q = (rng.integers(-hi, hi, cols, endpoint=True) for _ in range(2))
    p = dict(rows=rows, cols=cols, y_zp=_zp(rng, 0), eps_q=eps_q,
             gamma_q=gamma_q.astype(np.int32), beta_q=beta_q.astype(np.int32))
    return Case(p, [x], rows * cols)


GENERATORS_A16 = {"add16": gen_add16, "copy16": gen_copy16, "layernorm16": gen_layernorm16}


def s16(v) -> np.ndarray:
    return np.asarray(v, dtype="<i2").view(np.int8)


def test_add16_sums_int16_values() -> None:
    # a at 1/1000, b (int8) at 1/10, y (int16) at 1/1000: y = a + 100 b exactly here.
    p = dict(size=4, b_size=1, a_wide=1, b_wide=0, y_wide=1, a_zp=0, b_zp=0, y_zp=0,
             **add16.make_params(1e-3, 0.1, 1e-3))
    y = add16.ref(p, s16([1, -2, 32600, -32768]), np.array([3], np.int8)).view("<i2")
    assert y.tolist() == [301, 298, 32767, -32468]


def test_add16_narrow_output_rounds_and_saturates() -> None:
    p = dict(size=3, b_size=3, a_wide=1, b_wide=1, y_wide=0, a_zp=0, b_zp=0, y_zp=-5,
             **add16.make_params(1e-3, 1e-3, 0.01))
    y = add16.ref(p, s16([14, -16, 32767]), s16([0, 0, 32767]))
    assert y.tolist() == [-5 + 1, -5 - 2, 127]


def test_copy16_requantizes_int8_onto_an_int16_grid() -> None:
    mult, shift = quantize_multiplier(0.5 / (0.5 / 256))  # s_x / s_y = 256
    p = dict(ndim=1, shape=[3, 0, 0, 0, 0, 0], in_strides=[1] + [0] * 5,
             out_strides=[1] + [0] * 5, in_offset=0, out_offset=1, requant=1, x_zp=-128,
             y_zp=0, mult=mult, shift=shift, x_wide=0, y_wide=1)
    out = copy16.ref(p, np.array([-128, -1, 127], np.int8), out=s16([7, 7, 7, 7]))
    assert out.view("<i2").tolist() == [7, 0, 127 * 256, 32767]


def test_layernorm16_equals_layernorm_on_int8_values() -> None:
    # The formula is layernorm's: an int16 row holding int8 values gives its output.
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, 3 * 16).astype(np.int8)
    p = dict(rows=3, cols=16, y_zp=3, eps_q=5,
             gamma_q=rng.integers(-2**20, 2**20, 16).astype(np.int32),
             beta_q=rng.integers(-2**20, 2**20, 16).astype(np.int32))
    assert np.array_equal(layernorm16.ref(p, s16(x)), layernorm.ref(p, x))
