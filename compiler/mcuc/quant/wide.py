"""A16 mixed precision: int16 activations for the tensors whose int8 error hurts most.

Where int8 fails is usually the residual stream of a class-token ViT: timm initializes
the class token near zero, so its row of the stream (class token plus positional
embedding) is a few hundredths while the patch tokens span several units. One
per-tensor int8 scale leaves the class token a handful of levels; the first LayerNorm
then normalizes that quantization noise up to unit size, and the class token -- the
only row the classifier reads -- is mostly noise. An int16 grid (symmetric, zero point
0, `QParams.symmetric16`) on those tensors keeps the class token.

Only tensors whose every kernel has an A16 variant can be int16: outputs of Add
(kernels/add16) and Concat (kernels/copy16) that are read only by Add, LayerNorm
(kernels/layernorm16, at most 512 columns) and Concat, through Reshapes. `candidates` lists them;
`check_names` refuses any other name in one line; `widen` gives the chosen ones int16
parameters (their int8 range, made symmetric); `choose_auto` picks them by measured
sensitivity on the calibration images under an arena budget (module `sensitivity`).
"""

from __future__ import annotations

import dataclasses

from mcuc import McucError
from mcuc.ir.graph import Graph
from mcuc.kernels.layernorm16 import MAX_COLS as LN16_MAX_COLS
from mcuc.quant.calibrate import QGraph
from mcuc.quant.qparams import QParams
from mcuc.text import one_line

PRODUCERS = ("Add", "Concat")
READERS = ("Add", "LayerNorm", "Concat")
AUTO_ARENA_FACTOR = 1.3  # --int16 auto: at most this times the all-int8 arena
SHOWN = 12               # candidates named in an error line


def _readers_ok(g: Graph, t: str, users: dict) -> bool:
    if t in g.outputs or not users.get(t):
        return False
    for u in users[t]:
        if u.op == "Reshape":
            if not _readers_ok(g, u.outputs[0], users):
                return False
        elif u.op not in READERS or (u.op == "LayerNorm" and (
                u.inputs[0] != t or g.tensors[t].shape[-1] > LN16_MAX_COLS)):
            return False
    return True


def candidates(g: Graph) -> list[str]:
    """Tensors that may be int16, in graph order."""
    users = g.consumers()
    return [n.outputs[0] for n in g.nodes
            if n.op in PRODUCERS and _readers_ok(g, n.outputs[0], users)]


def parse_names(spec: str) -> tuple[str, ...] | str:
    """`--int16`'s value: "auto", or comma-separated tensor names ("" for none)."""
    if spec.strip() == "auto":
        return "auto"
    return tuple(n.strip() for n in spec.split(",") if n.strip())


def check_names(g: Graph, names: tuple[str, ...]) -> None:
    """One-line McucError for a name that is no tensor, or one that cannot be int16."""
    ok = candidates(g)
    shown = ", ".join(one_line(c, 40) for c in ok[:SHOWN]) + (", ..." if len(ok) > SHOWN else "")
    for n in names:
        if n not in g.tensors:
            raise McucError(f"--int16: '{one_line(n, 60)}' is not a tensor of the model "
                            f"(int16 candidates: {shown or 'none'})")
        if n not in ok:
            raise McucError(f"--int16: tensor '{one_line(n, 60)}' cannot be int16 (only Add "
                            "and Concat outputs read by Add, LayerNorm or Concat can; "
                            f"candidates: {shown or 'none'})")


def widen(qg: QGraph, names: tuple[str, ...] | list[str]) -> QGraph:
    """qg with int16 parameters on `names` and the Reshapes of them (same buffer)."""
    if not names:
        return qg
    qp = dict(qg.qparams)
    users = qg.graph.consumers()
    todo = list(names)
    while todo:
        t = todo.pop()
        q = qp[t]
        if not q.wide:
            qp[t] = QParams.symmetric16(q.scale * (-128 - q.zero_point),
                                        q.scale * (127 - q.zero_point))
        todo += [u.outputs[0] for u in users.get(t, []) if u.op == "Reshape"]
    return dataclasses.replace(qg, qparams=qp)


def wide_names(qg: QGraph) -> list[str]:
    """The int16 tensors of qg that are not Reshapes of another (what --int16 names)."""
    prod = qg.graph.producers()
    return [t for t, q in qg.qparams.items()
            if q.wide and (t not in prod or prod[t].op != "Reshape")]
