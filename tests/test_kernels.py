"""Differential tests: runtime_c kernels against their numpy references, byte for byte.

The numpy references are the specification, so every kernel is run on many random
cases (wide-range multipliers, raw int32 multipliers, extreme inputs) through ctypes,
and a subset again as a standalone C program built with ASan/UBSan. fixedpoint.py is
checked against hand-computed values and against fixedpoint.h itself.
"""

from __future__ import annotations

import ctypes
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcuc.kernels import REGISTRY, add, copy, fixedpoint, layernorm, linear, lut, softmax
from mcuc.kernels.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    quantize_multipliers,
    rdbpot,
    requantize,
    srdhm,
)
from mcuc.library import kernel_parts
from test_kernels_a16 import GENERATORS_A16
from test_tokenwise import gen_patch_embed, gen_tokenwise

from ckernels import (
    CFLAGS,
    SOURCES,
    CKernels,
    gcc,
    run_sanitized,
    struct_layout_c,
    struct_layout_py,
)

N_RANDOM = 400  # random cases per kernel


# --------------------------------------------------------------------------- fixedpoint

def test_srdhm_hand_values() -> None:
    # gemmlowp's nudge: positive ties round up, negative ties toward zero (i.e. ties to +inf).
    a = [3, -3, 1, -1, 1, -1, 1 << 30, INT32_MIN, INT32_MIN, INT32_MAX]
    b = [1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 29, 1 << 29, 1 << 30, INT32_MIN,
         INT32_MAX, INT32_MAX]
    want = [2, -1, 1, 0, 0, 0, 1 << 29, INT32_MAX, -(2**31 - 1), 2**31 - 2]
    assert srdhm(a, b).tolist() == want


def test_rdbpot_hand_values() -> None:
    x = [3, -3, 1, -1, -5, 5, -6, 7, INT32_MIN, INT32_MAX, -1, 12345]
    e = [1, 1, 1, 1, 2, 2, 2, 0, 31, 31, 31, 0]
    want = [2, -2, 1, -1, -1, 1, -2, 7, -1, 1, 0, 12345]
    assert rdbpot(x, e).tolist() == want


def test_requantize_hand_values() -> None:
    acc = [100, 100, -100, 1 << 30, -(1 << 30), 7, 0]
    mult = [1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30, INT32_MIN, INT32_MAX]
    shift = [0, -2, -2, 2, 2, -1, 30]
    want = [50, 13, -13, 1 << 30, -(1 << 30), -4, 0]
    assert requantize(acc, mult, shift).tolist() == want


def test_quantize_multiplier_hand_values() -> None:
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.25) == (1 << 30, -1)
    assert quantize_multiplier(-0.5) == (-(1 << 30), 0)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(1 - 2.0**-40) == (1 << 30, 1)  # mantissa rounds to 2^31
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-32) == (1 << 30, -31)
    assert quantize_multiplier(2.0**-40) == (0, 0)
    assert quantize_multiplier(2.0**29) == (1 << 30, 30)
    with pytest.raises(ValueError):
        quantize_multiplier(2.0**30)
    with pytest.raises(ValueError):
        quantize_multiplier(math.inf)


@settings(max_examples=300, deadline=None)
@given(st.floats(2.0**-31, 2.0**29), st.booleans())
def test_quantize_multiplier_reconstructs(mag: float, neg: bool) -> None:
    real = -mag if neg else mag
    mult, shift = quantize_multiplier(real)
    assert 2**30 <= abs(mult) < 2**31 and -31 <= shift <= 30
    assert abs(mult * 2.0 ** (shift - 31) - real) <= 1e-9 * abs(real)
    m, s = quantize_multipliers(np.array([real, 0.0, 2.0**-45]))
    assert (m.tolist(), s.tolist()) == ([mult, 0, 0], [shift, 0, 0])


