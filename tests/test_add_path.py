"""kernels.add.dsp_path (the latency model's add path) against add.c's own dispatch.

The latency model prices an add by the loop its params send it to (add_tab, add_exact,
add_fast or add_ref: their per-element costs differ), so the Python predicate must pick what the
C picks. The C is not mocked: add.c, built for the host with MCUC_ARM_DSP (simd.h's
portable definitions) and -finstrument-functions, records which of its static functions
each mcuc_add_s8 call entered; a small shim includes add.c so that it can compare the
entered addresses with add_exact's, add_fast's and add_ref's. The cases sit on both sides
of every precondition of add_tab (with the compiler's tables), of add_exact and of
add_fast's shift range, plus make_params' own adds with and without tables.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, add
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN, clamp_s8, requantize

from ckernels import INCLUDE, ROOT, fill_struct, gcc

SHIM = r"""
#include "add.c"

static int entered; /* bit 0: add_fast, bit 1: add_ref, bit 2: add_exact */

/* hidden: the library's own hooks, not any the process already has */
#define HOOK __attribute__((no_instrument_function, visibility("hidden"))) void

HOOK __cyg_profile_func_enter(void *fn, void *site)
{
    (void)site;
    if (fn == (void *)add_fast) {
        entered |= 1;
    } else if (fn == (void *)add_ref) {
        entered |= 2;
    } else if (fn == (void *)add_exact) {
        entered |= 4;
    }
}

HOOK __cyg_profile_func_exit(void *fn, void *site)
{
    (void)fn, (void)site;
}

/* 0: add_tab ran the add with two tables, 8: with one (add_exact not tried: which of
 * add_tab's two loops ran is its own test of p->a_tab && p->b_tab), 4: add_exact ran it,
 * 5: add_fast, 6: add_ref (add_exact tried first); anything else would be a bug. */
