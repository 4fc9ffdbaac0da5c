"""Calibration: observe activation ranges on sample inputs, then fix every tensor's QParams.

Ranges are min/max over the calibration set. Ops that only move bytes (Reshape,
Transpose, Slice) keep their input's parameters so they never requantize; Softmax output
is fixed at 1/256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from mcuc import McucError
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph
from mcuc.quant.qparams import SOFTMAX_OUT, QParams

PASS_THROUGH = {"Reshape", "Transpose", "Slice"}


@dataclass
class QGraph:
    """A float graph with int8 parameters for every activation tensor."""

    graph: Graph
    qparams: dict[str, QParams]

    @property
    def input_name(self) -> str:
        return self.graph.inputs[0]

    @property
    def output_name(self) -> str:
        return self.graph.outputs[0]


def observe_ranges(
    graph: Graph, samples: np.ndarray, progress: bool = False
) -> dict[str, tuple[float, float]]:
    """Min/max of every activation over `samples` ([N, ...input shape without batch])."""
    if len(graph.inputs) != 1:
        raise McucError(f"mcuc compiles single-input models; this one has {len(graph.inputs)}")
    in_name = graph.inputs[0]
    in_shape = graph.tensors[in_name].shape
    ranges: dict[str, tuple[float, float]] = {}
    for x in tqdm(samples, desc="calibrating", disable=not progress, leave=False):
        feeds = {in_name: np.asarray(x, dtype=np.float32).reshape(in_shape)}
        values = interpreter.run(graph, feeds, keep_all=True)
        for name, v in values.items():
            t = graph.tensors.get(name)
            if t is None or t.is_const:
                continue
            lo, hi = float(np.min(v)), float(np.max(v))
            if name in ranges:
                plo, phi = ranges[name]
                lo, hi = min(lo, plo), max(hi, phi)
            ranges[name] = (lo, hi)
    return ranges


def assign_qparams(graph: Graph, choose: Callable[[str], QParams]) -> QGraph:
    """QParams for every activation: views keep their input's, Softmax output is fixed,
    every other tensor (graph inputs included) gets `choose(name)`."""
    qp: dict[str, QParams] = {name: choose(name) for name in graph.inputs}
    for node in graph.nodes:
        for out in node.outputs:
            if node.op in PASS_THROUGH:
                qp[out] = qp[node.inputs[0]]
            elif node.op == "Softmax":
                qp[out] = SOFTMAX_OUT
            else:
                qp[out] = choose(out)
    return QGraph(graph, qp)


def calibrate(graph: Graph, samples: np.ndarray, progress: bool = False) -> QGraph:
    ranges = observe_ranges(graph, samples, progress)
    return assign_qparams(graph, lambda name: QParams.from_range(*ranges[name]))
