"""linear reference (token-wise x @ W.T + b) and the helpers that build its constants.

The accumulator is exact (int64) and saturated to int32 before requantization, as the
C kernel does; conv2d reuses the helpers since its weights are also per-channel.

The C kernel has an ARMv7E-M variant (MCUC_ARM_DSP: SMLAD on SXTB16-unpacked pairs) that
sums in int32: |x - x_zp| <= 255 and |w| <= 128 bound every partial sum by 255 * 128 * k,
which fits int32 up to DSP_MAX_K; above it the variant runs the exact int64 loop.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import (
    clamp_s8,
    quantize_multipliers,
    requantize,
    sat32,
)
from mcuc.kernels.registry import WEIGHTED_FIELDS, Field, KernelDef, register
from mcuc.quant.qparams import quantize_bias  # noqa: F401  (one definition; re-exported)

# Largest k whose sum of (x - x_zp) * w provably fits int32 (MCUC_DSP_MAX_K in linear.c).
DSP_MAX_K = (2**31 - 1) // (255 * 128)


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    rows, k, n = p["rows"], p["k"], p["n"]
    xs = x.astype(np.int64).reshape(rows, k) - p["x_zp"]
    w = p["weights"].astype(np.int64).reshape(n, k)
    acc = xs @ w.T
    if p.get("bias") is not None:
        acc = acc + p["bias"].astype(np.int64)
    y = p["y_zp"] + requantize(sat32(acc), p["mult"], p["shift"])
    return clamp_s8(y).reshape(-1)


def make_requant(s_x: float, s_w: np.ndarray, s_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (mult, shift) for real multiplier s_x * s_w[c] / s_y."""
    return quantize_multipliers(s_x * np.asarray(s_w, dtype=np.float64) / s_y)


KERNEL = register(
    KernelDef(
        name="linear",
        c_func="mcuc_linear_s8",
        c_params_type="mcuc_linear_params_t",
        fields=(
            *(Field(n, "int32") for n in ("rows", "k", "n", "x_zp", "y_zp")),
            *WEIGHTED_FIELDS,
        ),
        n_inputs=1,
        ref=ref,
        macs=lambda p: p["rows"] * p["k"] * p["n"],
        variants=("MCUC_ARM_DSP",),
    )
)
