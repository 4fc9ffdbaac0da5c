"""Differential tests: runtime_c kernels against their numpy references, byte for byte.

The numpy references are the specification, so every kernel is run on many random
cases (wide-range multipliers, raw int32 multipliers, extreme inputs) through ctypes,
and a subset again as a standalone C program built with ASan/UBSan. fixedpoint.py is
checked in test_fixedpoint.py, the references' own semantics in test_kernel_refs.py.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, add, copy, linear, softmax
from mcuc.kernels.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multipliers,
    requantize,
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


def test_accumulator_saturates(ck: CKernels) -> None:
    # k * 255 * 255 > INT32_MAX: the exact sum must saturate to INT32_MAX, not wrap.
    k = 40000
    p = dict(batch=1, m=1, k=k, n=1, a_zp=-128, b_zp=-128, y_zp=0, mult=1 << 30, shift=-30)
    a = np.full(k, 127, np.int8)
    want = REGISTRY["matmul"].ref(p, a, a)
    assert want.tolist() == [int(requantize(INT32_MAX, 1 << 30, -30))] == [1]
    assert np.array_equal(ck.run("matmul", p, [a, a], 1), want)