def test_fixedpoint_matches_c(tmp_path: Path) -> None:
    src = tmp_path / "fp.c"
    src.write_text(
        '#include "mcuc/fixedpoint.h"\n'
        "void fp(const int32_t *a, const int32_t *b, const int32_t *e, int32_t *out, int n)\n"
        "{\n    for (int i = 0; i < n; ++i) {\n"
        "        out[3 * i] = mcuc_srdhm(a[i], b[i]);\n"
        "        out[3 * i + 1] = mcuc_rdbpot(a[i], e[i] < 0 ? -e[i] : e[i]);\n"
        "        out[3 * i + 2] = mcuc_requantize(a[i], b[i], e[i]);\n    }\n}\n"
    )
    so = tmp_path / "fp.so"
    gcc(["-shared", "-fPIC", "-O2", *CFLAGS, str(src), "-o", str(so)])
    fn = ctypes.CDLL(str(so)).fp
    rng = np.random.default_rng(1)
    n = 20000
    edges = np.array([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 1 << 30, -(1 << 30)])
    a = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    small = rng.integers(-70000, 70000, n)
    a = np.where(rng.random(n) < 0.4, small, a)
    a[:64], b[:64] = np.repeat(edges, 8), np.tile(edges, 8)
    e = rng.integers(-31, 31, n, endpoint=False)
    a32, b32, e32 = (np.ascontiguousarray(v, dtype=np.int32) for v in (a, b, e))
    out = np.zeros(3 * n, dtype=np.int32)
    ptr = [ctypes.c_void_p(v.ctypes.data) for v in (a32, b32, e32, out)]
    fn(*ptr, ctypes.c_int(n))
    got = out.reshape(n, 3)
    assert np.array_equal(got[:, 0], srdhm(a, b))
    assert np.array_equal(got[:, 1], rdbpot(a, np.abs(e)))
    assert np.array_equal(got[:, 2], requantize(a, b, e))


# --------------------------------------------------------------------------- random cases

@dataclass
class Case:
    params: dict
    inputs: list[np.ndarray]
    out_size: int
    out_init: np.ndarray | None = None


def rand_requant(rng: np.random.Generator, n: int | None = None, fit: float = 70.0) -> tuple:
    """(mult, shift) scalars, or arrays of length n, from one of four regimes.

    `fit` is a typical accumulator magnitude: the "fitted" regime maps it to ~int8 range
    so that outputs are mostly unsaturated.
    """
    size = 1 if n is None else n
    mode = rng.integers(5)
    if mode >= 3:  # fitted
        mult, shift = quantize_multipliers(rng.uniform(10, 200, size) / fit)
    elif mode == 0:  # realistic: quantized reals over a wide range, rarely negative or zero
        reals = 10.0 ** rng.uniform(-7, 2.5, size) * np.where(rng.random(size) < 0.1, -1, 1)
        reals[rng.random(size) < 0.05] = 0.0
        mult, shift = quantize_multipliers(reals)
    elif mode == 1:  # raw: any int32 multiplier, any shift
        mult = rng.integers(INT32_MIN, INT32_MAX, size, endpoint=True)
        shift = rng.integers(-31, 30, size, endpoint=True)
    else:  # edges
        mult = rng.choice([INT32_MIN, INT32_MAX, 0, 1 << 30, -(1 << 30), 1], size)
        shift = rng.choice([-31, -20, -1, 0, 1, 30], size)
    mult, shift = np.asarray(mult, np.int32), np.asarray(shift, np.int32)
    return (int(mult[0]), int(shift[0])) if n is None else (mult, shift)


def rand_s8(rng: np.random.Generator, n: int) -> np.ndarray:
    mode = rng.integers(6)
    if mode == 0:
        return np.full(n, -128, np.int8)
    if mode == 1:
        return np.full(n, 127, np.int8)
    if mode == 2:
        return np.full(n, rng.integers(-128, 128), np.int8)
    if mode == 3:  # narrow range
        c = int(rng.integers(-120, 120))
        return np.clip(rng.integers(c - 4, c + 5, n), -128, 127).astype(np.int8)
    return rng.integers(-128, 128, n).astype(np.int8)


def zp(rng: np.random.Generator) -> int:
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


