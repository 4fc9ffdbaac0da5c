"""fixedpoint.py, the integer arithmetic every reference requantizes through, against
hand-computed values and against mcuc/fixedpoint.h itself (built on the host)."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcuc.kernels import REGISTRY, fixedpoint
from mcuc.kernels.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    quantize_multipliers,
    rdbpot,
    requantize,
    srdhm,
)

from ckernels import CFLAGS, gcc


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


def test_fixedpoint_module_is_the_one_used() -> None:
    # The references requantize through fixedpoint.requantize (one source of truth).
    assert REGISTRY["linear"].ref.__globals__["requantize"] is fixedpoint.requantize
