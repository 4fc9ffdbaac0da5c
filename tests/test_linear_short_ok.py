"""kernels.linear.short_epilogue_ok (the params' short_ok) and the rq words against linear.c.

The compiler decides once per layer whether the DSP short epilogue serves every output
and stores that as short_ok; the kernel trusts it. So the Python twin must say what the
C statement of the contract (linear_dsp.c's short_epilogue_ok, which the kernel no
longer calls) says, for params on both sides of each precondition: multiplier 2^30 - 1 / 2^30
(and 0, negative), shift 0 / -1 and -31 / -32, 255 * 128 * k + max |bias| at 2^30 - 1 /
2^30. And the rq words must decode (linear_internal.h rq_mult, rq_shift) to the spec's multiplier
and shift for any int32 multiplier. A shim includes linear.c and linear_dsp.c to reach
their statics.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, linear
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN

from ckernels import INCLUDE, ROOT, fill_struct, gcc

SHIM = r"""
#include "linear.c"
#include "linear_dsp.c" /* short_epilogue_ok sits with the DSP loops */
#include "linear_row1.c" /* mcuc_linear_s8 calls mcuc_lin_row1 */
#include "lut.c" /* linear.c calls mcuc_lut_s8 */

int c_short_ok(const mcuc_linear_params_t *p)
{
    return short_epilogue_ok(p);
}

/* The multiplier and shift channel j's rq words decode to. */
void c_decode(const mcuc_linear_params_t *p, int32_t j, int32_t *mult, int32_t *shift)
{
    const int32_t t = rq_of(p->rq, j, RQ_SHIFT);
    *mult = rq_mult(rq_of(p->rq, j, RQ_MULT), t);
    *shift = rq_shift(t);
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    d = tmp_path_factory.mktemp("linear_short_ok")
    (d / "shim.c").write_text(SHIM)
    so = d / "liblinshort.so"
    gcc(["-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
         "-DMCUC_ARM_DSP", f"-I{INCLUDE}", f"-I{ROOT / 'runtime_c' / 'src'}",
         str(d / "shim.c"), "-o", str(so)])
    return ctypes.CDLL(str(so))


def params(rng: np.random.Generator) -> dict:
    """Linear params with each precondition of the short epilogue near its edge."""
    n, k = int(rng.integers(1, 9)), int(rng.choice([1, 16, 64, 768, 4096, 32896, 32897]))
    mult = rng.choice([1 << 30, INT32_MAX, int(rng.integers(1 << 30, 2**31))], n)
    shift = rng.choice([-1, -31, int(rng.integers(-31, 0))], n)
    # the largest |bias| allowed is room - 1 (k 32897: none, the sums alone reach 2^30)
    room = max(2**30 - 255 * 128 * k, 1)
    bias = rng.choice([0, room - 1, -(room - 1), int(rng.integers(-(room - 1), room))], n)
    j = int(rng.integers(n))
    side = rng.integers(8)  # one channel over one edge (0..6), or none (7)
    if side == 0:
        mult[j] = rng.choice([(1 << 30) - 1, 0, -(1 << 30), INT32_MIN, 1])
    elif side == 1:
        shift[j] = rng.choice([0, -32, 1, 30, -128, 127])
    elif side == 2:
        bias[j] = rng.choice([room, -room, INT32_MAX, INT32_MIN])
    p = dict(rows=1, k=k, n=n, x_zp=0, y_zp=0, weights=np.zeros(n * k, np.int8),
             bias=bias.astype(np.int32), mult=mult.astype(np.int32),
             shift=shift.astype(np.int32))
    if side == 3:
        p["bias"] = None
    return p


def test_short_ok_twin_matches_c(lib: ctypes.CDLL) -> None:
    """short_ok (what the compiler stores) is linear.c's short_epilogue_ok, both ways."""
    rng = np.random.default_rng(36)
    kdef = REGISTRY["linear"]
    seen = {True: 0, False: 0}
    for i in range(3000):
        p = params(rng)
        keep: list = []
        st = fill_struct(kdef, p, keep)
        want = bool(lib.c_short_ok(ctypes.byref(st)))
        assert linear.derived(p)["short_ok"] == int(want), f"case {i}: {p}"
        assert st.short_ok == int(want)
        seen[want] += 1
    assert min(seen.values()) > 500, seen


def test_rq_words_decode_to_the_spec(lib: ctypes.CDLL) -> None:
    """Any int32 multiplier and any shift in [-128, 127] survive the rq encoding."""
    rng = np.random.default_rng(37)
    n = 64
    mult = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    mult[:8] = [INT32_MIN, INT32_MAX, 0, 1, -1, 1 << 30, -(1 << 30), (1 << 30) - 1]
    shift = rng.integers(-128, 127, n, endpoint=True)
    shift[:6] = [-128, 127, 0, -1, -31, 30]
    p = dict(rows=1, k=1, n=n, x_zp=0, y_zp=0, weights=np.zeros(n, np.int8), bias=None,
             mult=mult.astype(np.int32), shift=shift.astype(np.int32))
    keep: list = []
    st = fill_struct(REGISTRY["linear"], p, keep)
    m, s = ctypes.c_int32(), ctypes.c_int32()
    for j in range(n):
        lib.c_decode(ctypes.byref(st), j, ctypes.byref(m), ctypes.byref(s))
        assert (m.value, s.value) == (int(mult[j]), int(shift[j])), j
    with pytest.raises(ValueError):
        linear.requant_words(dict(p, shift=np.full(n, -129, np.int32)))
