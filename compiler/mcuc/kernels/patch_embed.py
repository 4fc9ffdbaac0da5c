"""patch_embed reference: conv2d with kernel == stride and no padding, then the
transpose of its CHW output to tokens [hp * wp][d], as one kernel.

Why: the conv2d output [d, hp, wp] only exists to be transposed into tokens; writing
tokens directly drops that buffer and the copy. The C kernel goes one band (row of
patches) at a time, so its output may overlap the image (see schedule/patch.py).
Bit-identical to conv2d + transpose: the same exact int64 sum of the same taps,
saturated to int32, and the same requantization.

The C kernel has an ARMv7E-M variant (MCUC_ARM_DSP: SMLAD on 16-bit pairs unpacked in
registers as they are loaded, int32 sums, no buffers) for taps = c_in * ph * pw <=
DSP_MAX_TAPS; larger patches take the portable loop. The fusion (schedule/patch.py) folds
the input zero point into an existing bias (`fold_zero_point`); the weights stay in the
plain order.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import conv2d as k_conv
from mcuc.kernels import linear
from mcuc.kernels.registry import WEIGHTED_FIELDS, Bands, Field, KernelDef, register


def conv_params(p: dict) -> dict:
    """The conv2d params this kernel stands for."""
    return {
        "c_in": p["c_in"], "h_in": p["h_in"], "w_in": p["w_in"], "c_out": p["d"],
        "h_out": p["hp"], "w_out": p["wp"], "kh": p["ph"], "kw": p["pw"],
        "stride_h": p["ph"], "stride_w": p["pw"], "pad_top": 0, "pad_left": 0,
        "x_zp": p["x_zp"], "y_zp": p["y_zp"], "weights": p["weights"], "bias": p.get("bias"),
        "mult": p["mult"], "shift": p["shift"],
    }


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    chw = k_conv.ref(conv_params(p), x).reshape(p["d"], p["hp"] * p["wp"])
    return np.ascontiguousarray(chw.T).reshape(-1)


# Most taps (c_in * ph * pw) the DSP variant takes (MCUC_PE_MAX_TAPS in C); its int32
# sums, 255 * 128 * taps, fit easily, and the fast epilogue's bias bound stays positive.
DSP_MAX_TAPS = 4096


def fold_zero_point(p: dict) -> dict:
    """p with x_zp moved into the bias, as linear.fold_zero_point does (with no padding,
    sum (x - zp) w + b == sum x w + (b - zp * sum w) over each output's taps exactly)."""
    taps = p["c_in"] * p["ph"] * p["pw"]
    q = linear.fold_zero_point({"x_zp": p["x_zp"], "bias": p.get("bias"),
                                "weights": p["weights"], "n": p["d"], "k": taps})
    if q["x_zp"] == p["x_zp"]:
        return p
    return {**p, "x_zp": q["x_zp"], "bias": q["bias"]}


def macs(p: dict) -> int:
    return p["d"] * p["hp"] * p["wp"] * p["c_in"] * p["ph"] * p["pw"]


def bands(p: dict) -> Bands | None:
    """Streamed (schedule/stream.py: the params of one band plus `stream` = the number of
    bands): one call per band of ph image rows, each writing one token row of wp * d."""
    if not p.get("stream"):
        return None
    return Bands(p["stream"], p["ph"], p["wp"] * p["d"])


KERNEL = register(
    KernelDef(
        name="patch_embed",
        c_func="mcuc_patch_embed_s8",
        c_params_type="mcuc_patch_embed_params_t",
        fields=(
            *(Field(n, "int32") for n in ("c_in", "h_in", "w_in", "d", "ph", "pw", "hp",
                                          "wp", "x_zp", "y_zp")),
            *WEIGHTED_FIELDS,
        ),
        n_inputs=1,
        ref=ref,
        macs=macs,
        variants=("MCUC_ARM_DSP",),
        bands=bands,
    )
)
