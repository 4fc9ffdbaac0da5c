"""The ARMv7E-M LayerNorm variant (MCUC_ARM_DSP) against the numpy reference, on the host.

The variant (runtime_c/src/layernorm.c) takes the statistics with SMLAD and normalizes
with SMMUL/SMMLA and a per-row reciprocal, falling back to the exact int64 formula for
near-ties; its instructions have portable C twins in mcuc/simd.h, so the same code runs
here. Cases: random rows (the generator of test_kernels.py), rows of -128 / 127 / one
constant, extreme zero points, gamma and beta at the int32 limits, cols 1 and odd, ties
(multiples of 2^15), huge eps_q, and many rows of the default model's shape (64 columns,
where the near-tie fallback is exercised and counted); then an ASan/UBSan build.
The firmware tests run the real instructions in the emulator.
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


@pytest.fixture(scope="module")
def ck_dsp(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    return CKernels(tmp_path_factory.mktemp("ck_ln_dsp"), DSP)


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


def test_sanitizers_layernorm_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    cases = []
    for gen in (gen_layernorm, gen_edges, gen_model_shape):
        for _ in range(25):
            c = gen(rng)
            cases.append(("layernorm", c.params, c.inputs,
                          layernorm.ref(c.params, *c.inputs)))
    run_sanitized(cases, tmp_path, DSP)
