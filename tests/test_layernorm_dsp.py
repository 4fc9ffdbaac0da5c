"""The ARMv7E-M LayerNorm variant (MCUC_ARM_DSP) against the numpy reference, on the host.

The variant (runtime_c/src/layernorm.c, layernorm_row16.c) takes the statistics with
SMLAD and normalizes with SMMUL/SMMLA and a per-row reciprocal, falling back to the
exact int64 formula for near-ties; its instructions have portable C twins in
mcuc/simd.h, so the same code runs here. Cases: random rows (the generator of
test_kernels.py), rows of -128 / 127 / one constant, extreme zero points, gamma and beta
at the int32 limits, cols 1 and odd, ties (multiples of 2^15), huge eps_q, and many rows
of the default model's shape (64 columns, where the near-tie fallback is exercised and
counted); cases with the compiler's `fast` table (ln_row16); then ASan/UBSan builds. The
firmware tests run the real instructions in the emulator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import layernorm
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from test_kernels import Case, gen_layernorm, rand_s8

from ckernels import CKernels, run_sanitized

DSP = ("-DMCUC_ARM_DSP",)


def gen_edges(rng: np.random.Generator) -> Case:
    """Rows at the value limits, odd and tiny widths, gamma/beta at the int32 limits."""
    rows = int(rng.integers(1, 5))
    cols = int(rng.choice([1, 2, 3, 5, 7, 63, 64, 65, 97, 192, 1000]))
    kind = rng.integers(0, 5)
    if kind == 0:
        x = rng.choice(np.array([-128, 127], np.int8), rows * cols)
    elif kind == 1:
        x = np.full(rows * cols, int(rng.choice([-128, 127, 0])), np.int8)
    elif kind == 2:  # one outlier per row: |d| near its bound sqrt(cols) sigma
        x = np.full(rows * cols, -128, np.int8)
        x[:: cols] = 127
    else:
        x = rand_s8(rng, rows * cols)
    lim = [INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30), 0, 1, -1]
    g = rng.choice(np.array(lim, np.int64), cols) if rng.random() < 0.5 else \
        rng.integers(INT32_MIN, INT32_MAX, cols, endpoint=True)
    b = rng.choice(np.array(lim, np.int64), cols) if rng.random() < 0.5 else \
        rng.integers(INT32_MIN, INT32_MAX, cols, endpoint=True)
    eps = int(rng.choice([0, 1, 2**40, 2**62 - 2**40]))
    p = dict(rows=rows, cols=cols, y_zp=int(rng.choice([-128, 127, 0])), eps_q=eps,
             gamma_q=g.astype(np.int32), beta_q=b.astype(np.int32))
    return Case(p, [x.astype(np.int8)], rows * cols)


def gen_model_shape(rng: np.random.Generator, rows: int = 50) -> Case:
    """The default model's shape (rows of 64) with realistic gamma/beta magnitudes."""
    cols = 64
    x = np.clip(rng.normal(0, rng.uniform(2, 60), rows * cols), -128, 127).astype(np.int8)
    g = rng.normal(0, 2**22, cols).astype(np.int32)
    b = rng.normal(0, 2**21, cols).astype(np.int32)
    p = dict(rows=rows, cols=cols, y_zp=int(rng.integers(-128, 128)),
             eps_q=int(rng.integers(0, 10**5)), gamma_q=g, beta_q=b)
    return Case(p, [x], rows * cols)


@pytest.mark.parametrize("gen", [gen_layernorm, gen_edges, gen_model_shape])
def test_layernorm_dsp_matches_reference(ck_dsp: CKernels, gen) -> None:
    rng = np.random.default_rng(2323)
    for i in range(400):
        case = gen(rng)
        want = layernorm.ref(case.params, *case.inputs)
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size, inplace=True)
        assert np.array_equal(got, want), f"case {i} in place"


