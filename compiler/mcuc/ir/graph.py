"""The float IR: tensors, nodes, graph.

One IR serves every frontend. A tensor with `data` set is a constant (weights, the
class token, positional embeddings); every other tensor is an activation whose shape is
static (batch 1). Nodes are kept in topological order.

Canonical op set (what quantization consumes, after `frontend.canonicalize`):

    Conv        x, W[, b]      attrs: strides, pads (t, l, b, r); NCHW, group 1, dilation 1
    Linear      x, W[, b]      W is [out, in]; y = x @ W.T + b over the last axis
    MatMul      a, b           both activations, equal leading (batch) dims
    Add         a, b           b broadcasts onto a as a suffix (or equal shapes)
    Mul         x, c           c is a scalar constant (Div by a constant becomes Mul)
    LayerNorm   x, gamma, beta attrs: epsilon; over the last axis
    Softmax     x              attrs: axis (always last after canonicalize)
    Gelu        x              attrs: approximate ("none" | "tanh")
    Relu, Sigmoid, Tanh, Erf   x   (int8 elementwise: become lookup tables)
    Transpose   x              attrs: perm
    Reshape     x              attrs: shape (static, fully resolved)
    Slice       x              attrs: starts, ends, axes, steps (static, resolved)
    Concat      xs...          attrs: axis
    ReduceMean  x              attrs: axes, keepdims
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcuc.text import fresh


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class GivenQuant:
    """Quantization a QDQ model states (frontend/qdq.py), kept beside the float graph it
    was stripped from so that quant/given.py can use it instead of calibrating.

    `acts`: activation tensor -> (scale, int8 zero point), uint8 already shifted by -128
    (`uint8` counts those). `weights`: (float value, scale, int8 zero point, axis) of each
    int8/uint8 constant a DequantizeLinear produced (scale and zero point one value, or one
    per index of `axis`), matched by value after canonicalization (which transposes and
    renames weights). `constants`: float constants whose Q/DQ pair was dropped (used at
    full precision). `products`: Linear layers whose bias canonicalization fused
    although the model quantizes the product before adding it (mcuc rounds once)."""

    acts: dict[str, tuple[float, int]] = field(default_factory=dict)
    weights: list[tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = \
        field(default_factory=list)
    uint8: int = 0
    constants: int = 0
    products: int = 0


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"
    given: GivenQuant | None = None   # set when the model carried QDQ nodes

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def producers(self) -> dict[str, Node]:
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    users.setdefault(i, []).append(n)
        return users

    def add_const(self, name: str, value: np.ndarray) -> str:
        """Add a constant tensor under a fresh name derived from `name`."""
        name = fresh(name, self.tensors)
        arr = np.asarray(value)
        self.tensors[name] = Tensor(name, tuple(arr.shape), str(arr.dtype), arr)
        return name

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads and tensors nobody references."""
        live = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                kept.append(n)
                live.update(i for i in n.inputs if i)
        self.nodes = kept[::-1]
        live.update(self.inputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in live}

    def summary(self) -> str:
        lines = [f"graph {self.name}: inputs {self.inputs} outputs {self.outputs}"]
        for n in self.nodes:
            shapes = [self.tensors[o].shape for o in n.outputs]
            lines.append(f"  {n.op:<11} {n.name:<30} {n.inputs} -> {n.outputs} {shapes}")
        return "\n".join(lines)
