"""The DSP variant of linear (linear.c, linear_dsp.c, linear_row1.c) against the numpy
reference, on the host (see test_kernels_dsp.py for how a variant is built here): random
shapes and every rows loop, the short epilogue at its limits, the table-fused plans, the
one-row loop, the weight layouts, and the int32 bound of the sum."""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, linear
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from mcuc.schedule.schedule import Schedule, Step
from mcuc.schedule.widen import for_board
from test_kernels import Case, rand_bias, rand_requant, rand_s8, zp

from ckernels import ROOT, CKernels, fill_struct

# linear_dsp.c unpacks the x rows of a pair once (unpacked_rows) up to this k
PRE_MAX_K = int(re.search(r"#define MCUC_PRE_MAX_K (\d+)",
                          (ROOT / "runtime_c/src/linear_internal.h").read_text()).group(1))


def gen_linear_dsp(rng: np.random.Generator) -> Case:
    """Shapes that exercise every block and tail of the variant, values at the edges."""
    rows, n = int(rng.integers(1, 6)), int(rng.integers(1, 14))
    k = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 16, 64, int(rng.integers(1, 80)),
                        int(rng.integers(150, 400)), PRE_MAX_K, PRE_MAX_K + 16]))
    mult, shift = rand_requant(rng, n, fit=70 * 70 * math.sqrt(k))
    if rng.random() < 0.3:  # every multiplier in [2^30, 2^31), as the short epilogue needs
        mult = ((np.abs(mult.astype(np.int64)) | (1 << 30)) & (2**31 - 1)).astype(np.int32)
    w = rand_s8(rng, n * k)
    if rng.random() < 0.2:
        w = np.full(n * k, -128, np.int8)
    p = dict(rows=rows, k=k, n=n, x_zp=zp(rng), y_zp=zp(rng), weights=w,
             bias=rand_bias(rng, n), mult=mult, shift=shift)
    if rng.random() < 0.4:  # the loop without the subtraction (a folded zero point)
        p["x_zp"] = 0
    if rng.random() < 0.35:  # --optimize speed: int16 weights
        p = linear.widen(p)
    return Case(p, [rand_s8(rng, rows * k)], rows * n)


def worst_case(k: int, n: int, bias: int, sign: int) -> Case:
    """|x - x_zp| = 255 and w = -128 everywhere: the sum is +-255 * 128 * k exactly."""
    x_val, x_zp = (127, -128) if sign > 0 else (-128, 127)
    p = dict(rows=1, k=k, n=n, x_zp=x_zp, y_zp=0, weights=np.full(n * k, -128, np.int8),
             bias=np.full(n, bias, np.int32), mult=np.full(n, 1 << 30, np.int32),
             shift=np.full(n, -30, np.int32))
    return Case(p, [np.full(k, x_val, np.int8)], n)


def test_int32_bound_constant_matches_c() -> None:
    src = (ROOT / "runtime_c" / "src" / "linear_internal.h").read_text()
    c_max = int(re.search(r"#define MCUC_DSP_MAX_K (\d+)", src).group(1))
    assert c_max == linear.DSP_MAX_K == 65793
    assert 255 * 128 * linear.DSP_MAX_K <= INT32_MAX < 255 * 128 * (linear.DSP_MAX_K + 1)


def short_epilogue(p: dict) -> bool:
    """linear.c's plan: the short epilogue for a folded zero point when every shift is in
    [-31, -1], every multiplier in [2^30, 2^31) and the accumulators stay below 2^30
    (short_epilogue_ok)."""
    bias = 0 if p["bias"] is None else int(np.abs(np.asarray(p["bias"], np.int64)).max())
    shift, mult = np.asarray(p["shift"]), np.asarray(p["mult"], np.int64)
    return (p["x_zp"] == 0 and bool(((shift >= -31) & (shift <= -1)).all())
            and bool((mult >= 2**30).all()) and 255 * 128 * p["k"] + bias < 2**30)


