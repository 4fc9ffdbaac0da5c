"""Small graph-editing helpers shared by the canonicalization passes.

Passes edit `Graph.nodes` in place: a fused pattern's replacement node takes the slot of
the pattern's last node (so topological order holds, since its inputs come from outside
the pattern), and the other pattern nodes are dropped; `prune` sweeps the leftovers.
"""

from __future__ import annotations

import numpy as np

from mcuc.ir import interpreter
from mcuc.ir.graph import Graph, Node, Tensor
from mcuc.text import fresh


def const(g: Graph, name: str) -> np.ndarray | None:
    return g.const(name) if name else None


def scalar(g: Graph, name: str) -> float | None:
    """The value of a constant with exactly one element (any rank), else None."""
    c = const(g, name)
    if c is None or c.size != 1:
        return None
    return float(c.reshape(-1)[0])


def uniform(g: Graph, name: str) -> float | None:
    """A constant whose elements are all equal acts as a scalar under broadcasting."""
    c = const(g, name)
    if c is None or c.size == 0 or not np.all(c == c.reshape(-1)[0]):
        return None
    return float(c.reshape(-1)[0])


def is_act(g: Graph, name: str) -> bool:
    return bool(name) and name in g.tensors and not g.tensors[name].is_const


def shape(g: Graph, name: str) -> tuple[int, ...]:
    return tuple(g.tensors[name].shape)


def new_act(g: Graph, base: str, shape_: tuple[int, ...], dtype: str = "float32") -> str:
    """A fresh activation tensor name derived from `base`."""
    name = fresh(base, g.tensors)
    g.tensors[name] = Tensor(name, tuple(int(d) for d in shape_), dtype)
    return name


def rename(g: Graph, old: str, new: str) -> None:
    """Every reader of `old` reads `new` instead (graph outputs included)."""
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def bypass(g: Graph, node: Node, src: str) -> None:
    """Remove `node`, whose first output equals `src`; keep graph output names stable."""
    dst = node.outputs[0]
    g.nodes = [n for n in g.nodes if n is not node]
    prod = g.producers().get(src)
    if dst in g.outputs and prod is not None and src not in g.outputs:
        prod.outputs = [dst if o == src else o for o in prod.outputs]
        for n in g.nodes:
            n.inputs = [dst if i == src else i for i in n.inputs]
        g.tensors[dst].shape = g.tensors[src].shape
    else:
        rename(g, dst, src)


def replace(g: Graph, old: Node, new: list[Node], drop: list[Node] = ()) -> None:
    """Put `new` in the slot of `old` and delete the nodes in `drop`."""
    gone = {id(n) for n in drop}
    out: list[Node] = []
    for n in g.nodes:
        if n is old:
            out.extend(new)
        elif id(n) not in gone:
            out.append(n)
    g.nodes = out


def single_use(g: Graph, users: dict[str, list[Node]], name: str, inside: list[Node]) -> bool:
    """`name` is read only by nodes in `inside` and is no graph output."""
    ids = {id(n) for n in inside}
    return name not in g.outputs and all(id(u) in ids for u in users.get(name, []))


def fold_constants(g: Graph) -> None:
    """Evaluate every node whose inputs are all constant (and Shape/Size of static
    activations), turning its outputs into constant tensors."""
    kept: list[Node] = []
    for node in g.nodes:
        ins = [i for i in node.inputs if i]
        if node.op in ("Shape", "Size") and ins and ins[0] in g.tensors:
            dummy = np.zeros(g.tensors[ins[0]].shape, np.float32)
            outs = interpreter.run_node(node, [dummy])
        elif ins and all(g.tensors[i].is_const for i in ins if i in g.tensors) \
                and all(i in g.tensors for i in ins):
            outs = interpreter.run_node(node, [const(g, i) for i in node.inputs])
        elif not ins and node.op in ("Constant", "ConstantOfShape", "Range"):
            outs = interpreter.run_node(node, [])
        else:
            kept.append(node)
            continue
        for name, value in zip(node.outputs, outs, strict=False):
            if name:
                arr = np.asarray(value)
                g.tensors[name] = Tensor(name, tuple(arr.shape), arr.dtype.name, arr)
    g.nodes = kept


def make(op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> Node:
    return Node(op, list(inputs), list(outputs), dict(attrs), name)
