"""add reference (TFLM-style: both inputs rescaled at 2^20 headroom, then summed).

b broadcasts as b[i % b_size], which covers the positional-embedding and bias-like adds
a ViT needs. The sum av + bv is saturated to int32 (it can only overflow with
multipliers > 1/2, which make_params never produces) so that C has no overflow.

av depends on one byte a[i] only (and bv on b's byte), so on ARMv7E-M the compiler may
hand add.c each side as a 256-entry table (`a_tab`, `b_tab`: `tables`, computed here by
the reference's own functions, stored in flash; ref never reads them): the loop then
reads s = a_tab[a] + b_tab[b] (or, with one table, a 2^19 + b_tab[b]) and does the
output step only.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, quantize_multiplier, requantize, sat32
from mcuc.kernels.registry import Field, KernelDef, register

LEFT_SHIFT = 20


def ref(p: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size, b_size = p["size"], p["b_size"]
    av = (a[:size].astype(np.int64) - p["a_zp"]) << LEFT_SHIFT
    bb = b[np.arange(size) % b_size].astype(np.int64)
    bv = (bb - p["b_zp"]) << LEFT_SHIFT
    av = requantize(av, p["a_mult"], p["a_shift"])
    bv = requantize(bv, p["b_mult"], p["b_shift"])
    return clamp_s8(p["y_zp"] + requantize(sat32(av + bv), p["y_mult"], p["y_shift"]))


def make_params(s_a: float, s_b: float, s_y: float) -> dict[str, int]:
    """The six mult/shift fields for y = a + b at scales s_a, s_b -> s_y."""
    twice_max = 2.0 * max(s_a, s_b)
    a_mult, a_shift = quantize_multiplier(s_a / twice_max)
    b_mult, b_shift = quantize_multiplier(s_b / twice_max)
    y_mult, y_shift = quantize_multiplier(twice_max / ((1 << LEFT_SHIFT) * s_y))
    return {
        "a_mult": a_mult, "a_shift": a_shift,
        "b_mult": b_mult, "b_shift": b_shift,
        "y_mult": y_mult, "y_shift": y_shift,
    }


EXACT_SHIFTS = (18, 19, 20)   # add.c add_exact's switch: loops with the output shift inlined


def _fits30(z: int, sh: int, e: int) -> bool:
    """add.c fits30: |z| 2^sh + 2^(e-1) <= 2^30 (sh in [1, 50], e in [1, 31])."""
    room = (1 << 30) - (1 << (e - 1))
    return abs(z) == 0 if sh >= 31 else abs(z) <= room >> sh


def _out_ok(p: dict) -> bool:
    """add.c's output step (add_exact's and add_tab's): multiplier in normal form, a
    right shift ey in [1, 31] and |y_zp| 2^ey + 2^(ey-1) <= 2^30."""
    ey = -p["y_shift"]
    return p["y_mult"] >= 1 << 30 and 1 <= ey <= 31 and _fits30(p["y_zp"], ey, ey)


def side_table(v_zp: int, mult: int, shift: int) -> np.ndarray:
    """requantize((v - zp) << 20, mult, shift) for v = -128 .. 127 (index v + 128): one
    input's term of the sum, exactly as ref computes it."""
    v = np.arange(-128, 128, dtype=np.int64)
    return requantize((v - v_zp) << LEFT_SHIFT, mult, shift).astype(np.int64)


TAB_BOUND = 1 << 29   # add.c add_tab: |a_tab[a] + b_tab[b]| < 2^29 (no saturation, SMMLAR)