def gen_short_edge(rng: np.random.Generator) -> Case:
    """The short epilogue at its limits: |sum| = 255 * 128 * k with the bias just inside
    2^30 (or just outside), extreme multipliers, shifts -1 and -31."""
    k, n, rows = int(rng.integers(1, 70)), int(rng.integers(1, 10)), int(rng.integers(1, 5))
    if rng.random() < 0.3:  # k % 16 == 0: the loops without tails (unpacked_rows for rows >= 2)
        k = int(rng.choice([16, 32, 48, 64, PRE_MAX_K + 16]))  # + 16: past the unpacked loops
    c = worst_case(k, n, 0, int(rng.choice([-1, 1])))
    edge = 2**30 - 1 - 255 * 128 * k + int(rng.choice([0, 0, 0, 1]))  # 1: the general path
    bias = rng.choice([edge, -edge, 0, int(rng.integers(-edge, edge))], n).astype(np.int32)
    if rng.random() < 0.6:  # normal form (quantize_multiplier's): the short epilogue's
        mult = rng.choice([INT32_MAX, 1 << 30, int(rng.integers(1 << 30, 2**31))], n)
    else:  # any, 2^30 - 1 (just below it) and the negative extreme included
        mult = rng.choice([INT32_MIN, INT32_MAX, (1 << 30) - 1, 0,
                           int(rng.integers(INT32_MIN, INT32_MAX))], n)
    mult = mult.astype(np.int32)
    shift = rng.choice([-1, -31, int(rng.integers(-31, 0))], n).astype(np.int32)
    p = dict(c.params, rows=rows, bias=bias, mult=mult, shift=shift, y_zp=zp(rng))
    if rng.random() < 0.7:  # a folded zero point: the short epilogue's loops
        p["x_zp"] = 0
    if rng.random() < 0.35:
        p = linear.widen(p)
    return Case(p, [np.tile(c.inputs[0], rows)], rows * n)


def row_path(p: dict) -> str:
    """Which rows loop of linear.c a call takes: pairs with x unpacked once (unpacked_rows:
    short epilogue, k % 16 == 0, k <= MCUC_PRE_MAX_K), pairs unpacking x in the loop
    (row_pairs, int8 weights), or one row at a time."""
    if p["rows"] < 2:
        return "rows"
    if short_epilogue(p) and p["k"] % 16 == 0 and p["k"] <= PRE_MAX_K:
        return "pre"
    return "rows" if p.get("weights16") is not None else "pairs"


