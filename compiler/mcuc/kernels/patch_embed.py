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
the input zero point into an existing bias (`fold_zero_point`). On boards with the
variant, `widen` (schedule/widen.py) stores the weights of a 16-tap patch with an even d
and the fast epilogue as int16 in the inner loop's order (`wide_layout`) with the
epilogue's per-channel words (`epilogue_words`): the loop then unpacks nothing and derives
nothing per channel (issue 23: 2.32 -> 1.37 instructions per MAC on the default model's shape).
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import conv2d as k_conv
from mcuc.kernels import linear
from mcuc.kernels.registry import Bands, Field, KernelDef, register


def weights_of(p: dict) -> np.ndarray:
    """W [d][taps] (plain order) of either storage: int8 `weights`, or `weights16` after
    `widen` (the same values as int16)."""
    w = p.get("weights")
    return np.asarray(w if w is not None else p["weights16"])


def conv_params(p: dict) -> dict:
    """The conv2d params this kernel stands for."""
    return {
        "c_in": p["c_in"], "h_in": p["h_in"], "w_in": p["w_in"], "c_out": p["d"],
        "h_out": p["hp"], "w_out": p["wp"], "kh": p["ph"], "kw": p["pw"],
        "stride_h": p["ph"], "stride_w": p["pw"], "pad_top": 0, "pad_left": 0,
        "x_zp": p["x_zp"], "y_zp": p["y_zp"], "weights": weights_of(p), "bias": p.get("bias"),
        "mult": p["mult"], "shift": p["shift"],
    }


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    chw = k_conv.ref(conv_params(p), x).reshape(p["d"], p["hp"] * p["wp"])
    return np.ascontiguousarray(chw.T).reshape(-1)


# Most taps (c_in * ph * pw) the DSP variant takes (MCUC_PE_MAX_TAPS in C,
# patch_embed_internal.h); its int32 sums, 255 * 128 * taps, fit easily, and the fast
# epilogue's bias bound stays positive.
DSP_MAX_TAPS = 4096


def fold_zero_point(p: dict) -> dict:
    """p with x_zp moved into the bias, as linear.fold_zero_point does (with no padding,
    sum (x - zp) w + b == sum x w + (b - zp * sum w) over each output's taps exactly)."""
    taps = p["c_in"] * p["ph"] * p["pw"]
    q = linear.fold_zero_point({"x_zp": p["x_zp"], "bias": p.get("bias"),
                                "weights": weights_of(p), "n": p["d"], "k": taps})
    if q["x_zp"] == p["x_zp"]:
        return p
    out = {**p, "x_zp": q["x_zp"], "bias": q["bias"]}
    if p.get("epi") is not None:  # widened: the epilogue's words follow the new bias
        out["epi"] = epilogue_words(out) if fast_epilogue(out) else None
    return out


def wide_positions(taps: int, d: int) -> np.ndarray:
    """pos[o, t]: where w[o][t] goes in weights16 (patch_embed.c wide_pos): channels in
    pairs (o, o + 1), o even, the pair's block at o * taps; in it, per group of four taps
    below taps4 = taps - taps % 4, channel o's four then channel o + 1's, each four in the
    order 0, 2, 1, 3 (one LDRD gives the lane pairs SXTB16 makes of the image); then the
    tail taps as (w[o][t], w[o + 1][t]). The last channel of an odd d: a block of width 1."""
    o, t = np.meshgrid(np.arange(d), np.arange(taps), indexing="ij")
    taps4 = taps - taps % 4
    width = np.where((o == d - 1) & (d % 2 == 1), 1, 2)
    base = (o - o % 2) * taps
    lane = ((t & 1) << 1) | ((t >> 1) & 1)
    body = base + (t >> 2) * 4 * width + 4 * (o % 2) + lane
    tail = base + taps4 * width + (t - taps4) * width + o % 2
    return np.where(t < taps4, body, tail)


def wide_layout(p: dict, w: np.ndarray) -> np.ndarray:
    """weights16 as stored: w [d][taps] (plain order) moved to wide_positions."""
    taps = p["c_in"] * p["ph"] * p["pw"]
    out = np.zeros(w.size, dtype=np.int16)
    out[wide_positions(taps, p["d"]).reshape(-1)] = np.asarray(w).reshape(-1)
    return out


def fast_epilogue(p: dict) -> bool:
    """Every channel takes the C variant's short epilogue (patch_embed.c all_fast): shift in
    [-20, -1], multiplier > 0, |bias| <= 2^30 - 1 - 255 * 128 * taps."""
    taps = p["c_in"] * p["ph"] * p["pw"]
    lim = 2**30 - 1 - 255 * 128 * taps
    shift, mult = np.asarray(p["shift"]), np.asarray(p["mult"])
    bias = np.asarray(p["bias"] if p.get("bias") is not None else np.zeros(p["d"]), np.int64)
    return bool(((shift <= -1) & (shift >= -20) & (mult > 0) & (np.abs(bias) <= lim)).all())


def epilogue_words(p: dict) -> np.ndarray:
    """Per channel pair (o, o + 1) eight int32 words: 2 b0, 2 b1, m0, m1, k0, k1, e0, e1,
    with e = -shift and k = (2 y_zp + 1) << (e - 1) (patch_embed_dsp.c's opening comment: the
    sums start from the doubled bias, y = SSAT8(SMMLAR(A, m, k - [A < 0]) >> e)). For a
    `fast_epilogue` p with an even d, where every word fits int32."""
    d = p["d"]
    b = np.asarray(p["bias"] if p.get("bias") is not None else np.zeros(d), np.int64)
    e = -np.asarray(p["shift"], np.int64)
    k = (2 * int(p["y_zp"]) + 1) * (np.int64(1) << (e - 1))
    rows = [2 * b, np.asarray(p["mult"], np.int64), k, e]  # each [d]
    words = np.stack([r.reshape(d // 2, 2) for r in rows], axis=1)  # [pairs][4][2]
    return words.reshape(-1).astype(np.int32)


def widen(p: dict) -> dict:
    """p with its weights as int16 in the variant's order and the epilogue's words, for the
    shapes the variant's widened loop takes (16 taps, d even); else p. Flash: 2 bytes per
    weight plus 16 per channel, for about 0.9 fewer instructions per MAC. The shape alone
    decides, so that flash never depends on the quantization (the search's cost model
    prices dummy scales, nas/graph_builder.dummy_qgraph): where a channel misses the fast
    epilogue, `epi` is zeros and the C, which checks all_fast per call, runs the reference
    over weights16."""
    taps = p["c_in"] * p["ph"] * p["pw"]
    if taps != 16 or p["d"] % 2 or p.get("weights") is None:
        return p
    epi = epilogue_words(p) if fast_epilogue(p) else np.zeros(4 * p["d"], np.int32)
    return {**p, "weights": None, "weights16": np.asarray(p["weights"]).astype(np.int16),
            "epi": epi}


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
            Field("weights", "int8[]", nullable=True),
            Field("weights16", "int16[]", nullable=True, layout=wide_layout),
            Field("bias", "int32[]", nullable=True),
            Field("mult", "int32[]"),
            Field("shift", "int32[]"),
            Field("epi", "int32[]", nullable=True),
        ),
        n_inputs=1,
        ref=ref,
        macs=macs,
        variants=("MCUC_ARM_DSP",),
        bands=bands,
    )
)