def tables(p: dict) -> dict | None:
    """The tables (int32, 256 entries each) for add.c's add_tab loop, or None where its
    preconditions fail (the output step's, or a sum that could reach 2^29): every add
    whose tables this returns takes that loop on ARMv7E-M, whatever its input sides.
    Where one input's term is (v - zp) 2^19 for every byte v (add_exact's e: multiplier
    1/2) and b is not broadcast, only the other input's table, less that zp 2^19 (add.c
    then adds v 2^19: one load fewer per element, half the flash); else both tables."""
    if not _out_ok(p) or p["size"] <= 0 or p["b_size"] <= 0:
        return None
    ta = side_table(p["a_zp"], p["a_mult"], p["a_shift"])
    tb = side_table(p["b_zp"], p["b_mult"], p["b_shift"])
    if int(np.abs(ta).max()) + int(np.abs(tb).max()) >= TAB_BOUND:
        return None
    v19 = np.arange(-128, 128, dtype=np.int64) << 19
    if p["b_size"] == p["size"]:
        if np.array_equal(ta, v19 - (p["a_zp"] << 19)):
            return {"b_tab": (tb - (p["a_zp"] << 19)).astype(np.int32)}
        if np.array_equal(tb, v19 - (p["b_zp"] << 19)):
            return {"a_tab": (ta - (p["b_zp"] << 19)).astype(np.int32)}
    return {"a_tab": ta.astype(np.int32), "b_tab": tb.astype(np.int32)}


def with_tables(p: dict) -> dict:
    """p with its tables where add_tab can take it (and without them otherwise)."""
    out = {k: v for k, v in p.items() if k not in ("a_tab", "b_tab")}
    return {**out, **(tables(out) or {})}


def dsp_path(p: dict) -> str:
    """Which loop add.c's MCUC_ARM_DSP mcuc_add_s8 runs for params p: "tab" (the compiler
    gave both tables: `tables`), "tab1" (one table), "exact" (add_exact's preconditions
    hold), "fast" (every shift in [-31, 0]) or "ref". The latency model counts each
    path's elements apart (they cost differently); tests/test_add_path.py checks this
    against the C dispatch. Without MCUC_ARM_DSP the C is the reference."""
    n_tabs = (p.get("a_tab") is not None) + (p.get("b_tab") is not None)
    if (n_tabs and p["size"] > 0 and p["b_size"] > 0 and _out_ok(p)
            and (n_tabs == 2 or p["b_size"] == p["size"])):
        return "tab" if n_tabs == 2 else "tab1"
    a_ex = p["a_mult"] == 1 << 30 and p["a_shift"] == 0
    b_ex = p["b_mult"] == 1 << 30 and p["b_shift"] == 0
    if a_ex or b_ex:
        ze, zo, mo, eo = ((p["a_zp"], p["b_zp"], p["b_mult"], -p["b_shift"]) if a_ex
                          else (p["b_zp"], p["a_zp"], p["a_mult"], -p["a_shift"]))
        ey, y_zp = -p["y_shift"], p["y_zp"]
        if (p["size"] > 0 and p["b_size"] == p["size"] and -128 <= ze <= 127
                and -128 <= zo <= 127 and mo >= 0 and 1 <= eo <= 31
                and p["y_mult"] >= 1 << 30 and 1 <= ey <= 31
                and _fits30(ze, 19 + eo, eo) and _fits30(y_zp, ey, ey)):
            return "exact"
    if all(-31 <= p[k] <= 0 for k in ("a_shift", "b_shift", "y_shift")):
        return "fast"
    return "ref"


KERNEL = register(
    KernelDef(
        name="add",
        c_func="mcuc_add_s8",
        c_params_type="mcuc_add_params_t",
        fields=tuple(
            Field(n, "int32")
            for n in (
                "size", "b_size", "a_zp", "b_zp", "y_zp",
                "a_mult", "a_shift", "b_mult", "b_shift", "y_mult", "y_shift",
            )
        ) + (Field("a_tab", "int32[]", nullable=True),    # tables(); not read by ref
             Field("b_tab", "int32[]", nullable=True)),
        n_inputs=2,
        ref=ref,
        inplace_ok=True,
        macs=lambda p: 0,  # elementwise: only GEMM-like kernels count MACs
        variants=("MCUC_ARM_DSP",),  # SMMULR requantization when every shift is <= 0
    )
)