def test_linear_dsp_matches_reference(ck_dsp: CKernels) -> None:
    """Random and edge cases; both epilogues and every rows loop (pairs with x unpacked
    once, pairs unpacking in the loop, a last odd row, one row at a time) over int8 and
    widened weights are each taken many times."""
    rng = np.random.default_rng(23)
    seen: dict[tuple[bool, bool, str], int] = {}
    mul16: dict[tuple[bool, bool], int] = {}  # short, k % 16 == 0: loops without tails
    for i in range(1200):
        case = gen_linear_dsp(rng) if i % 3 else gen_short_edge(rng)
        want = linear.ref(case.params, *case.inputs)
        got = ck_dsp.run("linear", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        wide = case.params.get("weights16") is not None
        key = (short_epilogue(case.params), wide, row_path(case.params))
        seen[key] = seen.get(key, 0) + 1
        if key[0] and case.params["k"] % 16 == 0:
            big = case.params["k"] > PRE_MAX_K
            mul16[(wide, big)] = mul16.get((wide, big), 0) + 1
    # 2 epilogues x (int8: pairs, rows; widened: rows) + the short pre pairs of both
    assert len(seen) == 8 and min(seen.values()) > 10, seen
    assert len(mul16) == 4 and min(mul16.values()) >= 4, mul16


def test_zero_point_fold_is_exact() -> None:
    """fold_zero_point moves x_zp into the bias: the reference gives the same bytes, and a
    fold whose bias would leave int32 is refused."""
    rng = np.random.default_rng(232)
    folded = 0
    for _ in range(300):
        c = gen_linear_dsp(rng)
        q = linear.fold_zero_point(c.params)
        if q is not c.params:
            folded += 1
            assert q["x_zp"] == 0
        assert np.array_equal(linear.ref(q, *c.inputs), linear.ref(c.params, *c.inputs))
    assert folded > 50  # gen_linear_dsp: zero points of 0 and layers without bias stay
    c = worst_case(8, 2, INT32_MIN, 1)  # x_zp = -128, w = -128: the bias drops by 2^17
    assert linear.fold_zero_point(c.params) is c.params


def test_widened_weights_layout() -> None:
    """widen_layout is pack_weights' positions as int16 with each word in the order
    0, 2, 1, 3 (linear.c's ref_rows indexes it so; here against the plain matrix)."""
    for n, k in [(1, 1), (4, 4), (5, 7), (8, 3), (12, 64), (7, 9), (6, 5)]:
        w = (np.arange(n * k) % 251 - 125).reshape(n, k)
        wide = linear.widen_layout(w, n, k)
        assert wide.dtype == np.int16 and wide.size == n * k
        n4, k4 = n - n % 4, k - k % 4
        for j in range(n):
            for i in range(k):
                t = i % 4
                if j < n4 and i < k4:
                    pos = (j - j % 4) * k + 4 * (i - t) + 4 * (j % 4) + [0, 2, 1, 3][t]
                elif j < n4:
                    pos = (j - j % 4) * k + 4 * i + j % 4
                else:
                    pos = j * k + (i - t + [0, 2, 1, 3][t] if i < k4 else i)
                assert wide[pos] == w[j, i], (n, k, j, i)


def test_packed_weights_layout() -> None:
    """pack_weights is a permutation with the block layout linear.c indexes."""
    for n, k in [(1, 1), (4, 4), (5, 7), (8, 3), (12, 64), (7, 9)]:
        w = np.arange(n * k) % 251
        packed = linear.pack_weights(w, n, k)
        assert sorted(packed.tolist()) == sorted(w.tolist())
        k4 = k - k % 4
        for j in range(n - n % 4):
            for i in range(k):
                pos = j // 4 * 4 * k + (4 * (i // 4 * 4) + 4 * (j % 4) + i % 4 if i < k4
                                        else 4 * i + j % 4)
                assert packed[pos] == w[j * k + i]
        for j in range(n - n % 4, n):
            assert np.array_equal(packed[j * k:(j + 1) * k], w[j * k:(j + 1) * k])


def short16(rng: np.random.Generator, p: dict) -> dict:
    """Linear params p made to take the short epilogue (x_zp 0, multipliers in [2^30,
    2^31), shifts in [-31, -1], small biases): with k % 16 == 0 and k <= MCUC_PRE_MAX_K,
    the plans mcuc_lin_short16 / mcuc_lin_wide_short16 and their _lut twins."""
    n = p["n"]
    q = dict(p, x_zp=0, mult=rng.integers(1 << 30, 2**31, n).astype(np.int32),
             shift=rng.integers(-31, 0, n).astype(np.int32),
             bias=rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32))
    if rng.random() < 0.5:  # near the output range: tables see every index
        q["shift"] = rng.integers(-8, -2, n).astype(np.int32)
    assert linear.derived(q)["short_ok"] == 1
    return q


