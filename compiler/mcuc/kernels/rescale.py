"""rescale reference: change an int8 tensor's (scale, zero point), e.g. Mul by a constant.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, quantize_multiplier, requantize
from mcuc.kernels.registry import Field, KernelDef, register


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    v = x[: p["size"]].astype(np.int64) - p["x_zp"]
    return clamp_s8(p["y_zp"] + requantize(v, p["mult"], p["shift"]))


def make_params(s_x: float, s_y: float, factor: float = 1.0) -> dict[str, int]:
    """mult/shift for y = factor * x with input scale s_x and output scale s_y."""
    mult, shift = quantize_multiplier(factor * s_x / s_y)
    return {"mult": mult, "shift": shift}


KERNEL = register(
    KernelDef(
        name="rescale",
        c_func="mcuc_rescale_s8",
        c_params_type="mcuc_rescale_params_t",
        fields=tuple(Field(n, "int32") for n in ("size", "x_zp", "y_zp", "mult", "shift")),
        n_inputs=1,
        ref=ref,
        inplace_ok=True,
        macs=lambda p: 0,  # elementwise: only GEMM-like kernels count MACs
    )
)
