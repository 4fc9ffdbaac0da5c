"""The optimized kernel variants (issue 23) against the numpy references, on the host.

A variant is selected by a C macro (KernelDef.variants, e.g. MCUC_ARM_DSP); its ARMv7E-M
instructions have portable C definitions in mcuc/simd.h, so the very same kernel code is
built here with the macro defined and compared byte for byte with the reference, on
random shapes (odd k, odd n, k = 1, k % 4 tails, n % 4 tails), extreme zero points,
weights of -128, biases at the int32 limits, and the largest k the int32 proof covers;
then again under ASan/UBSan (UBSan would report an int32 overflow in the sum).
This module: the variants' declaration, tokenwise, and the sanitizer build of every case
family; linear's cases are in test_linear_dsp.py, add's in test_add_dsp.py.
The firmware tests (test_unicorn.py, test_firmware.py, test_qemu.py) run the real
instructions in the emulator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuc.kernels import REGISTRY, add, linear
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from mcuc.schedule.widen import widen_params
from test_add_dsp import gen_add_dsp, gen_add_exact
from test_kernels import Case, rand_s8
from test_linear_dsp import gen_linear_dsp, gen_row1, short16, worst_case
from test_tokenwise import call_in_arena, gen_tokenwise, tokenwise_params

from ckernels import DSP, ROOT, CKernels, run_sanitized


def test_variants_are_declared() -> None:
    assert {k for k, v in REGISTRY.items() if "MCUC_ARM_DSP" in v.variants} == {
        "add", "attention", "layernorm", "linear", "patch_embed", "tokenwise"}
    for name in ("linear.c", "linear_dsp.c", "layernorm.c", "layernorm_row16.c"):
        assert "#ifdef MCUC_ARM_DSP" in (ROOT / "runtime_c" / "src" / name).read_text()


def test_tokenwise_dsp_matches_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(230)
    tabs = 0
    for i in range(200):
        case = gen_tokenwise(rng)
        if i % 2:  # --optimize speed
            case = Case(widen_params("tokenwise", case.params), case.inputs, case.out_size)
            assert case.params["l1"]["weights16"] is not None
        if i % 4 >= 2 and case.params["add"] is not None:  # the residual add's tables
            case = Case(dict(case.params, add=add.with_tables(case.params["add"])),
                        case.inputs, case.out_size)
            tabs += add.dsp_path(case.params["add"]) in ("tab", "tab1")
        want = REGISTRY["tokenwise"].ref(case.params, *case.inputs)
        got = ck_dsp.run("tokenwise", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}"
    assert tabs > 10, tabs


def gen_tokenwise_short16(rng: np.random.Generator) -> Case:
    """Tokenwise blocks whose first linear takes the unpacked short plan with a table."""
    k = int(rng.choice([16, 32, 48]))
    p = tokenwise_params(rng, rows=int(rng.integers(1, 10)), k=k, has_lut=1)
    p["l1"] = short16(rng, p["l1"])
    if rng.random() < 0.4:
        p = widen_params("tokenwise", p)
    inputs = [rand_s8(rng, (p["rows"] - 1) * p["x_rs"] + k), rand_s8(rng, p["rows"] * p["n"])]
    return Case(p, inputs, p["rows"] * p["n"])


def test_tokenwise_table_in_the_epilogue(ck_dsp: CKernels) -> None:
    """tokenwise.c's linear -> table stages through mcuc_linear_lut_planned_s8's fused
    plans, every tile and path, equal the spec."""
    rng = np.random.default_rng(233)
    for i in range(150):
        case = gen_tokenwise_short16(rng)
        want = REGISTRY["tokenwise"].ref(case.params, *case.inputs)
        got = ck_dsp.run("tokenwise", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}"


def test_tokenwise_ln_pairs_in_y(ck_dsp: CKernels, tmp_path: Path) -> None:
    """LayerNorm -> linear [-> table] at tile 1 with a free y and n >= 2 k (the qkv step at
    the arena's peak): tokenwise.c runs row pairs with the two normalised rows in y's last
    row. Both builds, int8 and widened weights, odd and even row counts, must equal the
    spec; the portable build takes the same path."""
    rng = np.random.default_rng(231)
    ck_port = CKernels(tmp_path)
    for i in range(120):
        k = int(rng.integers(1, 20))
        n = int(rng.integers(2 * k, 2 * k + 24))
        p = tokenwise_params(rng, rows=int(rng.integers(3, 12)), k=k, h=n, n=n, has_ln=1,
                             has_l2=0, has_res=0, tile=1, y_free=1, x_rs=k)
        if i % 2:
            p = widen_params("tokenwise", p)
        x = rand_s8(rng, p["rows"] * k)
        r = rand_s8(rng, p["rows"] * n)
        want = REGISTRY["tokenwise"].ref(p, x, r)
        for ck in (ck_dsp, ck_port):
            got = ck.run("tokenwise", p, [x, r], p["rows"] * n)
            assert np.array_equal(got, want), f"case {i}"


def test_tokenwise_res_pairs_over_x(ck_dsp: CKernels, tmp_path: Path) -> None:
    """Linear [-> table] -> residual add at tile 1 with x_free (the attention projection
    at the arena's peak): tokenwise.c stages row pairs over x's consumed rows, copying x
    rows that lie apart. y over r as the compiler places it; both builds, int8 and widened
    weights, contiguous and gapped x, odd and even rows must equal the spec, and x's bytes
    past its last row must stay as they were. That the path ran shows in x: without
    x_free x is left as it was, with it its first rows are overwritten (a staged pair may
    happen to equal what it covers when rows are a byte or two, hence the 90%)."""
    rng = np.random.default_rng(232)
    ck_port = CKernels(tmp_path)
    ran, free = 0, 0
    for i in range(120):
        k = int(rng.integers(1, 20))
        n = int(rng.integers(1, k + 1))
        gapped = i % 3 != 0
        x_rs = k + n + int(rng.integers(0, 2 * k + 1)) if gapped else k
        rows = int(rng.integers(4, 12))
        p = tokenwise_params(rng, rows=rows, k=k, h=n, n=n, has_ln=0, has_l2=0, has_res=1,
                             tile=1, y_free=0, x_rs=x_rs, x_free=int(i % 4 != 3))
        if i % 2:
            p = widen_params("tokenwise", p)
        n_x = (rows - 1) * x_rs + k
        x, r = rand_s8(rng, n_x), rand_s8(rng, rows * n)
        want = REGISTRY["tokenwise"].ref(p, x, r)
        for ck in (ck_dsp, ck_port):
            arena = np.concatenate([x, r, np.full(8, 0x33, np.int8)])
            call_in_arena(ck, "tokenwise", p, arena, [0, n_x], n_x)
            assert np.array_equal(arena[n_x: n_x + rows * n], want), f"case {i}"
            assert np.all(arena[(rows - 2) * x_rs: n_x] == x[(rows - 2) * x_rs:]), i
            assert np.all(arena[n_x + rows * n:] == 0x33), f"case {i}"
            scribbled = not np.array_equal(arena[:n_x], x)
            assert p["x_free"] or not scribbled, f"case {i}"
            ran += scribbled
            free += p["x_free"]
    assert ran >= 0.9 * free, (ran, free)


def test_sanitizers_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(60):
        c = gen_linear_dsp(rng)
        cases.append(("linear", c.params, c.inputs, linear.ref(c.params, *c.inputs)))
    for _ in range(60):
        c = gen_add_dsp(rng)
        cases.append(("add", c.params, c.inputs, REGISTRY["add"].ref(c.params, *c.inputs)))
    for _ in range(80):
        c = gen_add_exact(rng)
        cases.append(("add", c.params, c.inputs, REGISTRY["add"].ref(c.params, *c.inputs)))
        for g in (gen_add_exact, gen_add_dsp):   # add_tab, one table and two
            c = g(rng)
            cases.append(("add", add.with_tables(c.params), c.inputs,
                          REGISTRY["add"].ref(c.params, *c.inputs)))
    for i in range(12):
        c = gen_tokenwise(rng)
        q = c.params
        if i % 2 and q["add"] is not None:   # the residual add's tables
            q = dict(q, add=add.with_tables(q["add"]))
        cases.append(("tokenwise", q, c.inputs, REGISTRY["tokenwise"].ref(c.params, *c.inputs)))
    for _ in range(12):
        c = gen_tokenwise_short16(rng)
        cases.append(("tokenwise", c.params, c.inputs,
                      REGISTRY["tokenwise"].ref(c.params, *c.inputs)))
    for _ in range(40):  # linear_row1.c's one-row loop
        c = gen_row1(rng)
        cases.append(("linear", c.params, c.inputs, linear.ref(c.params, *c.inputs)))
    for sign in (1, -1):  # the largest int32 sum: UBSan reports any overflow
        c = worst_case(linear.DSP_MAX_K, 5, INT32_MIN if sign > 0 else INT32_MAX, sign)
        cases.append(("linear", c.params, c.inputs, linear.ref(c.params, *c.inputs)))
    run_sanitized(cases, tmp_path, DSP)
