"""Graph-level fusions done before lowering (operator integration, epilogue side).

A Mul by a scalar right after a Linear, MatMul or Conv (attention's 1/sqrt(d) scale)
costs a requantization and a pass over the data; folding it into the producer's
requantization multiplier costs nothing and rounds once instead of twice.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from mcuc.ir.graph import Graph
from mcuc.quant.calibrate import QGraph

PRODUCERS = ("Linear", "MatMul", "Conv")


def fold_scalar_muls(qg: QGraph) -> QGraph:
    g = qg.graph
    users = g.consumers()
    prod = g.producers()
    nodes = [copy.copy(n) for n in g.nodes]
    index = {id(n): i for i, n in enumerate(g.nodes)}
    drop: set[int] = set()
    for i, node in enumerate(g.nodes):
        if node.op != "Mul":
            continue
        src = node.inputs[0]
        p = prod.get(src)
        if p is None or p.op not in PRODUCERS or src in g.outputs:
            continue
        if len(users.get(src, [])) != 1:
            continue
        c = float(np.asarray(g.const(node.inputs[1])).reshape(-1)[0])
        k = index[id(p)]
        attrs = dict(nodes[k].attrs)
        attrs["post_scale"] = float(attrs.get("post_scale", 1.0)) * c
        nodes[k].attrs = attrs
        nodes[k].outputs = list(node.outputs)
        drop.add(i)
    if not drop:
        return qg
    new = Graph(dict(g.tensors), [n for i, n in enumerate(nodes) if i not in drop],
                list(g.inputs), list(g.outputs), g.name)
    return dataclasses.replace(qg, graph=new)