def test_linear_lut_planned_matches_linear_then_table(ck_dsp: CKernels) -> None:
    """mcuc_linear_lut_planned_s8 (the table in the epilogue of the unpacked short plans,
    else a pass after the others) equals the spec's linear, then table[y + 128]: row pairs,
    a last odd row and plain channels past the blocks of four, int8 and widened weights,
    and the plans without the fused epilogue."""
    rng = np.random.default_rng(232)
    lib = ck_dsp.lib
    lib.mcuc_linear_plan.restype = ctypes.c_int32
    fused = {False: 0, True: 0}
    for i in range(300):
        case = gen_linear_dsp(rng) if i % 3 else gen_short_edge(rng)
        p = case.params
        if i % 2:
            k = int(rng.choice([16, 32, 48, 64, PRE_MAX_K]))
            rows = int(rng.integers(1, 6))
            p = short16(rng, dict(p, k=k, rows=rows, weights=rand_s8(rng, p["n"] * k),
                                  weights16=None))
            if rng.random() < 0.4:
                p = linear.widen(p)
            x = [rand_s8(rng, rows * k)]
        else:
            x = case.inputs
        table = rng.integers(-128, 128, 256).astype(np.int8)
        want = table[linear.ref(p, *x).astype(np.int64) + 128]
        keep: list = []
        st = fill_struct(REGISTRY["linear"], p, keep)
        plan = lib.mcuc_linear_plan(ctypes.byref(st))
        xa = np.ascontiguousarray(x[0], np.int8)
        y = np.zeros(p["rows"] * p["n"], np.int8)
        lib.mcuc_linear_lut_planned_s8(ctypes.byref(st), ctypes.c_int32(plan),
                                       ctypes.c_void_p(table.ctypes.data),
                                       ctypes.c_void_p(xa.ctypes.data),
                                       ctypes.c_void_p(y.ctypes.data))
        assert np.array_equal(y, want), f"case {i}: {p}"
        fused[plan in (3, 6)] += 1  # PLAN_SHORT16, PLAN_WIDE + PLAN_SHORT16
    assert min(fused.values()) > 60, fused


def row1_path(p: dict) -> bool:
    """Whether mcuc_linear_s8 takes linear_row1.c's loop (mcuc_lin_row1_ok, rows == 1)."""
    return (p["rows"] == 1 and p.get("weights16") is not None and p["x_zp"] == 0
            and bool(linear.derived(p)["short_ok"]) and p["n"] >= 4 and p["k"] % 16 == 0
            and 0 < p["k"] <= PRE_MAX_K)


def gen_row1(rng: np.random.Generator) -> Case:
    """One-row calls (a classifier head) around linear_row1.c's path: k % 16 == 0 up to
    MCUC_PRE_MAX_K, n from 1 (odd tails: 1, 2, 3 channels past the blocks of four), widened
    weights with the short epilogue; and calls that just miss it (k % 16 != 0, k past
    the bound, n < 4, int8 weights, x_zp != 0, short_ok false)."""
    k = int(rng.choice([16, 32, 48, 64, 128, 192, PRE_MAX_K]))
    n = int(rng.choice([4, 5, 6, 7, 8, 10, 13, int(rng.integers(1, 40))]))
    w = rand_s8(rng, n * k)
    if rng.random() < 0.15:
        w = np.full(n * k, rng.choice([-128, 127]), np.int8)
    p = short16(rng, dict(rows=1, k=k, n=n, x_zp=0, y_zp=zp(rng), weights=w))
    x = rand_s8(rng, k)
    if rng.random() < 0.15:  # |x| = 128 against w = -128: the largest short sums
        x = np.full(k, -128, np.int8)
    miss = rng.random()
    if miss < 0.1:
        k2 = int(rng.choice([4, 8, 20, 36, 72, PRE_MAX_K + 16]))
        p = short16(rng, dict(p, k=k2, weights=rand_s8(rng, n * k2)))
        x = rand_s8(rng, k2)
    elif miss < 0.15:
        p["x_zp"] = zp(rng)
    elif miss < 0.2:
        p["shift"] = np.zeros(n, np.int32)  # short_ok false: the general epilogue
    if rng.random() < 0.9:
        p = linear.widen(p)
    return Case(p, [x], n)


