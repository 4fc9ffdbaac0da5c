"""add16 reference: y = a + b where any of a, b, y may be int16 (A16; quant/wide.py).

The add kernel's scheme with a left shift of 15 instead of 20, so that an int16 input
fits int32: |v - zp| <= 65535 (zero points of int16 tensors are 0, so in fact <= 32768)
and 65535 * 2^15 < 2^31. make_params keeps both input multipliers <= 1/2, so their sum
cannot overflow int32; it is saturated anyway, as in add. b broadcasts as b[i % b_size].
Inputs and output are bytes (kernels/wide16.py); a_wide, b_wide, y_wide say which are
int16.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import wide16
from mcuc.kernels.add import make_params as make_params8
from mcuc.kernels.fixedpoint import quantize_multiplier, requantize, sat32
from mcuc.kernels.registry import Field, KernelDef, register

LEFT_SHIFT = 15


def ref(p: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size, b_size = p["size"], p["b_size"]
    av = (wide16.load(a, p["a_wide"], size) - p["a_zp"]) << LEFT_SHIFT
    bb = wide16.load(b, p["b_wide"], b_size)[np.arange(size) % b_size]
    bv = (bb - p["b_zp"]) << LEFT_SHIFT
    av = requantize(av, p["a_mult"], p["a_shift"])
    bv = requantize(bv, p["b_mult"], p["b_shift"])
    y = p["y_zp"] + requantize(sat32(av + bv), p["y_mult"], p["y_shift"])
    return wide16.store(y, p["y_wide"])


def make_params(s_a: float, s_b: float, s_y: float) -> dict[str, int]:
    """The six mult/shift fields (add's, with the output multiplier for LEFT_SHIFT 15)."""
    p = make_params8(s_a, s_b, s_y)
    y_mult, y_shift = quantize_multiplier(2.0 * max(s_a, s_b) / ((1 << LEFT_SHIFT) * s_y))
    return {**p, "y_mult": y_mult, "y_shift": y_shift}


KERNEL = register(
    KernelDef(
        name="add16",
        c_func="mcuc_add16_a16",
        c_params_type="mcuc_add16_params_t",
        fields=tuple(
            Field(n, "int32")
            for n in (
                "size", "b_size", "a_wide", "b_wide", "y_wide", "a_zp", "b_zp", "y_zp",
                "a_mult", "a_shift", "b_mult", "b_shift", "y_mult", "y_shift",
            )
        ),
        n_inputs=2,
        ref=ref,
        inplace_ok=True,  # C walks backwards when y is wider than a
        macs=lambda p: 0,
    )
)
