"""mean reference: average over the middle axis of [outer][reduce][inner].

One shape covers ReduceMean over any contiguous run of axes (token pooling in a ViT).
The 1/reduce factor lives in the multiplier, so the sum stays exact; it is saturated
to int32 before requantization, as in C.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, quantize_multiplier, requantize, sat32
from mcuc.kernels.registry import Field, KernelDef, register


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    outer, reduce, inner = p["outer"], p["reduce"], p["inner"]
    xv = x[: outer * reduce * inner].astype(np.int64).reshape(outer, reduce, inner)
    acc = (xv - p["x_zp"]).sum(axis=1)
    y = p["y_zp"] + requantize(sat32(acc), p["mult"], p["shift"])
    return clamp_s8(y).reshape(-1)


def make_params(s_x: float, s_y: float, reduce: int) -> dict[str, int]:
    """mult/shift encoding s_x / (reduce * s_y)."""
    mult, shift = quantize_multiplier(s_x / (reduce * s_y))
    return {"mult": mult, "shift": shift}


KERNEL = register(
    KernelDef(
        name="mean",
        c_func="mcuc_mean_s8",
        c_params_type="mcuc_mean_params_t",
        fields=tuple(
            Field(n, "int32")
            for n in ("outer", "reduce", "inner", "x_zp", "y_zp", "mult", "shift")
        ),
        n_inputs=1,
        ref=ref,
        macs=lambda p: 0,  # a reduction, not a GEMM: only GEMM-like kernels count MACs
    )
)
