"""Canonical IR for a SubnetConfig, built directly: the NAS cost model's fast path.

Exporting a torch module to ONNX and canonicalizing it costs about a second per
candidate; the search needs thousands. This builder emits the same canonical nodes,
shapes and constant shapes that `load_graph(build_subnet(cfg))` produces (checked byte
for byte on arena and weights by tests/test_nas_space.py), with zero-filled weights:
the schedule and planner size buffers and constants from shapes alone. Biases are
emitted on every biased Linear, as for a trained model (the exporter drops all-zero
biases, so the exactness test randomizes the torch parameters).
"""

from __future__ import annotations

import numpy as np

from mcuc.ir.graph import Graph, Node, Tensor
from mcuc.nas.space import SubnetConfig
from mcuc.quant.calibrate import QGraph, assign_qparams
from mcuc.quant.qparams import QParams

LN_EPS = float(np.float32(1e-5))  # torch's LayerNorm eps, as the exporter stores it
DUMMY_QP = QParams(1.0 / 64.0, 0)


class _Builder:
    def __init__(self, name: str) -> None:
        self.g = Graph({}, [], [], [], name)
        self.k = 0

    def tensor(self, name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> str:
        self.g.tensors[name] = Tensor(name, tuple(shape), "float32", data)
        return name

    def const(self, name: str, shape: tuple[int, ...], fill: float = 0.0) -> str:
        return self.tensor(name, shape, np.full(shape, fill, np.float32))

    def node(self, op: str, inputs: list[str], out_shape: tuple[int, ...], **attrs) -> str:
        self.k += 1
        name = f"{op.lower()}_{self.k}"
        self.tensor(name, out_shape)
        self.g.nodes.append(Node(op, inputs, [name], attrs, f"node_{name}"))
        return name

    def linear(self, x: str, d_in: int, d_out: int, lead: tuple[int, ...],
               bias: bool = True) -> str:
        w = self.const(f"w{self.k + 1}", (d_out, d_in))
        ins = [x, w]
        if bias:
            ins.append(self.const(f"b{self.k + 1}", (d_out,)))
        return self.node("Linear", ins, lead + (d_out,))

    def maybe_lowrank(self, x: str, d_in: int, d_out: int, rank: int | None,
                      lead: tuple[int, ...]) -> str:
        if rank is None:
            return self.linear(x, d_in, d_out, lead)
        x = self.linear(x, d_in, rank, lead, bias=False)
        x = self.linear(x, rank, rank, lead, bias=False)
        return self.linear(x, rank, d_out, lead)

    def layernorm(self, x: str, d: int, shape: tuple[int, ...]) -> str:
        gamma = self.const(f"gamma{self.k + 1}", (d,), 1.0)
        beta = self.const(f"beta{self.k + 1}", (d,))
        return self.node("LayerNorm", [x, gamma, beta], shape, epsilon=LN_EPS)


def build_graph(cfg: SubnetConfig) -> Graph:
    """The canonical Graph the frontend would produce for build_subnet(cfg)."""
    b = _Builder("subnet")
    d, g_side = cfg.dim, cfg.resolution // cfg.patch
    n = g_side * g_side
    t = n + 1
    x = b.tensor("input", cfg.input_shape)
    b.g.inputs.append(x)
    w = b.const("patch_embed.weight", (d, cfg.in_chans, cfg.patch, cfg.patch))
    bias = b.const("patch_embed.bias", (d,))
    x = b.node("Conv", [x, w, bias], (1, d, g_side, g_side), strides=[cfg.patch, cfg.patch],
               pads=[0, 0, 0, 0], kernel_shape=[cfg.patch, cfg.patch])
    x = b.node("Reshape", [x], (1, d, n), shape=[1, d, n])
    x = b.node("Transpose", [x], (1, n, d), perm=[0, 2, 1])
    cls = b.const("cls_token", (1, 1, d))
    x = b.node("Concat", [cls, x], (1, t, d), axis=1)
    x = b.node("Add", [x, b.const("pos_embed", (t, d))], (1, t, d))
    tok = (1, t)
    for i in range(cfg.depth):
        h, rank, hidden = cfg.heads[i], cfg.rank(i), cfg.hidden(i)
        dh = d // h
        y = b.layernorm(x, d, tok + (d,))
        y = b.maybe_lowrank(y, d, 3 * d, rank, tok)
        y = b.node("Reshape", [y], (1, t, 3, h, dh), shape=[1, t, 3, h, dh])
        y = b.node("Transpose", [y], (3, 1, h, t, dh), perm=[2, 0, 3, 1, 4])
        qkv = []
        for j in range(3):
            s = b.node("Slice", [y], (1, 1, h, t, dh), starts=[j], ends=[j + 1], axes=[0],
                       steps=[1])
            qkv.append(b.node("Reshape", [s], (1, h, t, dh), shape=[1, h, t, dh]))
        q, k, v = qkv
        k = b.node("Transpose", [k], (1, h, dh, t), perm=[0, 1, 3, 2])
        a = b.node("MatMul", [q, k], (1, h, t, t))
        a = b.node("Mul", [a, b.const(f"scale{i}", (), dh ** -0.5)], (1, h, t, t))
        a = b.node("Softmax", [a], (1, h, t, t), axis=3)
        a = b.node("MatMul", [a, v], (1, h, t, dh))
        a = b.node("Transpose", [a], (1, t, h, dh), perm=[0, 2, 1, 3])
        a = b.node("Reshape", [a], tok + (d,), shape=[1, t, d])
        a = b.maybe_lowrank(a, d, d, rank, tok)
        x = b.node("Add", [x, a], tok + (d,))
        y = b.layernorm(x, d, tok + (d,))
        y = b.maybe_lowrank(y, d, hidden, rank, tok)
        y = b.node("Gelu", [y], tok + (hidden,), approximate="none")
        y = b.maybe_lowrank(y, hidden, d, rank, tok)
        x = b.node("Add", [x, y], tok + (d,))
    x = b.layernorm(x, d, tok + (d,))
    x = b.node("Slice", [x], (1, 1, d), starts=[0], ends=[1], axes=[1], steps=[1])
    x = b.node("Reshape", [x], (1, d), shape=[1, d])
    out = b.linear(x, d, cfg.num_classes, (1,))
    b.g.outputs.append(out)
    return b.g


def dummy_qgraph(graph: Graph, qp: QParams = DUMMY_QP) -> QGraph:
    """QParams for every activation without calibration, by calibrate()'s own rules:
    buffer and constant sizes depend on shapes only, never on scale values
    (tests/test_nas_space.py checks this)."""
    return assign_qparams(graph, lambda _name: qp)