__attribute__((no_instrument_function)) int add_path(const mcuc_add_params_t *p,
                                                     const int8_t *a, const int8_t *b,
                                                     int8_t *y)
{
    entered = 0;
    mcuc_add_s8(p, a, b, y);
    return entered == 0 && !(p->a_tab && p->b_tab) ? 8 : entered;
}
"""
PATHS = {0: "tab", 8: "tab1", 4: "exact", 5: "fast", 6: "ref"}


@pytest.fixture(scope="module")
def c_path(tmp_path_factory: pytest.TempPathFactory):
    """add_path(params) -> the loop the C ran, and its output bytes."""
    d = tmp_path_factory.mktemp("add_path")
    (d / "shim.c").write_text(SHIM)
    so = d / "libaddpath.so"
    gcc(["-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
         "-finstrument-functions", "-DMCUC_ARM_DSP", f"-I{INCLUDE}",
         f"-I{ROOT / 'runtime_c' / 'src'}", str(d / "shim.c"), "-o", str(so)])
    lib = ctypes.CDLL(str(so))
    lib.add_path.restype = ctypes.c_int

    def run(p: dict, a: np.ndarray, b: np.ndarray) -> tuple[str, np.ndarray]:
        keep: list = []
        st = fill_struct(REGISTRY["add"], p, keep)
        a8, b8 = np.ascontiguousarray(a, np.int8), np.ascontiguousarray(b, np.int8)
        y = np.zeros(max(1, p["size"]), np.int8)
        code = lib.add_path(ctypes.byref(st), ctypes.c_void_p(a8.ctypes.data),
                            ctypes.c_void_p(b8.ctypes.data), ctypes.c_void_p(y.ctypes.data))
        return PATHS[code], y[: p["size"]]

    return run


BASE = {"size": 12, "b_size": 12, "a_zp": 5, "b_zp": -7, "y_zp": 3,
        "a_mult": 1 << 30, "a_shift": 0, "b_mult": 1_500_000_000, "b_shift": -2,
        "y_mult": 1_300_000_000, "y_shift": -19}


def _edges() -> list[tuple[str, dict]]:
    """(what, params): each precondition just held and just broken."""
    swap = dict(BASE, a_mult=BASE["b_mult"], a_shift=BASE["b_shift"],
                b_mult=1 << 30, b_shift=0, a_zp=BASE["b_zp"], b_zp=BASE["a_zp"])
    cases = [("base", {}), ("b is the exact input", swap),
             ("a_mult 2^30 - 1", {"a_mult": (1 << 30) - 1}),
             ("a_shift -1", {"a_shift": -1}),
             ("both exact (equal scales: eo 0)", {"b_mult": 1 << 30, "b_shift": 0}),
             ("b_size 1 (broadcast)", {"b_size": 1}), ("b_size size - 1", {"b_size": 11}),
             ("size 0", {"size": 0, "b_size": 0}),
             ("zo 127", {"b_zp": 127}), ("zo 128", {"b_zp": 128}), ("zo -129", {"b_zp": -129}),
             ("ze 128", {"a_zp": 128}), ("ze -129", {"a_zp": -129}),
             ("mo 0", {"b_mult": 0}), ("mo -1", {"b_mult": -1}), ("mo INT32_MIN",
                                                                   {"b_mult": INT32_MIN}),
             ("eo 31", {"b_shift": -31, "a_zp": 0}), ("eo 32", {"b_shift": -32, "a_zp": 0}),
             ("y_mult 2^30", {"y_mult": 1 << 30}), ("y_mult 2^30 - 1", {"y_mult": (1 << 30) - 1}),
             ("y_mult INT32_MAX", {"y_mult": INT32_MAX}),
             ("ey 1", {"y_shift": -1, "y_zp": 0}), ("ey 0", {"y_shift": 0}),
             ("ey 31", {"y_shift": -31, "y_zp": 0}), ("ey 32", {"y_shift": -32}),
             ("y_shift 1", {"y_shift": 1}), ("a_shift 1 (not exact)", {"a_mult": 5, "a_shift": 1}),
             ("b_shift 1", {"b_shift": 1}), ("b_shift -31 (fast)", {"b_mult": 7, "b_shift": -31,
                                                                     "a_mult": 9}),
             ("b_shift -32 (ref)", {"b_mult": 7, "b_shift": -32, "a_mult": 9})]
    # fits30(ze, 19 + eo, eo): |ze| 2^(19+eo) + 2^(eo-1) <= 2^30, at each eo's largest |ze|
    for eo in (1, 4, 5, 10, 11, 12, 20):
        room = (1 << 30) - (1 << (eo - 1))
        top = 0 if 19 + eo >= 31 else room >> (19 + eo)
        for ze in {min(top, 127), min(top + 1, 128), -min(top, 128), -min(top + 1, 129)}:
            cases.append((f"eo {eo} ze {ze}", {"b_shift": -eo, "a_zp": ze}))
    # fits30(y_zp, ey, ey): |y_zp| 2^ey + 2^(ey-1) <= 2^30
    for ey in (20, 21, 22, 23, 24, 28, 30):
        top = ((1 << 30) - (1 << (ey - 1))) >> ey
        for yz in {min(top, 127), min(top + 1, 128), -min(top, 128), -min(top + 1, 129)}:
            cases.append((f"ey {ey} y_zp {yz}", {"y_shift": -ey, "y_zp": yz}))
    return [(what, dict(BASE, **ch)) for what, ch in cases]


def _forced_tables(p: dict) -> dict:
    """p with both sides' tables whatever add.tables would say (the path only: where the
    sum could reach 2^29 the bytes are not add_tab's to get right)."""
    return dict(p, a_tab=add.side_table(p["a_zp"], p["a_mult"], p["a_shift"]).astype(np.int32),
                b_tab=add.side_table(p["b_zp"], p["b_mult"], p["b_shift"]).astype(np.int32))