def rand_bias(rng: np.random.Generator, n: int) -> np.ndarray | None:
    mode = rng.integers(4)
    if mode == 0:
        return None
    if mode == 3:  # at the int32 edges, so that the accumulator saturates
        edges = [INT32_MAX, INT32_MIN, INT32_MAX - 3000, INT32_MIN + 3000]
        return rng.choice(edges, n).astype(np.int32)
    hi = 20000 if mode == 1 else INT32_MAX
    return rng.integers(-hi, hi, n, endpoint=True).astype(np.int32)


def gen_conv2d(rng: np.random.Generator) -> Case:
    c_in, c_out = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    h_in, w_in = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pt, pl = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    pb = max(int(rng.integers(0, kh)), kh - h_in - pt)
    pr = max(int(rng.integers(0, kw)), kw - w_in - pl)
    mult, shift = rand_requant(rng, c_out, fit=70 * 70 * math.sqrt(c_in * kh * kw))
    p = dict(c_in=c_in, h_in=h_in, w_in=w_in, c_out=c_out,
             h_out=(h_in + pt + pb - kh) // sh + 1, w_out=(w_in + pl + pr - kw) // sw + 1,
             kh=kh, kw=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl,
             x_zp=zp(rng), y_zp=zp(rng),
             weights=rng.integers(-128, 128, c_out * c_in * kh * kw).astype(np.int8),
             bias=rand_bias(rng, c_out), mult=mult, shift=shift)
    return Case(p, [rand_s8(rng, c_in * h_in * w_in)], c_out * p["h_out"] * p["w_out"])


def gen_linear(rng: np.random.Generator) -> Case:
    rows, n = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    k = int(rng.integers(1, 41)) if rng.random() < 0.9 else int(rng.integers(200, 600))
    mult, shift = rand_requant(rng, n, fit=70 * 70 * math.sqrt(k))
    p = dict(rows=rows, k=k, n=n, x_zp=zp(rng), y_zp=zp(rng),
             weights=rand_s8(rng, n * k), bias=rand_bias(rng, n), mult=mult, shift=shift)
    if rng.random() < 0.3:  # --optimize speed: the int16 layout
        p = linear.widen(p)
    return Case(p, [rand_s8(rng, rows * k)], rows * n)


def gen_matmul(rng: np.random.Generator) -> Case:
    b, m, k, n = (int(rng.integers(1, hi)) for hi in (4, 6, 21, 6))
    mult, shift = rand_requant(rng, fit=70 * 70 * math.sqrt(k))
    p = dict(batch=b, m=m, k=k, n=n, a_zp=zp(rng), b_zp=zp(rng), y_zp=zp(rng),
             mult=mult, shift=shift)
    return Case(p, [rand_s8(rng, b * m * k), rand_s8(rng, b * k * n)], b * m * n)


def gen_add(rng: np.random.Generator) -> Case:
    size = int(rng.integers(1, 60))
    b_size = int(rng.choice([size, 1, int(rng.integers(1, size + 1))]))
    if rng.random() < 0.5:
        s_a, s_b, s_y = 10.0 ** rng.uniform(-3, 0, 3)
        mp = add.make_params(s_a, s_b, s_y)
    else:
        (am, ash), (bm, bsh), (ym, ysh) = (rand_requant(rng) for _ in range(3))
        mp = dict(a_mult=am, a_shift=ash, b_mult=bm, b_shift=bsh, y_mult=ym, y_shift=ysh)
    p = dict(size=size, b_size=b_size, a_zp=zp(rng), b_zp=zp(rng), y_zp=zp(rng), **mp)
    return Case(p, [rand_s8(rng, size), rand_s8(rng, b_size)], size)


def gen_rescale(rng: np.random.Generator) -> Case:
    size = int(rng.integers(1, 80))
    mult, shift = rand_requant(rng)
    p = dict(size=size, x_zp=zp(rng), y_zp=zp(rng), mult=mult, shift=shift)
    return Case(p, [rand_s8(rng, size)], size)


def gen_lut(rng: np.random.Generator) -> Case:
    size = int(rng.integers(1, 80))
    p = dict(size=size, table=rng.integers(-128, 128, 256).astype(np.int8))
    return Case(p, [rand_s8(rng, size)], size)


