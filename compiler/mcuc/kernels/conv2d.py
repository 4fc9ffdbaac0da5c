"""conv2d reference: the exact integer meaning of mcuc_conv2d_s8 (CHW, groups 1).

Taps are gathered with a sliding window over an input padded by zeros *after* the
zero point is subtracted, which is what "padded taps add nothing" means. The
accumulator is exact (int64) and saturated to int32 before requantization, as in C.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, requantize, sat32
from mcuc.kernels.registry import WEIGHTED_FIELDS, Field, KernelDef, register


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    c_in, h_in, w_in = p["c_in"], p["h_in"], p["w_in"]
    c_out, h_out, w_out = p["c_out"], p["h_out"], p["w_out"]
    kh, kw, sh, sw = p["kh"], p["kw"], p["stride_h"], p["stride_w"]
    pt, pl = p["pad_top"], p["pad_left"]
    xs = x.astype(np.int64).reshape(c_in, h_in, w_in) - p["x_zp"]
    # Pad so every tap of every output position exists (zeros contribute nothing).
    pb = max(0, (h_out - 1) * sh + kh - pt - h_in)
    pr = max(0, (w_out - 1) * sw + kw - pl - w_in)
    xp = np.pad(xs, ((0, 0), (pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw]
    cols = win.transpose(1, 2, 0, 3, 4).reshape(h_out * w_out, c_in * kh * kw)
    w = p["weights"].astype(np.int64).reshape(c_out, c_in * kh * kw)
    acc = cols @ w.T  # [h_out * w_out][c_out]
    if p.get("bias") is not None:
        acc = acc + p["bias"].astype(np.int64)
    mult = np.asarray(p["mult"], dtype=np.int64)
    shift = np.asarray(p["shift"], dtype=np.int64)
    y = p["y_zp"] + requantize(sat32(acc), mult, shift)
    return clamp_s8(y.T).reshape(-1)


def macs(p: dict) -> int:
    """Nominal MACs: every tap, padded or not."""
    return p["c_out"] * p["h_out"] * p["w_out"] * p["c_in"] * p["kh"] * p["kw"]


_I32 = [
    "c_in", "h_in", "w_in", "c_out", "h_out", "w_out",
    "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "x_zp", "y_zp",
]

KERNEL = register(
    KernelDef(
        name="conv2d",
        c_func="mcuc_conv2d_s8",
        c_params_type="mcuc_conv2d_params_t",
        fields=(
            *(Field(n, "int32") for n in _I32),
            *WEIGHTED_FIELDS,
        ),
        n_inputs=1,
        ref=ref,
        macs=macs,
    )
)
