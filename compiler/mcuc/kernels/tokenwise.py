"""tokenwise reference: a chain of row-wise ops run over tiles of `tile` tokens.

    [LayerNorm ->] Linear 1 [-> LUT] [-> Linear 2] [-> + residual rows]

Why: in a ViT block every op between two attention layers works on one token at a time,
so the intermediates (LayerNorm output, the MLP hidden layer, the projection before the
residual add) never need to exist for all tokens at once; one tile in per-step scratch
is enough, and the result can be written over rows already consumed (token overwriting).

Each stage is *the* existing kernel (layernorm, linear, lut, add) with its own params,
so the fused result is bit-identical to the unfused steps by construction: the reference
below composes the unfused references, and the C kernel calls the unfused C kernels on
each tile. Tiling cannot change a result because every stage is row-wise.

Inputs: x [rows][k] (the chain input, row i at i * x_rs: rows may lie apart, as when
attention wrote them over its queries, see schedule/queries.py) and r [rows][n] (the
residual; x again when there is none). The residual add is stored with the residual as
`a` and the branch as `b`; since a + b is summed exactly before the one requantization,
the C kernel may swap them.

Where each stage writes (shared by `scratch_bytes` and tokenwise.c): scratch holds a
region A (tile x a_w) then a region B (tile x h). With `y_free` (y overlaps neither x
nor r) the output rows of the tile double as a stage buffer. Then:
  LayerNorm -> Y if (has_l2 and y_free and k <= n) else A
  Linear 1  -> B if has_l2 else (Y if y_free else (B if has_ln else A))
  Linear 2  -> Y if y_free else A          (A's LayerNorm rows are dead by then)
  residual  -> y = add(r, F) elementwise;   no residual and F not in Y: copy F to y.
When y aliases x (same start, n <= k) or r (same rows), y_free is 0 and a tile's input
rows are all read before its output rows are written, and output row i never lies past
input row i (n <= k), so rows not yet read are never overwritten.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import add as k_add
from mcuc.kernels import layernorm as k_ln
from mcuc.kernels import linear as k_linear
from mcuc.kernels import lut as k_lut
from mcuc.kernels.registry import Field, KernelDef, register

LN_FIELDS = ("y_zp", "eps_q", "gamma_q", "beta_q")
LINEAR_FIELDS = ("x_zp", "y_zp", "weights", "weights16", "bias", "mult", "shift")
ADD_FIELDS = ("a_zp", "b_zp", "y_zp", "a_mult", "a_shift", "b_mult", "b_shift",
              "y_mult", "y_shift")
FLAGS = ("has_ln", "has_lut", "has_l2", "has_res", "y_free")


def stage(p: dict, prefix: str, names: tuple[str, ...]) -> dict:
    """The params of one stage, unprefixed (e.g. stage(p, "l1", LINEAR_FIELDS))."""
    return {f: p.get(f"{prefix}_{f}") for f in names}


def layout(p: dict) -> dict[str, object]:
    """Where each stage writes ("A", "B" or "Y"), and the widths of regions A and B."""
    y_free = bool(p["y_free"])
    ln = "Y" if (p["has_l2"] and y_free and p["k"] <= p["n"]) else "A"
    if p["has_l2"]:
        l1 = "B"
    else:
        l1 = "Y" if y_free else ("B" if p["has_ln"] else "A")
    l2 = "Y" if y_free else "A"
    final = l2 if p["has_l2"] else l1
    a_w = max(p["k"] if (p["has_ln"] and ln == "A") else 0, p["n"] if final == "A" else 0)
    b_w = p["h"] if l1 == "B" else 0
    return {"ln": ln, "l1": l1, "l2": l2, "final": final, "a_w": a_w, "b_w": b_w}


def scratch_bytes(p: dict) -> int:
    """Scratch of one call: tile x (a_w + b_w) bytes, at least 1 (C always takes it)."""
    lay = layout(p)
    return max(1, int(p["tile"]) * (int(lay["a_w"]) + int(lay["b_w"])))


def ref(p: dict, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    rows, k, h, n = p["rows"], p["k"], p["h"], p["n"]
    idx = np.arange(rows)[:, None] * p["x_rs"] + np.arange(k)[None, :]
    v = np.asarray(x).reshape(-1)[idx.reshape(-1)]
    if p["has_ln"]:
        v = k_ln.ref({"rows": rows, "cols": k, **stage(p, "ln", LN_FIELDS)}, v)
    v = k_linear.ref({"rows": rows, "k": k, "n": h, **stage(p, "l1", LINEAR_FIELDS)}, v)
    if p["has_lut"]:
        v = k_lut.ref({"size": rows * h, "table": p["lut_table"]}, v)
    if p["has_l2"]:
        v = k_linear.ref({"rows": rows, "k": h, "n": n, **stage(p, "l2", LINEAR_FIELDS)}, v)
    if p["has_res"]:
        v = k_add.ref({"size": rows * n, "b_size": rows * n, **stage(p, "add", ADD_FIELDS)},
                      r[: rows * n], v)
    return np.asarray(v, dtype=np.int8).reshape(-1)


def macs(p: dict) -> int:
    return p["rows"] * p["h"] * (p["k"] + (p["n"] if p["has_l2"] else 0))


KERNEL = register(
    KernelDef(
        name="tokenwise",
        c_func="mcuc_tokenwise_s8",
        c_params_type="mcuc_tokenwise_params_t",
        fields=(
            *(Field(f, "int32") for f in ("rows", "tile", "k", "h", "n", "x_rs", *FLAGS)),
            Field("ln_y_zp", "int32"),
            Field("ln_eps_q", "int64"),
            Field("ln_gamma_q", "int32[]", nullable=True),
            Field("ln_beta_q", "int32[]", nullable=True),
            Field("l1_x_zp", "int32"),
            Field("l1_y_zp", "int32"),
            Field("l1_weights", "int8[]", nullable=True,
                  layout=lambda p, w: k_linear.pack_weights(w, p["h"], p["k"])),
            Field("l1_weights16", "int16[]", nullable=True,
                  layout=lambda p, w: k_linear.widen_layout(w, p["h"], p["k"])),
            Field("l1_bias", "int32[]", nullable=True),
            Field("l1_mult", "int32[]"),
            Field("l1_shift", "int32[]"),
            Field("lut_table", "int8[]", nullable=True),
            Field("l2_x_zp", "int32"),
            Field("l2_y_zp", "int32"),
            Field("l2_weights", "int8[]", nullable=True,
                  layout=lambda p, w: k_linear.pack_weights(w, p["n"], p["h"])),
            Field("l2_weights16", "int16[]", nullable=True,
                  layout=lambda p, w: k_linear.widen_layout(w, p["n"], p["h"])),
            Field("l2_bias", "int32[]", nullable=True),
            Field("l2_mult", "int32[]", nullable=True),
            Field("l2_shift", "int32[]", nullable=True),
            *(Field(f"add_{f}", "int32") for f in ADD_FIELDS),
        ),
        n_inputs=2,
        ref=ref,
        macs=macs,
        scratch=scratch_bytes,
        variants=("MCUC_ARM_DSP",),  # through linear_s8
    )
)