def near_ties(case: Case) -> int:
    """How many elements of a case land within 3/256 of an output rounding boundary."""
    p, x = case.params, case.inputs[0].astype(np.int64)
    rows, cols = p["rows"], p["cols"]
    xv = x.reshape(rows, cols)
    d = cols * xv - xv.sum(axis=1, keepdims=True)
    var = (d * d).sum(axis=1, keepdims=True) // cols + p["eps_q"]
    sigma = np.maximum(layernorm.isqrt(var), 1)
    num = d * p["gamma_q"].astype(np.int64) + p["beta_q"].astype(np.int64) * sigma
    frac = ((num * 256 + sigma * 2**23) // (sigma << 16)) % 256  # 256 V mod 256
    return int(np.isin(frac, (0, 254, 255)).sum())


def test_near_ties_are_exercised(ck_dsp: CKernels) -> None:
    # The fast loop rejects t mod 256 in {0, 254, 255}: cases must reach the exact path,
    # exact ties (V an integer) included, and still match.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(20):
        case = gen_model_shape(rng)
        case.params["gamma_q"] = (case.params["gamma_q"] >> 15 << 15).astype(np.int32)
        case.params["beta_q"] = (case.params["beta_q"] >> 15 << 15).astype(np.int32)
        hits += near_ties(case)
        want = layernorm.ref(case.params, *case.inputs)
        assert np.array_equal(ck_dsp.run("layernorm", case.params, case.inputs,
                                         case.out_size), want)
    assert hits > 50


def row_stats(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: d (cols x - sum), sigma, and sk = isqrt(cols) + 1, as the kernel has them."""
    p, x = case.params, case.inputs[0].astype(np.int64)
    rows, cols = p["rows"], p["cols"]
    xv = x.reshape(rows, cols)
    d = cols * xv - xv.sum(axis=1, keepdims=True)
    var = (d * d).sum(axis=1, keepdims=True) // cols + p["eps_q"]
    return d, np.maximum(layernorm.isqrt(var), 1), layernorm.isqrt(np.int64(cols)) + 1


def ln10_rows(case: Case) -> int:
    """Rows that take layernorm.c's ln_row10 (its preconditions)."""
    p = case.params
    _, sigma, _ = row_stats(case)
    ok = (sigma > 8 * p["cols"]) & (sigma < 65536) & (sigma >= 15)
    per_call = p["cols"] <= 224 and 0 <= p["eps_q"] <= 2**30 and abs(p["y_zp"]) < 32768
    return int(ok.sum()) if per_call else 0


def gen_ln10(rng: np.random.Generator) -> Case:
    """Rows around ln_row10's preconditions: sigma near 8 cols (std near 8) and near
    2^16, widths up to 225 (the per-call bound 224), eps_q at 2^30 and just above, one
    outlier per row (|d| near its bound), gamma/beta at the int32 limits or multiples of
    2^15 (exact ties) or just off an integer V, y_zp up to +-32767 (and just outside)."""
    rows = int(rng.integers(1, 6))
    cols = int(rng.choice([1, 2, 3, 4, 5, 8, 63, 64, 65, 100, 127, 150, 200, 224, 225]))
    std = float(rng.choice([rng.uniform(6, 11), rng.uniform(11, 80), 127.0]))
    x = np.clip(np.rint(rng.normal(0, std, rows * cols)), -128, 127).astype(np.int8)
    if rng.random() < 0.2:
        x = np.full(rows * cols, int(rng.integers(-3, 4)), np.int8)
        x[:: cols] = int(rng.choice([-128, 127]))
    lim = np.array([INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30), 0, 1, -1])
    g, b = (rng.choice(lim, cols) if rng.random() < 0.3 else
            rng.normal(0, 2.0 ** rng.uniform(10, 31), cols).clip(INT32_MIN, INT32_MAX)
            for _ in range(2))
    g, b = g.astype(np.int64), b.astype(np.int64)
    if rng.random() < 0.3:  # exact ties: V an integer for many elements
        g, b = g >> 15 << 15, b >> 15 << 15
    elif rng.random() < 0.3:  # V just off an integer, |g| near 2^31: the widest margins
        g = rng.choice([INT32_MIN, INT32_MAX, INT32_MIN + 7, INT32_MAX - 9], cols)
        b = (rng.integers(-2**14, 2**14, cols) << 16) + 2**15 + rng.integers(-300, 300, cols)
    y_zp = int(rng.choice([int(rng.integers(-128, 128)), -32767, 32767, -32768, 32768,
                           int(rng.integers(-40000, 40000))]))
    eps = int(rng.choice([0, 1, 10**5, 2**30, 2**30 + 1]))
    p = dict(rows=rows, cols=cols, y_zp=y_zp, eps_q=eps,
             gamma_q=g.astype(np.int32), beta_q=b.astype(np.int32))
    return Case(p, [x], rows * cols)


def ln10_margin(case: Case) -> tuple[float, float]:
    """ln_fast10's t recomputed in Python for the rows that take it, and the proof's
    claim checked element by element: T - (t - 2) lies in (-0.75, 2.75), T = 1024 (V +
    y_zp). Returns the smallest and largest T - (t - 2) seen (inf, -inf without rows)."""
    p = case.params
    d, sigma, sk = row_stats(case)
    cols, y_zp = p["cols"], p["y_zp"]
    x = case.inputs[0].astype(np.int64).reshape(p["rows"], cols)
    g, b = p["gamma_q"].astype(np.int64), p["beta_q"].astype(np.int64)
    lo, hi = np.inf, -np.inf
    for r in range(p["rows"]):
        s_, sg = int(x[r].sum()), int(sigma[r, 0])
        if not (8 * cols < sg < 65536 and sg >= 15 and cols <= 224
                and 0 <= p["eps_q"] <= 2**30 and abs(y_zp) < 32768):
            continue
        assert sk * (sg + 1) <= 16 * sg  # the bound the preconditions stand for
        k, c = (cols << 34) // sg, (-s_ << 26) // sg + 1
        a = c + ((k * (x[r] * 256)) >> 16)
        t = ((a * g) >> 32) + (b >> 6) + 514 + 1024 * y_zp
        num = d[r] * g + b * sg
        diff = (num + sg * 2**15 + 1024 * y_zp * 64 * sg - (t - 2) * 64 * sg) / (64 * sg)
        assert diff.min() > -0.75 and diff.max() < 2.75, (r, diff.min(), diff.max())
        lo, hi = min(lo, diff.min()), max(hi, diff.max())
    return lo, hi


def test_ln_row10_matches_reference(ck_dsp: CKernels) -> None:
    """ln_row10 (and the older row loop it falls back to) equal the spec; both are taken
    many times, and elements within 4/1024 of a rounding boundary (its near path) too."""
    rng = np.random.default_rng(2310)
    fast = slow = near = 0
    span = (np.inf, -np.inf)
    for i in range(700):
        case = gen_ln10(rng)
        want = layernorm.ref(case.params, *case.inputs)
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        lo, hi = ln10_margin(case)
        span = (min(span[0], lo), max(span[1], hi))
        n10 = ln10_rows(case)
        fast, slow = fast + n10, slow + case.params["rows"] - n10
        if n10 == case.params["rows"]:
            p = case.params
            d, sigma, _ = row_stats(case)
            num = d * p["gamma_q"].astype(np.int64) + p["beta_q"].astype(np.int64) * sigma
            t = (num * 1024 + sigma * 2**25) // (sigma << 16) + 2  # 1024 V + 2, floored
            near += int(((t % 1024) < 4).sum())
    assert fast > 300 and slow > 300 and near > 100, (fast, slow, near)
    assert span[0] < -0.5 and span[1] > 2.0, span  # the margins are used, not idle


def test_sanitizers_layernorm_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    cases = []
    for gen in (gen_layernorm, gen_edges, gen_model_shape, gen_ln10):
        for _ in range(25):
            c = gen(rng)
            cases.append(("layernorm", c.params, c.inputs,
                          layernorm.ref(c.params, *c.inputs)))
    run_sanitized(cases, tmp_path, DSP)


def gen_fast(rng: np.random.Generator) -> Case:
    """Cases with the compiler's `fast` table (layernorm.fast_table), so rows in ln_row16's
    sigma range take it: widths not a multiple of 4 and below 4, constant rows (and one
    outlier per row), x at -128 / 127, gamma near the table's bound 2^25 and beta at 2^30,
    exact ties (gamma, beta multiples of 2^15), y_zp across int8 and at +-4096; about one
    case in ten whose bounds fail (no table: the older loops)."""
    rows = int(rng.integers(1, 6))
    cols = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 66, 67, 100, 127, 128, 224]))
    kind = rng.integers(0, 5)
    std = float(rng.choice([rng.uniform(6, 12), rng.uniform(12, 80), 127.0]))
    x = np.clip(np.rint(rng.normal(0, std, rows * cols)), -128, 127).astype(np.int8)
    if kind == 0:
        x = rng.choice(np.array([-128, 127], np.int8), rows * cols)
    elif kind == 1:
        x = np.full(rows * cols, int(rng.integers(-128, 128)), np.int8)
        if rng.random() < 0.7:
            x[:: cols] = int(rng.choice([-128, 127]))
    lim = layernorm.FAST_GAMMA_LIMIT - 1
    g = rng.choice(np.array([lim, -lim, 0, 1, -1, lim - 5]), cols) if rng.random() < 0.2 \
        else rng.normal(0, 2.0 ** rng.uniform(8, 24.5), cols).clip(-lim, lim)
    b = rng.choice(np.array([2**30, -2**30, 0, 2**15, -2**15]), cols) if rng.random() < 0.2 \
        else rng.normal(0, 2.0 ** rng.uniform(8, 29), cols).clip(-2**30, 2**30)
    g, b = g.astype(np.int64), b.astype(np.int64)
    if rng.random() < 0.3:  # exact ties: V an integer for many elements
        g, b = g >> 15 << 15, b >> 15 << 15
    y_zp = int(rng.choice([int(rng.integers(-128, 128)), -4096, 4096, 0]))
    if rng.random() < 0.1:  # out of the table's bounds: gamma 2^25, beta 2^30 + 1, y_zp
        which = rng.integers(0, 3)
        g[0] = 2**25 if which == 0 else g[0]
        b[0] = -(2**30) - 1 if which == 1 else b[0]
        y_zp = 4097 if which == 2 else y_zp
    eps = int(rng.choice([0, 1, 10**5, 2**30]))
    p = dict(rows=rows, cols=cols, y_zp=y_zp, eps_q=eps,
             gamma_q=g.astype(np.int32), beta_q=b.astype(np.int32))
    p["fast"] = layernorm.fast_table(p["gamma_q"], p["beta_q"], y_zp)
    return Case(p, [x], rows * cols)


