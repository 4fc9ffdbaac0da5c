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

With x_wide (A16, quant/wide.py) x is int16 (bytes, kernels/wide16.py) and the chain
starts with the LayerNorm, which is then layernorm16's formula (the same as layernorm's).

Inputs: x [rows][k] (the chain input, row i at i * x_rs: rows may lie apart, as when
attention wrote them over its queries, see schedule/queries.py) and r [rows][n] (the
residual; x again when there is none). The residual add is stored with the residual as
`a` and the branch as `b`; since a + b is summed exactly before the one requantization,
the C kernel may swap them.

Each stage's params are that kernel's own params dict (`ln`, `l1`, `lut`, `l2`, `add`;
None for a stage the chain lacks), with rows covering all `rows`; the C struct nests the
stages' structs as they are and sets their row counts per call.

Where each stage writes is computed once, here (`layout`), and handed to C as derived
fields of the struct (ln_to, l1_to, l2_to: 0 = the output rows Y, 1 = region A, 2 = B;
b_offset: where B starts): scratch holds a region A (tile x a_w) then a region B
(tile x h). With `y_free` (y overlaps neither x nor r) the output rows of the tile double
as a stage buffer. Then:
  LayerNorm -> Y if (has_l2 and y_free and k <= n) else A
  Linear 1  -> B if has_l2 else (Y if y_free else (B if has_ln else A))
  Linear 2  -> Y if y_free else A          (A's LayerNorm rows are dead by then)
  residual  -> y = add(r, F) elementwise;   no residual and F not in Y: copy F to y.
When y aliases x (same start, n <= k) or r (same rows), y_free is 0 and a tile's input
rows are all read before its output rows are written, and output row i never lies past
input row i (n <= k), so rows not yet read are never overwritten.

`x_free` (set by the token-overwrite pass, schedule/tokenwise.py: x's bytes are dead after
this step and overlap neither y nor r) lets the C kernel stage a linear -> residual chain
of tile 1 in x's consumed rows, two rows at a time (tokenwise.c); results do not change.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import add as k_add
from mcuc.kernels import layernorm as k_ln
from mcuc.kernels import layernorm16 as k_ln16
from mcuc.kernels import linear as k_linear
from mcuc.kernels import lut as k_lut
from mcuc.kernels.registry import Field, KernelDef, register

FLAGS = ("has_ln", "has_lut", "has_l2", "has_res", "y_free", "x_free")
STAGES = {"ln": "layernorm", "l1": "linear", "lut": "lut", "l2": "linear", "add": "add"}
PLACES = {"Y": 0, "A": 1, "B": 2}   # where a stage writes (the C struct's *_to fields)


def stage_shapes(p: dict) -> dict[str, dict | None]:
    """The dims each stage's params must have (None: the stage must be absent)."""
    rows, k, h, n = p["rows"], p["k"], p["h"], p["n"]
    return {"ln": {"rows": rows, "cols": k} if p["has_ln"] else None,
            "l1": {"rows": rows, "k": k, "n": h},
            "lut": {"size": rows * h} if p["has_lut"] else None,
            "l2": {"rows": rows, "k": h, "n": n} if p["has_l2"] else None,
            "add": {"size": rows * n, "b_size": rows * n} if p["has_res"] else None}


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


def derived(p: dict) -> dict:
    """The C struct's layout fields; ValueError when a stage's params do not fit the
    chain's dims (so inconsistent params never reach C)."""
    if p["x_wide"] and (not p["has_ln"] or p["k"] > k_ln16.MAX_COLS):
        raise ValueError("tokenwise: an int16 x needs the LayerNorm stage (<= "
                         f"{k_ln16.MAX_COLS} columns)")
    for name, dims in stage_shapes(p).items():
        sp = p.get(name)
        if (sp is None) != (dims is None) or (
                dims is not None and any(sp.get(d) != v for d, v in dims.items())):
            raise ValueError(f"tokenwise: stage {name} does not match the chain's dims")
    lay = layout(p)
    return {"ln_to": PLACES[lay["ln"]], "l1_to": PLACES[lay["l1"]],
            "l2_to": PLACES[lay["l2"]], "b_offset": int(p["tile"]) * int(lay["a_w"])}


def scratch_bytes(p: dict) -> int:
    """Scratch of one call: tile x (a_w + b_w) bytes, at least 1 (C always takes it)."""
    lay = layout(p)
    return max(1, int(p["tile"]) * (int(lay["a_w"]) + int(lay["b_w"])))


def ref(p: dict, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    rows, k = p["rows"], p["k"]
    idx = np.arange(rows)[:, None] * p["x_rs"] + np.arange(k)[None, :]
    xv = np.ascontiguousarray(x, dtype=np.int8).reshape(-1)
    if p["x_wide"]:
        xv = xv[: xv.size // 2 * 2].view("<i2").astype(np.int64)
    v = xv[idx.reshape(-1)]
    if p["has_ln"]:
        v = k_ln.ref(p["ln"], v)
    v = k_linear.ref(p["l1"], v)
    if p["has_lut"]:
        v = k_lut.ref(p["lut"], v)
    if p["has_l2"]:
        v = k_linear.ref(p["l2"], v)
    if p["has_res"]:
        v = k_add.ref(p["add"], r[: rows * p["n"]], v)
    return np.asarray(v, dtype=np.int8).reshape(-1)


def macs(p: dict) -> int:
    return p["rows"] * p["h"] * (p["k"] + (p["n"] if p["has_l2"] else 0))


KERNEL = register(
    KernelDef(
        name="tokenwise",
        c_func="mcuc_tokenwise_s8",
        c_params_type="mcuc_tokenwise_params_t",
        fields=(
            *(Field(f, "int32") for f in ("rows", "tile", "k", "h", "n", "x_rs", *FLAGS,
                                          "ln_to", "l1_to", "l2_to", "b_offset",
                                          "x_wide")),
            *(Field(name, "struct", nullable=name != "l1", kernel=kernel)
              for name, kernel in STAGES.items()),
        ),
        n_inputs=2,
        ref=ref,
        macs=macs,
        scratch=scratch_bytes,
        derived=derived,
        variants=("MCUC_ARM_DSP",),  # through linear_s8
    )
)
