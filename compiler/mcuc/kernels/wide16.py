"""Helpers of the A16 kernels (add16, copy16, layernorm16): int16 activations in the
int8 arena.

Every buffer, in the reference as in C, is bytes; an int16 tensor is its elements
little-endian, two bytes each (both Cortex-M and the host are little-endian). The A16
kernels take byte arrays, say in their params which operands are wide, and return bytes,
so the reference executor and the C harness treat them like any other kernel.
"""

from __future__ import annotations

import numpy as np


def load(v: np.ndarray, wide: int, n: int) -> np.ndarray:
    """The first n elements of byte array `v` as int64: int16 pairs if `wide`, else int8."""
    v = np.ascontiguousarray(v, dtype=np.int8)
    if wide:
        return v[: 2 * n].view("<i2").astype(np.int64)
    return v[:n].astype(np.int64)


def clamp(v: np.ndarray, wide: int) -> np.ndarray:
    """Saturate to int16 or int8."""
    lo, hi = (-32768, 32767) if wide else (-128, 127)
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def store(v: np.ndarray, wide: int) -> np.ndarray:
    """Saturated values as the bytes the kernel writes."""
    c = clamp(v, wide)
    return c.astype("<i2").view(np.int8) if wide else c.astype(np.int8)
