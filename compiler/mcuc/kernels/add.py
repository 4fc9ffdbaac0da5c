"""add reference (TFLM-style: both inputs rescaled at 2^20 headroom, then summed).

b broadcasts as b[i % b_size], which covers the positional-embedding and bias-like adds
a ViT needs. The sum av + bv is saturated to int32 (it can only overflow with
multipliers > 1/2, which make_params never produces) so that C has no overflow.
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
        ),
        n_inputs=2,
        ref=ref,
        inplace_ok=True,
        macs=lambda p: 0,  # elementwise: only GEMM-like kernels count MACs
        variants=("MCUC_ARM_DSP",),  # SMMULR requantization when every shift is <= 0
    )
)