def test_dsp_path_is_the_c_dispatch_at_every_edge(c_path) -> None:
    rng = np.random.default_rng(26)
    seen = {"tab": 0, "tab1": 0, "exact": 0, "fast": 0, "ref": 0}
    for what, p0 in _edges():
        two = _forced_tables(p0)
        for p in (p0, two, dict(two, b_tab=None), dict(two, a_tab=None)):
            a = rng.integers(-128, 128, max(1, p["size"])).astype(np.int8)
            b = rng.integers(-128, 128, max(1, p["b_size"])).astype(np.int8)
            got, _ = c_path(p, a, b)
            assert add.dsp_path(p) == got, (what, p)
            seen[got] += 1
    assert min(seen.values()) >= 5, seen   # each path is met on both sides of its edges


def _term(t: dict, side: str, v: np.ndarray) -> np.ndarray:
    """One input's part of add_tab's sum: its table's entry, or v 2^19 (no table)."""
    tab = t.get(f"{side}_tab")
    v = v.astype(np.int64)
    return v << 19 if tab is None else tab[v + 128].astype(np.int64)


def test_tables_are_the_reference_terms() -> None:
    """add.tables: add_tab's sum is ref's sum before the output step for every byte pair
    (one table where an input is at multiplier 1/2, on either side; two otherwise or where
    b is broadcast), and no tables where add_tab's bound or output step fails."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    a, b = a.reshape(-1).astype(np.int8), b.reshape(-1).astype(np.int8)
    swap = dict(BASE, a_mult=BASE["b_mult"], a_shift=BASE["b_shift"], b_mult=1 << 30,
                b_shift=0)
    for p, keys in ((BASE, {"b_tab"}), (swap, {"a_tab"}), (dict(BASE, a_mult=7), None),
                    (dict(BASE, b_size=6), None)):
        t = add.tables(p)
        assert t is not None and set(t) == (keys or {"a_tab", "b_tab"}), p
        assert all(x.dtype == np.int32 and x.shape == (256,) for x in t.values())
        s = _term(t, "a", a) + _term(t, "b", b)
        assert int(np.abs(s).max()) < add.TAB_BOUND
        y = clamp_s8(p["y_zp"] + requantize(s, p["y_mult"], p["y_shift"]))
        assert np.array_equal(y, add.ref(dict(p, size=a.size, b_size=a.size), a, b)), p
    assert add.tables(dict(BASE, y_shift=0)) is None
    assert add.tables(dict(BASE, b_mult=INT32_MAX, b_shift=2)) is None   # |bv| above 2^29
    assert add.tables(dict(BASE, size=0, b_size=0)) is None
    t = add.tables(BASE)
    assert "b_tab" not in add.with_tables(dict(BASE, y_shift=0, **t))


def test_dsp_path_on_make_params_adds(c_path) -> None:
    """The compiler's own adds (make_params over scales of several orders, zero points
    anywhere in int8): the predicate and the C agree, and the bytes equal the spec."""
    rng = np.random.default_rng(2026)
    seen = {"tab": 0, "tab1": 0, "exact": 0, "fast": 0, "ref": 0}
    for _ in range(400):
        size = int(rng.integers(1, 40))
        s = 10.0 ** rng.uniform(-3, 0, 3)
        if rng.random() < 0.2:
            s[1] = s[0]                     # equal input scales
        elif rng.random() < 0.3:
            s[1] = s[0] * 2.0 ** -rng.uniform(4, 14)   # one input far finer
        p = dict(add.make_params(*s), size=size,
                 b_size=size if rng.random() < 0.9 else int(rng.integers(1, size + 1)),
                 a_zp=int(rng.integers(-128, 128)), b_zp=int(rng.integers(-128, 128)),
                 y_zp=int(rng.integers(-128, 128)))
        a = rng.integers(-128, 128, size).astype(np.int8)
        b = rng.integers(-128, 128, p["b_size"]).astype(np.int8)
        for q in (p, add.with_tables(p)):
            got, y = c_path(q, a, b)
            assert add.dsp_path(q) == got, q
            assert np.array_equal(y, add.ref(q, a, b)), q
            seen[got] += 1
    assert seen["exact"] > 100 and seen["fast"] > 30, seen
    assert seen["tab1"] > 200 and seen["tab"] > 30, seen

