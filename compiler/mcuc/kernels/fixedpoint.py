"""numpy twin of runtime_c/include/mcuc/fixedpoint.h.

The references of every kernel requantize through these functions, so they must give
the C int32 results exactly: values are carried in int64 arrays, and the C operations
whose semantics differ from naive Python (truncating division, the INT32_MIN * INT32_MIN
saturation, the saturating left shift) are spelled out.

Rounding of float constants (multipliers, tables, biases) uses `round_half_away`
everywhere, not np.round (half to even), to match C's round() and TFLM.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from mcuc import McucError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


class RequantError(McucError, ValueError):
    """A compile-time constant (a requantization multiplier, a LayerNorm term) that the
    int32 arithmetic of the kernels cannot represent: the scales of the model are absurd
    (corrupt or non-finite weights, a degenerate calibration). The lowering adds the layer."""

def round_half_away(x: ArrayLike) -> np.ndarray:
    """Round to nearest, halves away from zero (float64 result)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def sat32(v: ArrayLike) -> np.ndarray:
    """Saturate to the int32 range (int64 result)."""
    return np.clip(np.asarray(v, dtype=np.int64), INT32_MIN, INT32_MAX)


def clamp_s8(v: ArrayLike) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64), -128, 127).astype(np.int8)


def srdhm(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """round(a * b / 2^31), halves away from zero; INT32_MIN * INT32_MIN -> INT32_MAX."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |ab| <= 2^62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = ab + nudge
    # C's int64 division truncates toward zero; >> floors, so negate around it.
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)


def rdbpot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """x / 2^exponent rounded to nearest, halves away from zero; 0 <= exponent <= 31."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc: ArrayLike, mult: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """acc * mult * 2^(shift - 31) as mcuc_requantize(); acc must be in int32 range."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = sat32(acc << np.maximum(shift, 0))
    up = srdhm(left, mult)
    down = rdbpot(srdhm(acc, mult), np.maximum(-shift, 0))
    return np.where(shift > 0, up, down)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(mult, shift) with real ~= mult * 2^(shift - 31), |mult| in [2^30, 2^31)."""
    if not math.isfinite(real):
        raise RequantError(f"requantization multiplier {real} is not finite")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2^shift, 0.5 <= |q| < 1
    mult = int(round_half_away(q * 2.0**31))
    if abs(mult) == 2**31:
        mult //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise RequantError(f"requantization multiplier {real:.3g} is too large for int32 "
                           "requantization (scales out of range)")
    return mult, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised quantize_multiplier: (mult int32 array, shift int32 array)."""
    reals = np.asarray(reals, dtype=np.float64)
    if not np.all(np.isfinite(reals)):
        raise RequantError("requantization multipliers are not finite")
    q, shift = np.frexp(reals)
    mult = round_half_away(q * 2.0**31).astype(np.int64)
    shift = shift.astype(np.int64)
    full = np.abs(mult) == 2**31
    mult = np.where(full, mult // 2, mult)
    shift = np.where(full, shift + 1, shift)
    if np.any(shift[mult != 0] > 30):
        raise RequantError(f"requantization multiplier {reals.max():.3g} is too large for "
                           "int32 requantization (scales out of range)")
    tiny = shift < -31
    mult = np.where(tiny, 0, mult)
    shift = np.where(tiny | (mult == 0), 0, shift)
    return mult.astype(np.int32), shift.astype(np.int32)
