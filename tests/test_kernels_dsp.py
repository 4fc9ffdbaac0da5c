"""The optimized kernel variants (issue 23) against the numpy references, on the host.

A variant is selected by a C macro (KernelDef.variants, e.g. MCUC_ARM_DSP); its ARMv7E-M
instructions have portable C definitions in mcuc/simd.h, so the very same kernel code is
built here with the macro defined and compared byte for byte with the reference, on
random shapes (odd k, odd n, k = 1, k % 4 tails, n % 4 tails), extreme zero points,
weights of -128, biases at the int32 limits, and the largest k the int32 proof covers;
then again under ASan/UBSan (UBSan would report an int32 overflow in the sum).
The firmware tests (test_unicorn.py, test_firmware.py, test_qemu.py) run the real
instructions in the emulator.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, linear
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from test_kernels import Case, rand_bias, rand_requant, rand_s8, zp
from test_tokenwise import gen_tokenwise

from ckernels import CFLAGS, ROOT, SOURCES, CKernels, emit_driver, gcc

DSP = ("-DMCUC_ARM_DSP",)


def gen_linear_dsp(rng: np.random.Generator) -> Case:
    """Shapes that exercise every block and tail of the variant, values at the edges."""
    rows, n = int(rng.integers(1, 6)), int(rng.integers(1, 14))
    k = int(rng.choice([1, 2, 3, 4, 5, 7, 8, int(rng.integers(1, 80)),
                        int(rng.integers(150, 400))]))
    mult, shift = rand_requant(rng, n, fit=70 * 70 * math.sqrt(k))
    w = rand_s8(rng, n * k)
    if rng.random() < 0.2:
        w = np.full(n * k, -128, np.int8)
    p = dict(rows=rows, k=k, n=n, x_zp=zp(rng), y_zp=zp(rng), weights=w,
             bias=rand_bias(rng, n), mult=mult, shift=shift)
    return Case(p, [rand_s8(rng, rows * k)], rows * n)


def worst_case(k: int, n: int, bias: int, sign: int) -> Case:
    """|x - x_zp| = 255 and w = -128 everywhere: the sum is +-255 * 128 * k exactly."""
    x_val, x_zp = (127, -128) if sign > 0 else (-128, 127)
    p = dict(rows=1, k=k, n=n, x_zp=x_zp, y_zp=0, weights=np.full(n * k, -128, np.int8),
             bias=np.full(n, bias, np.int32), mult=np.full(n, 1 << 30, np.int32),
             shift=np.full(n, -30, np.int32))
    return Case(p, [np.full(k, x_val, np.int8)], n)


@pytest.fixture(scope="module")
def ck_dsp(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    return CKernels(tmp_path_factory.mktemp("ck_dsp"), DSP)


def test_variants_are_declared() -> None:
    assert {k for k, v in REGISTRY.items() if "MCUC_ARM_DSP" in v.variants} == {
        "attention", "layernorm", "linear", "tokenwise"}
    src = (ROOT / "runtime_c" / "src" / "linear.c").read_text()
    assert "#ifdef MCUC_ARM_DSP" in src


def test_int32_bound_constant_matches_c() -> None:
    src = (ROOT / "runtime_c" / "src" / "linear.c").read_text()
    c_max = int(re.search(r"#define MCUC_DSP_MAX_K (\d+)", src).group(1))
    assert c_max == linear.DSP_MAX_K == 65793
    assert 255 * 128 * linear.DSP_MAX_K <= INT32_MAX < 255 * 128 * (linear.DSP_MAX_K + 1)


def test_linear_dsp_matches_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(23)
    for i in range(600):
        case = gen_linear_dsp(rng)
        want = linear.ref(case.params, *case.inputs)
        got = ck_dsp.run("linear", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {case.params}"


def test_tokenwise_dsp_matches_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(230)
    for i in range(150):
        case = gen_tokenwise(rng)
        want = REGISTRY["tokenwise"].ref(case.params, *case.inputs)
        got = ck_dsp.run("tokenwise", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}"


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


def test_sanitizers_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(60):
        c = gen_linear_dsp(rng)
        cases.append(("linear", c.params, c.inputs, linear.ref(c.params, *c.inputs)))
    for _ in range(12):
        c = gen_tokenwise(rng)
        cases.append(("tokenwise", c.params, c.inputs,
                      REGISTRY["tokenwise"].ref(c.params, *c.inputs)))
    for sign in (1, -1):  # the largest int32 sum: UBSan reports any overflow
        c = worst_case(linear.DSP_MAX_K, 5, INT32_MIN if sign > 0 else INT32_MAX, sign)
        cases.append(("linear", c.params, c.inputs, linear.ref(c.params, *c.inputs)))
    src, exe = tmp_path / "driver.c", tmp_path / "driver"
    src.write_text(emit_driver(cases))
    gcc([*CFLAGS, *DSP, "-O1", "-g", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", str(src),
         *map(str, SOURCES), "-o", str(exe)])
    res = subprocess.run([str(exe)], capture_output=True, text=True,
                         env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == f"{len(cases)} cases ok" and not res.stderr