def gen_softmax(rng: np.random.Generator) -> Case:
    rows = int(rng.integers(1, 6))
    cols = int(rng.integers(1, 41)) if rng.random() < 0.9 else 4095
    if rng.random() < 0.7:
        table = softmax.make_exp_table(10.0 ** rng.uniform(-3, 0.5))
    else:  # any table within the spec: entries <= 2^20 (small ones: rounding ties)
        top = int(rng.choice([2**20, 1000, 10]))
        table = rng.integers(0, top, 256, endpoint=True).astype(np.uint32)
        table[0] = rng.integers(1, top, endpoint=True)
    x = rand_s8(rng, rows * cols)
    if rng.random() < 0.2:  # rows of equal values, row by row
        x = np.repeat(rng.integers(-128, 128, rows), cols).astype(np.int8)
    return Case(dict(rows=rows, cols=cols, exp_table=table), [x], rows * cols)


def gen_layernorm(rng: np.random.Generator) -> Case:
    rows = int(rng.integers(1, 6))
    cols = int(rng.integers(1, 65)) if rng.random() < 0.9 else 768
    hi = int(rng.choice([1 << 16, 1 << 22, INT32_MAX]))
    eps_q = int(rng.choice([0, int(rng.integers(0, 10**6)), int(rng.integers(0, 2**40))]))
    x = rand_s8(rng, rows * cols)
    if rng.random() < 0.2:  # constant rows: variance 0, sigma from eps_q (or 1)
        x = np.repeat(rng.integers(-128, 128, rows), cols).astype(np.int8)
    gamma_q, beta_q = (rng.integers(-hi, hi, cols, endpoint=True) for _ in range(2))
    if rng.random() < 0.3:  # multiples of 2^15: exact rounding ties are common
        gamma_q, beta_q = (rng.integers(-300, 300, cols) << 15 for _ in range(2))
    p = dict(rows=rows, cols=cols, y_zp=zp(rng), eps_q=eps_q,
             gamma_q=gamma_q.astype(np.int32), beta_q=beta_q.astype(np.int32))
    return Case(p, [x], rows * cols)


def gen_mean(rng: np.random.Generator) -> Case:
    o, r, i = (int(rng.integers(1, hi)) for hi in (5, 50, 6))
    mult, shift = rand_requant(rng, fit=70.0 * r)
    p = dict(outer=o, reduce=r, inner=i, x_zp=zp(rng), y_zp=zp(rng), mult=mult, shift=shift)
    return Case(p, [rand_s8(rng, o * r * i)], o * i)


def gen_copy(rng: np.random.Generator) -> Case:
    nd = int(rng.integers(0, 7))
    shape = [int(rng.integers(1, 4)) for _ in range(nd)]
    # Reads: any strides (negative, zero = broadcast), offset chosen to stay in bounds.
    in_strides = [int(rng.integers(-4, 5)) for _ in range(nd)]
    lo = sum(min(0, s * (n - 1)) for s, n in zip(in_strides, shape, strict=True))
    hi = sum(max(0, s * (n - 1)) for s, n in zip(in_strides, shape, strict=True))
    in_offset = -lo + int(rng.integers(0, 3))
    x = rand_s8(rng, in_offset + hi + 1 + int(rng.integers(0, 3)))
    # Writes: a box inside a bigger contiguous tensor laid out in a random axis order,
    # so distinct indices never collide (a transpose / concat part).
    full = [n + int(rng.integers(0, 3)) for n in shape]
    order = rng.permutation(nd)
    strides_full = copy.contiguous_strides([full[a] for a in order])
    out_strides = [0] * nd
    for pos, a in enumerate(order):
        out_strides[a] = strides_full[pos]
    out_offset = sum(int(rng.integers(0, f - n + 1)) * s
                     for f, n, s in zip(full, shape, out_strides, strict=True))
    out_size = int(np.prod(full, dtype=np.int64))
    mult, shift = rand_requant(rng)
    pad = [0] * (6 - nd)
    p = dict(ndim=nd, shape=shape + pad, in_strides=in_strides + pad,
             out_strides=out_strides + pad, in_offset=in_offset, out_offset=out_offset,
             requant=int(rng.integers(0, 2)), x_zp=zp(rng), y_zp=zp(rng),
             mult=mult, shift=shift)
    return Case(p, [x], out_size, rng.integers(-128, 128, out_size).astype(np.int8))