def gen_sqrt_edges(rng: np.random.Generator) -> Case:
    """Rows whose variance is a perfect square n^2, or n^2 - 1, or (n + 1)^2 - 1 (eps_q
    sets it: equal rows share cols Q - S^2), n from 1 to the top of the 31-bit range that
    the compiler's-table path takes: where sigma's square root (VSQRT and its one-step
    fix-up on the FPU, the UDIV iteration elsewhere) could be one off. With the table,
    moderate gamma so the outputs depend on sigma."""
    cols = int(rng.choice([3, 8, 63, 64, 100, 224]))
    rows = int(rng.integers(1, 4))
    std = float(rng.choice([0.5, 3.0, 30.0, 127.0]))
    row = np.clip(np.rint(rng.normal(0, std, cols)), -128, 127).astype(np.int64)
    v0 = cols * int((row * row).sum()) - int(row.sum()) ** 2
    lo = int(np.ceil(np.sqrt(v0))) + 1
    hi = int(np.floor(np.sqrt(v0 + 2**30)))
    big = int(rng.integers(max(lo, 4097), hi + 1)) if hi > 4097 else hi  # v > 2^24
    n = int(rng.choice([lo, hi, int(rng.integers(lo, hi + 1)), min(lo + 7, hi), big, big]))
    var = n * n + int(rng.choice([0, -1, 2 * n]))
    eps = int(np.clip(var - v0, 0, 2**30))
    # |d| is about sqrt(v0): outputs of about 60 steps where eps_q does not dominate
    scale = min(60 * 2**16 * n / max(np.sqrt(v0), 1.0), 2**24)
    g = rng.normal(0, scale, cols).clip(-(2**25 - 1), 2**25 - 1).astype(np.int64)
    b = rng.normal(0, 2**18, cols).astype(np.int64)
    y_zp = int(rng.integers(-20, 20))
    p = dict(rows=rows, cols=cols, y_zp=y_zp, eps_q=eps,
             gamma_q=g.astype(np.int32), beta_q=b.astype(np.int32))
    p["fast"] = layernorm.fast_table(p["gamma_q"], p["beta_q"], y_zp)
    return Case(p, [np.tile(row, rows).astype(np.int8)], rows * cols)


