"""matmul reference: batched product of two int8 activations (attention QK^T and AV).

Both operands carry zero points; the accumulator is exact and saturated to int32
before the single per-tensor requantization, as in C.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, quantize_multiplier, requantize, sat32
from mcuc.kernels.registry import Field, KernelDef, register


def ref(p: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    bt, m, k, n = p["batch"], p["m"], p["k"], p["n"]
    av = a.astype(np.int64).reshape(bt, m, k) - p["a_zp"]
    bv = b.astype(np.int64).reshape(bt, k, n) - p["b_zp"]
    acc = av @ bv
    y = p["y_zp"] + requantize(sat32(acc), p["mult"], p["shift"])
    return clamp_s8(y).reshape(-1)


def make_params(s_a: float, s_b: float, s_y: float) -> dict[str, int]:
    """mult/shift for y = a @ b with real multiplier s_a * s_b / s_y."""
    mult, shift = quantize_multiplier(s_a * s_b / s_y)
    return {"mult": mult, "shift": shift}


KERNEL = register(
    KernelDef(
        name="matmul",
        c_func="mcuc_matmul_s8",
        c_params_type="mcuc_matmul_params_t",
        fields=tuple(
            Field(n, "int32")
            for n in ("batch", "m", "k", "n", "a_zp", "b_zp", "y_zp", "mult", "shift")
        ),
        n_inputs=2,
        ref=ref,
        macs=lambda p: p["batch"] * p["m"] * p["k"] * p["n"],
    )
)