def rand_read_view(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple:
    """(off, bs, rs, cs, buffer) reading a [b, r, c] operand through a random view.

    Strides may be zero, negative or overlapping (reads only); the offset keeps every
    index in bounds, with spare bytes on both sides.
    """
    if rng.random() < 0.5:  # a box laid out in a random axis order (transposes, slices)
        full = [n + int(rng.integers(0, 3)) for n in shape]
        order = rng.permutation(3)
        st = copy.contiguous_strides([full[a] for a in order])
        strides = [0, 0, 0]
        for pos, a in enumerate(order):
            strides[a] = st[pos]
    else:
        strides = [int(rng.integers(-6, 7)) for _ in range(3)]
    lo = sum(min(0, s * (n - 1)) for s, n in zip(strides, shape, strict=True))
    hi = sum(max(0, s * (n - 1)) for s, n in zip(strides, shape, strict=True))
    off = -lo + int(rng.integers(0, 3))
    buf = rand_s8(rng, off + hi + 1 + int(rng.integers(0, 3)))
    return off, *strides, buf


def gen_attention(rng: np.random.Generator) -> Case:
    from mcuc.kernels import attention

    bt, m, d, dv = (int(rng.integers(1, hi)) for hi in (4, 6, 9, 9))
    n = int(rng.integers(1, 10)) if rng.random() < 0.9 else int(rng.integers(30, 70))
    p: dict = dict(batch=bt, q_len=m, kv_len=n, d=d, dv=dv)
    ins = []
    for x, shape in (("q", (bt, m, d)), ("k", (bt, n, d)), ("v", (bt, n, dv))):
        off, bs, rs, cs, buf = rand_read_view(rng, shape)
        p.update({f"{x}_off": off, f"{x}_bs": bs, f"{x}_rs": rs, f"{x}_cs": cs})
        p[f"{x}_table"] = (rng.integers(-128, 128, 256).astype(np.int8)
                           if rng.random() < 0.3 else None)
        ins.append(buf)
    # Output: a box in a bigger tensor, random axis order: injective writes.
    full = [e + int(rng.integers(0, 3)) for e in (bt, m, dv)]
    order = rng.permutation(3)
    st = copy.contiguous_strides([full[a] for a in order])
    ost = [0, 0, 0]
    for pos, a in enumerate(order):
        ost[a] = st[pos]
    o_off = sum(int(rng.integers(0, f - e + 1)) * s
                for f, e, s in zip(full, (bt, m, dv), ost, strict=True))
    p.update(o_off=o_off, o_bs=ost[0], o_rs=ost[1], o_cs=ost[2])
    s_mult, s_shift = rand_requant(rng, fit=70 * 70 * math.sqrt(d))
    o_mult, o_shift = rand_requant(rng, fit=256 * 70.0)
    if rng.random() < 0.7:
        table = softmax.make_exp_table(10.0 ** rng.uniform(-3, 0.5))
    else:
        top = int(rng.choice([2**20, 1000, 10]))
        table = rng.integers(0, top, 256, endpoint=True).astype(np.uint32)
        table[0] = rng.integers(1, top, endpoint=True)
    p.update(q_zp=zp(rng), k_zp=zp(rng), s_zp=zp(rng), s_mult=s_mult, s_shift=s_shift,
             v_zp=zp(rng), o_zp=zp(rng), o_mult=o_mult, o_shift=o_shift, exp_table=table)
    out_size = int(np.prod(full))
    assert attention.view_index(p, "o").max() < out_size
    return Case(p, ins, out_size, rng.integers(-128, 128, out_size).astype(np.int8))


GENERATORS: dict[str, Callable[[np.random.Generator], Case]] = {
    "attention": gen_attention,
    "conv2d": gen_conv2d, "linear": gen_linear, "matmul": gen_matmul, "add": gen_add,
    "rescale": gen_rescale, "lut": gen_lut, "softmax": gen_softmax,
    "layernorm": gen_layernorm, "mean": gen_mean, "copy": gen_copy,
    "tokenwise": gen_tokenwise, "patch_embed": gen_patch_embed,
    **GENERATORS_A16,
}


def expected(name: str, case: Case) -> np.ndarray:
    ref = REGISTRY[name].ref
    if REGISTRY[name].writes_through:  # copy, attention: they update `out`
        init = case.out_init if case.out_init is not None else np.zeros(case.out_size, np.int8)
        return ref(case.params, *case.inputs, out=init.copy())
    return ref(case.params, *case.inputs)


@pytest.fixture(scope="module")
def ck(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    return CKernels(tmp_path_factory.mktemp("ck"))


# --------------------------------------------------------------------------- C vs numpy

def test_every_kernel_has_a_generator_and_a_source() -> None:
    assert set(GENERATORS) == set(REGISTRY)
    stems = sorted(p.stem for p in SOURCES)
    # any other file is a part of a kernel's variant split over files (linear_dsp.c)
    parts = {s for k in REGISTRY for s in kernel_parts(k, stems)}
    assert set(REGISTRY) <= set(stems) and set(stems) - set(REGISTRY) == parts


def test_struct_layout_matches_header(tmp_path: Path) -> None:
    src, exe = tmp_path / "layout.c", tmp_path / "layout"
    src.write_text(struct_layout_c())
    gcc([*CFLAGS, str(src), "-o", str(exe)])
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    c_layout = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    assert c_layout == struct_layout_py()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_c_matches_reference(ck: CKernels, name: str) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    kdef = REGISTRY[name]
    for i in range(N_RANDOM):
        case = GENERATORS[name](rng)
        kdef.check_params(case.params)
        want = expected(name, case)
        assert want.dtype == np.int8 and want.size == case.out_size
        got = ck.run(name, case.params, case.inputs, case.out_size, case.out_init)
        assert np.array_equal(got, want), f"{name} case {i}: {case.params}"


@pytest.mark.parametrize("name", sorted(k for k, v in REGISTRY.items() if v.inplace_ok))
def test_inplace(ck: CKernels, name: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        case = GENERATORS[name](rng)
        want = expected(name, case)
        got = ck.run(name, case.params, case.inputs, case.out_size, inplace=True)
        assert np.array_equal(got, want)


def test_inplace_flags() -> None:
    assert {k for k, v in REGISTRY.items() if v.inplace_ok} == {
        "add", "rescale", "lut", "softmax", "layernorm", "add16"}


def test_sanitizers(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    cases = []
    for name, gen in sorted(GENERATORS.items()):
        for _ in range(6):
            c = gen(rng)
            cases.append((name, c.params, c.inputs, expected(name, c), c.out_init))
    run_sanitized(cases, tmp_path)


# --------------------------------------------------------------------------- reference semantics

def test_conv2d_ref_matches_loop_convolution() -> None:
    # The vectorised sliding window against the definition, tap by tap.
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, 2 * 5 * 6).astype(np.int8)
    w = rng.integers(-128, 128, 3 * 2 * 3 * 3).astype(np.int8)
    bias = np.array([5, -70000, 123456], np.int32)
    mult, shift = quantize_multipliers(np.array([1e-3, 3e-4, 2e-3]))
    p = dict(c_in=2, h_in=5, w_in=6, c_out=3, h_out=3, w_out=3, kh=3, kw=3, stride_h=2,
             stride_w=2, pad_top=1, pad_left=1, x_zp=-3, y_zp=4, weights=w, bias=bias,
             mult=mult, shift=shift)
    xs = x.reshape(2, 5, 6).astype(np.int64) + 3
    wk = w.reshape(3, 2, 3, 3).astype(np.int64)
    want = np.zeros((3, 3, 3), np.int64)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                acc = int(bias[o])
                for c in range(2):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = 2 * i - 1 + ky, 2 * j - 1 + kx
                            if 0 <= iy < 5 and 0 <= ix < 6:
                                acc += int(xs[c, iy, ix] * wk[o, c, ky, kx])
                want[o, i, j] = 4 + int(requantize(acc, mult[o], shift[o]))
    got = REGISTRY["conv2d"].ref(p, x).reshape(3, 3, 3)
    assert np.array_equal(got, np.clip(want, -128, 127))
    assert len(set(got.reshape(-1).tolist())) > 5  # not a saturated, degenerate case


def test_softmax_equal_row_and_table() -> None:
    t = softmax.make_exp_table(0.1)
    assert t[0] == 2**20 and t[1] == math.floor(math.exp(-0.1) * 2**20 + 0.5)
    p = dict(rows=1, cols=4, exp_table=t)
    # four equal logits: each exactly 1/4 -> 64/256 -> -128 + 64
    assert REGISTRY["softmax"].ref(p, np.full(4, 9, np.int8)).tolist() == [-64] * 4
    assert REGISTRY["softmax"].ref(dict(p, cols=1), np.array([5], np.int8)).tolist() == [127]
    with pytest.raises(ValueError):
        REGISTRY["softmax"].ref(dict(p, cols=5000), np.zeros(5000, np.int8))


def test_softmax_rounding_hand_values() -> None:
    table = np.zeros(256, np.uint32)
    table[:2] = [2, 1]
    # e = [2, 1], sum = 3: y = -128 + (e * 256 + 1) // 3, where 257 // 3 rounds 85.67 down
    got = REGISTRY["softmax"].ref(dict(rows=1, cols=2, exp_table=table), np.array([1, 0], np.int8))
    assert got.tolist() == [-128 + 513 // 3, -128 + 257 // 3]


def test_softmax_approximates_float() -> None:
    s = 0.05
    x = np.random.default_rng(2).integers(-128, 128, 64).astype(np.int8)
    p = dict(rows=4, cols=16, exp_table=softmax.make_exp_table(s))
    got = (REGISTRY["softmax"].ref(p, x).astype(np.float64) + 128) / 256
    z = np.exp(s * x.reshape(4, 16).astype(np.float64))
    assert np.abs(got - (z / z.sum(1, keepdims=True)).reshape(-1)).max() <= 1 / 256 + 1e-9


def test_layernorm_isqrt_exact() -> None:
    r = np.random.default_rng(4).integers(0, 2**31, 5000)
    v = np.concatenate([r * r - 1, r * r, r * r + 1, np.arange(100)])
    v = np.clip(v, 0, None)
    assert layernorm.isqrt(v).tolist() == [math.isqrt(int(a)) for a in v]


def test_layernorm_rounding_hand_values() -> None:
    # Constant row, eps_q 0 -> sigma 1, d 0: y = y_zp + round_div(beta_q, 2^16), ties away.
    beta = np.array([3 << 15, -3 << 15, 1 << 15, -(1 << 15), (1 << 15) - 1], np.int32)
    p = dict(rows=1, cols=5, y_zp=1, eps_q=0, gamma_q=np.ones(5, np.int32), beta_q=beta)
    assert REGISTRY["layernorm"].ref(p, np.full(5, 7, np.int8)).tolist() == [3, -1, 2, 0, 1]
    # Two values: d = [-2, 2] * 1, var = 4, sigma = 2 -> y = round(d * g / (2 * 2^16)).
    p = dict(rows=1, cols=2, y_zp=0, eps_q=0, gamma_q=np.array([3 << 15, 3 << 15], np.int32),
             beta_q=np.zeros(2, np.int32))
    assert REGISTRY["layernorm"].ref(p, np.array([0, 2], np.int8)).tolist() == [-2, 2]


def test_accumulator_saturates(ck: CKernels) -> None:
    # k * 255 * 255 > INT32_MAX: the exact sum must saturate to INT32_MAX, not wrap.
    k = 40000
    p = dict(batch=1, m=1, k=k, n=1, a_zp=-128, b_zp=-128, y_zp=0, mult=1 << 30, shift=-30)
    a = np.full(k, 127, np.int8)
    want = REGISTRY["matmul"].ref(p, a, a)
    assert want.tolist() == [int(requantize(INT32_MAX, 1 << 30, -30))] == [1]
    assert np.array_equal(ck.run("matmul", p, [a, a], 1), want)


def test_layernorm_approximates_float() -> None:
    rng = np.random.default_rng(8)
    cols, s_x, s_y, zp_x, zp_y = 32, 0.05, 0.02, 3, -2
    gamma, beta = rng.uniform(0.5, 1.5, cols), rng.uniform(-0.5, 0.5, cols)
    gq, bq, eps_q = layernorm.make_params(gamma, beta, 1e-5, cols, s_x, s_y)
    x = rng.integers(-100, 100, 3 * cols).astype(np.int8)
    p = dict(rows=3, cols=cols, y_zp=zp_y, eps_q=eps_q, gamma_q=gq, beta_q=bq)
    got = REGISTRY["layernorm"].ref(p, x).astype(np.float64)
    xr = s_x * (x.reshape(3, cols).astype(np.float64) - zp_x)
    norm = (xr - xr.mean(1, keepdims=True)) / np.sqrt(xr.var(1, keepdims=True) + 1e-5)
    want = np.clip(np.round((gamma * norm + beta) / s_y) + zp_y, -128, 127).reshape(-1)
    assert np.abs(got - want).max() <= 2


def test_add_make_params_approximates_float() -> None:
    s_a, s_b, s_y = 0.03, 0.011, 0.05
    a = np.arange(-128, 128, dtype=np.int8)
    b = a[::-1].copy()
    p = dict(size=256, b_size=256, a_zp=5, b_zp=-7, y_zp=1, **add.make_params(s_a, s_b, s_y))
    got = REGISTRY["add"].ref(p, a, b).astype(np.float64)
    real = s_a * (a.astype(np.float64) - 5) + s_b * (b.astype(np.float64) + 7)
    assert np.abs(got - np.clip(np.round(real / s_y) + 1, -128, 127)).max() <= 1


def test_lut_make_table() -> None:
    t = lut.make_table(np.tanh, 0.05, 10, 1 / 128, 0)
    assert t.dtype == np.int8 and t.size == 256
    assert t[10 + 128] == 0 and t[0] == round(math.tanh(0.05 * (-128 - 10)) * 128)
    t = lut.make_table(lambda v: v, 1.0, 0, 2.0, 0)  # exact halves: away from zero
    assert t[3 + 128] == 2 and t[-3 + 128] == -2 and t[255] == 64
    x = np.array([-128, 0, 127], np.int8)
    assert REGISTRY["lut"].ref(dict(size=3, table=t), x).tolist() == [-64, 0, 64]


def test_copy_transpose_and_scalar() -> None:
    x = np.arange(24, dtype=np.int8)
    p = copy.make_transpose((2, 3, 4), (2, 0, 1))
    got = REGISTRY["copy"].ref(p, x)
    assert np.array_equal(got, x.reshape(2, 3, 4).transpose(2, 0, 1).reshape(-1))
    scalar = dict(p, ndim=0, in_offset=5, out_offset=2)
    assert REGISTRY["copy"].ref(scalar, x, out=np.zeros(4, np.int8)).tolist() == [0, 0, 5, 0]


def test_linear_helpers() -> None:
    mult, shift = linear.make_requant(0.02, np.array([0.001, 0.5]), 0.1)
    assert mult.dtype == np.int32 and (mult[0], shift[0]) == quantize_multiplier(0.0002)
    b = linear.quantize_bias(np.array([1.0, -1e9]), 0.02, np.array([0.01, 0.01]))
    assert b.tolist() == [5000, INT32_MIN]


def test_macs() -> None:
    p = dict(rows=197, k=192, n=576)
    assert REGISTRY["linear"].macs(p) == 197 * 192 * 576
    assert REGISTRY["matmul"].macs(dict(batch=3, m=197, k=64, n=197)) == 3 * 197 * 64 * 197
    assert REGISTRY["softmax"].macs(dict(rows=1, cols=1)) == 0


def test_fixedpoint_module_is_the_one_used() -> None:
    # The references requantize through fixedpoint.requantize (one source of truth).
    assert REGISTRY["linear"].ref.__globals__["requantize"] is fixedpoint.requantize