def test_sqrt_edges_match_reference(ck_dsp: CKernels) -> None:
    """gen_sqrt_edges' rows equal the spec (in place too); and the cases see sigma: in a
    good share of them (not all: constant rows, or an eps_q that dwarfs the spread, give
    outputs that do not move) the spec's output changes with eps_q one less or one more,
    which moves var across a square and sigma by one, so a square root one off in either
    direction would fail them."""
    rng = np.random.default_rng(3141)
    sensitive = 0
    for i in range(300):
        case = gen_sqrt_edges(rng)
        want = layernorm.ref(case.params, *case.inputs)
        eps = case.params["eps_q"]
        sensitive += any(not np.array_equal(layernorm.ref(dict(case.params, eps_q=e),
                                                          *case.inputs), want)
                         for e in (max(eps - 1, 0), eps + 1))
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size, inplace=True)
        assert np.array_equal(got, want), f"case {i} in place"
    assert sensitive > 60, sensitive  # 87 of 300 when written


def ln16_rows_and_ties(case: Case) -> tuple[int, int]:
    """Rows that take ln_row16 (a table, the per-call bounds, the sigma range), and their
    elements whose V is an integer (exact ties among them), which only ln_exact gets."""
    p = case.params
    if p.get("fast") is None or not (p["cols"] <= 224 and 0 <= p["eps_q"] <= 2**30):
        return 0, 0
    d, sigma, _ = row_stats(case)
    rows = ((sigma > 8 * p["cols"]) & (sigma < 65536) & (sigma >= 15))[:, 0]
    num = d * p["gamma_q"].astype(np.int64) + p["beta_q"].astype(np.int64) * sigma
    integer = (num + sigma * 2**15) % (sigma << 16) == 0
    return int(rows.sum()), int(integer[rows].sum())


