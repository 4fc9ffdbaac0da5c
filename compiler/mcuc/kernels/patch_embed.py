"""patch_embed reference: conv2d with kernel == stride and no padding, then the
transpose of its CHW output to tokens [hp * wp][d], as one kernel.

Why: the conv2d output [d, hp, wp] only exists to be transposed into tokens; writing
tokens directly drops that buffer and the copy. The C kernel goes one band (row of
patches) at a time, so its output may overlap the image (see schedule/patch.py).
Bit-identical to conv2d + transpose: the same exact int64 sum of the same taps,
saturated to int32, and the same requantization.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import conv2d as k_conv
from mcuc.kernels.registry import WEIGHTED_FIELDS, Field, KernelDef, register


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


def macs(p: dict) -> int:
    return p["d"] * p["hp"] * p["wp"] * p["c_in"] * p["ph"] * p["pw"]


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
    )
)