def test_linear_row1_matches_reference(ck_dsp: CKernels) -> None:
    """linear_row1.c (mcuc_linear_s8 with one row) equals the spec byte for byte, with
    every block count and 0 to 3 channels past the blocks of four; C's mcuc_lin_row1_ok
    agrees with row1_path, the path is taken in most cases, and the cases that miss it
    equal the spec too."""
    rng = np.random.default_rng(2301)
    lib = ck_dsp.lib
    lib.mcuc_lin_row1_ok.restype = ctypes.c_int
    taken: dict[int, int] = {}
    missed = 0
    for i in range(600):
        case = gen_row1(rng)
        p = case.params
        want = linear.ref(p, *case.inputs)
        got = ck_dsp.run("linear", p, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {p}"
        keep: list = []
        ok = lib.mcuc_lin_row1_ok(ctypes.byref(fill_struct(REGISTRY["linear"], p, keep)))
        assert bool(ok) == row1_path(p), f"case {i}: {p}"
        if ok:
            taken[p["n"] % 4] = taken.get(p["n"] % 4, 0) + 1
        else:
            missed += 1
    assert len(taken) == 4 and min(taken.values()) > 30, taken
    assert missed > 60, missed


def test_widen_heads_takes_one_row_linears_within_the_bound(ck_dsp: CKernels) -> None:
    """for_board on a DSP board widens a one-row linear's weights when n * k <= 4 KB (or
    when --optimize speed did already), folds a kept zero point into a bias of zeros, and
    leaves other steps alone; the result takes linear_row1.c's path and equals the spec of
    the original params. A portable board changes nothing."""
    rng = np.random.default_rng(2302)

    def head(rows: int, k: int, n: int, bias: bool, x_zp: int) -> dict:
        return short16(rng, dict(rows=rows, k=k, n=n, x_zp=0, y_zp=zp(rng),
                                 weights=rand_s8(rng, n * k))) | dict(
            x_zp=x_zp, bias=rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32) if bias
            else None)

    params = [head(1, 64, 10, True, 0), head(1, 128, 10, False, 3), head(1, 512, 9, True, 0),
              head(2, 64, 10, True, 0), linear.widen(head(1, 512, 9, False, -7))]
    steps = [Step(f"s{i}", "linear", p, [], "y", "Gemm") for i, p in enumerate(params)]
    s = Schedule(steps, {}, {}, "x", "y", (1,), (1,), None, None)  # type: ignore[arg-type]
    assert for_board(s, dsp=False).steps == steps
    got = for_board(s, dsp=True).steps
    assert got[2] is steps[2] and got[3] is steps[3]  # 4,608 B extra; two rows
    lib = ck_dsp.lib
    lib.mcuc_lin_row1_ok.restype = ctypes.c_int
    for i in (0, 1, 4):
        q, p = got[i].params, params[i]
        assert q["weights16"] is not None and q["x_zp"] == 0 and q["bias"] is not None
        x = rand_s8(rng, p["k"])
        want = linear.ref(p, x)
        assert np.array_equal(linear.ref(q, x), want)
        assert np.array_equal(ck_dsp.run("linear", q, [x], p["n"]), want)
        keep: list = []
        assert lib.mcuc_lin_row1_ok(ctypes.byref(fill_struct(REGISTRY["linear"], q, keep)))


@pytest.mark.parametrize("k", [linear.DSP_MAX_K, linear.DSP_MAX_K + 1])
def test_linear_dsp_saturates_at_the_bound(ck_dsp: CKernels, k: int) -> None:
    # At DSP_MAX_K the int32 sum is +-2,147,483,520; one more k takes the int64 loop.
    # With a bias at the int32 limit the exact sum saturates: both must equal the spec.
    for sign in (1, -1):
        for bias in (0, INT32_MAX, INT32_MIN, -sign * 1000):
            case = worst_case(k, 5, bias, sign)
            want = linear.ref(case.params, *case.inputs)
            got = ck_dsp.run("linear", case.params, case.inputs, case.out_size)
            assert np.array_equal(got, want), (k, sign, bias)
    # The case is as extreme as claimed: |sum| = 255 * 128 * k, the bound itself.
    for sign in (1, -1):
        c = worst_case(k, 1, 0, sign)
        xs = c.inputs[0].astype(np.int64) - c.params["x_zp"]
        assert int(xs @ c.params["weights"].astype(np.int64)) == -sign * 255 * 128 * k
