"""The DSP variant of add (SMMULR, add_exact, add_tab) against the numpy reference, on the
host (see test_kernels_dsp.py for how a variant is built here), the fallbacks included."""

from __future__ import annotations

import numpy as np

from mcuc.kernels import REGISTRY, add
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from test_kernels import Case, gen_add, rand_s8, zp

from ckernels import CKernels


def gen_add_dsp(rng: np.random.Generator) -> Case:
    """add cases for the SMMULR path (make_params, random shifts <= 0, the extremes) and
    for the reference fallback (a shift > 0)."""
    c = gen_add(rng)
    p = dict(c.params)
    u = rng.random()
    if u < 0.15:
        p.update(a_shift=-31, b_shift=0, y_shift=-31, a_mult=INT32_MIN, b_mult=INT32_MAX)
    elif u < 0.3:
        p.update(a_mult=INT32_MAX, a_shift=0, b_mult=INT32_MAX, b_shift=0, y_mult=INT32_MAX,
                 y_shift=0)
    elif u < 0.4:
        p["y_shift"] = 1
    return Case(p, c.inputs, c.out_size)


def test_add_dsp_matches_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(231)
    for i in range(800):
        case = gen_add_dsp(rng)
        want = REGISTRY["add"].ref(case.params, *case.inputs)
        got = ck_dsp.run("add", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"


def gen_add_exact(rng: np.random.Generator) -> Case:
    """add cases around add_exact: make_params scales, one input at (2^30, 0), the
    other's and the output's multipliers and shifts at their extremes, zero points and
    inputs at -128 / 127, and cases just outside the preconditions (the fallback)."""
    size = int(rng.integers(1, 90))
    if rng.random() < 0.4:
        p = dict(add.make_params(*(10.0 ** rng.uniform(-3, 0, 3))))
    else:
        mo = int(rng.choice([0, 1, 1 << 30, INT32_MAX, int(rng.integers(0, 2**31))]))
        so = int(rng.choice([-1, -2, -31, 0, int(rng.integers(-31, 0))]))
        ym = int(rng.choice([1 << 30, INT32_MAX, int(rng.integers(1 << 30, 2**31)),
                             int(rng.integers(1, 1 << 30))]))
        ys = int(rng.choice([-18, -19, -20, -1, -31, 0, int(rng.integers(-31, 0))]))
        p = dict(a_mult=1 << 30, a_shift=0, b_mult=mo, b_shift=so, y_mult=ym, y_shift=ys)
        if rng.random() < 0.5:
            p.update(a_mult=mo, a_shift=so, b_mult=1 << 30, b_shift=0)
    edge = [-128, 127, 0]
    p.update(size=size, b_size=size if rng.random() < 0.9 else int(rng.integers(1, size + 1)),
             a_zp=int(rng.choice(edge + [zp(rng)])), b_zp=int(rng.choice(edge + [zp(rng)])),
             y_zp=int(rng.choice(edge + [zp(rng)])))
    ins = [rand_s8(rng, size), rand_s8(rng, p["b_size"])]
    for x in ins:
        if rng.random() < 0.3:
            x[:] = rng.choice([-128, 127], x.size)
    if rng.random() < 0.3:  # fine: the exact input at its zero point, small sums, so
        # that every rounding step of the other input shows in the output byte
        ex = int(p["a_mult"] == 1 << 30 and p["a_shift"] == 0)
        ex_key, o_key = ("a", "b") if ex else ("b", "a")
        p.update(b_size=size, y_shift=int(rng.choice([-1, -2])),
                 y_mult=int(rng.integers(1 << 30, 2**31)),
                 **{f"{o_key}_mult": int(rng.integers(1 << 8, 1 << 12)),
                    f"{o_key}_shift": int(rng.choice([-1, -2, -3]))})
        if not ex:
            p.update(b_mult=1 << 30, b_shift=0)
        ins = [rand_s8(rng, size), rand_s8(rng, size)]
        ins[0 if ex_key == "a" else 1][:] = p[f"{ex_key}_zp"]
    return Case(p, ins, size)


def test_add_exact_matches_reference(ck_dsp: CKernels) -> None:
    """add_exact (one input at multiplier 1/2, the common case) and its fallback both
    equal the spec; both are taken many times."""
    rng = np.random.default_rng(233)
    taken = [0, 0]
    for i in range(1500):
        case = gen_add_exact(rng)
        want = REGISTRY["add"].ref(case.params, *case.inputs)
        got = ck_dsp.run("add", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        taken[add.dsp_path(case.params) == "exact"] += 1   # the latency model's predicate
    assert min(taken) > 300, taken


def test_add_tab_matches_reference(ck_dsp: CKernels) -> None:
    """add_tab (the compiler's tables: add.with_tables), with one table and with two,
    equals the spec on add_exact's cases and on add_fast's, eight-element steps and
    tails, broadcasts included; each is taken many times, and where with_tables gives
    no tables the old paths still are."""
    rng = np.random.default_rng(234)
    taken = {"tab": 0, "tab1": 0, "other": 0}
    for i in range(1500):
        case = (gen_add_exact if i % 2 else gen_add_dsp)(rng)
        p = add.with_tables(case.params)
        want = REGISTRY["add"].ref(case.params, *case.inputs)
        got = ck_dsp.run("add", p, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"
        taken[add.dsp_path(p) if add.dsp_path(p) in ("tab", "tab1") else "other"] += 1
    assert min(taken.values()) > 150, taken