def test_ln_row16_matches_reference(ck_dsp: CKernels) -> None:
    """ln_row16 (the compiler's table, four elements a step) equals the spec, in place too;
    its rows, its rows' integer-V elements (ties and near-ties go to ln_exact) and the
    cases without a table are all exercised."""
    rng = np.random.default_rng(2316)
    rows16 = ties = no_table = 0
    for i in range(800):
        case = gen_fast(rng)
        want = layernorm.ref(case.params, *case.inputs)
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        got = ck_dsp.run("layernorm", case.params, case.inputs, case.out_size, inplace=True)
        assert np.array_equal(got, want), f"case {i} in place"
        n16, nt = ln16_rows_and_ties(case)
        rows16, ties = rows16 + n16, ties + nt
        no_table += case.params["fast"] is None
    assert rows16 > 800 and ties > 200 and no_table > 30, (rows16, ties, no_table)


def test_fast_table_layout() -> None:
    """The table's order (0, 2, 1, 3 per group of four, then the rest) and its bounds."""
    g = np.arange(1, 7, dtype=np.int32)
    b = np.arange(10, 16, dtype=np.int32)
    t = layernorm.fast_table(g, b, -3).reshape(-1, 2)
    assert t[:, 0].tolist() == [64 * v for v in (1, 3, 2, 4, 5, 6)]
    assert t[:, 1].tolist() == [v + 2**15 + 125 * 2**16 for v in (10, 12, 11, 13, 14, 15)]
    assert layernorm.fast_table(np.array([2**25], np.int32), np.zeros(1, np.int32), 0) is None
    assert layernorm.fast_table(np.zeros(1, np.int32), np.array([2**30 + 1]), 0) is None
    assert layernorm.fast_table(np.zeros(1, np.int32), np.zeros(1, np.int32), 4097) is None


def test_sanitizers_layernorm_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    cases = []
    for _ in range(80):
        c = gen_fast(rng)
        cases.append(("layernorm", c.params, c.inputs, layernorm.ref(c.params, *c.inputs)))
    run_sanitized(cases, tmp_path, DSP)
