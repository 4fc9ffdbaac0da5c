"""`mcuc validate --per-layer`: each step of the int8 reference against the float
interpreter, to show which layer loses accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mcuc.pipeline import Compiled

from mcuc.validation.results import LayerRow, errors

# Inputs compared (each is one float and one int8 run in numpy), and the ops left out of
# the table (they move values, so their error is their input's).
PER_LAYER_IMAGES = 20
MOVES = frozenset({"Reshape", "Transpose", "Slice", "Gather", "Flatten", "Squeeze",
                   "Unsqueeze", "Identity", "Split", "Concat"})


def per_layer_errors(c: Compiled, xs: np.ndarray) -> list[LayerRow]:
    """Each activation of the int8 reference against the float interpreter
    (ir/interpreter.py) on the same float inputs `xs`, in graph order: cosine over all
    inputs, max absolute error, and that error in the tensor's LSBs. Errors add up along
    the graph, so the first layer where they jump is the one that loses accuracy.

    The reference is lowered here with every memory technique off (each step one IR op,
    each activation its own buffer, as tests/test_layers_vs_float.py does); the
    techniques are bit-exact rewrites, so its outputs are the build's."""
    from mcuc.ir import interpreter
    from mcuc.schedule import execute
    from mcuc.schedule.lower import Lowerer
    from mcuc.schedule.passes import TECHNIQUES

    qg, g = c.qgraph, c.graph
    lw = Lowerer(qg)
    lw.inplace = False
    s = lw.run(TECHNIQUES)
    writer = {st.output: st for st in s.steps}
    producer = {out: node.op for node in g.nodes for out in node.outputs}
    got: dict[str, list[np.ndarray]] = {}
    want: dict[str, list[np.ndarray]] = {}
    for x in xs:
        x_q = execute.quantize_input(s, x[None])
        trace: dict[str, np.ndarray] = {}
        execute.run(s, x_q, trace=trace)
        ref = interpreter.run(g, {g.inputs[0]: x[None].astype(np.float32)}, keep_all=True)
        for t, buf in lw.buf_of.items():
            st = writer.get(buf)
            if st is None or t not in ref or t not in qg.qparams:
                continue
            f = np.asarray(ref[t], np.float64).reshape(-1)
            raw = trace[st.name]  # bytes: an int16 tensor (--int16) is pairs of them
            raw = raw[: raw.size // 2 * 2].view("<i2") if qg.qparams[t].wide else raw
            q = qg.qparams[t].dequantize(raw[: f.size])
            if q.size == f.size:
                got.setdefault(t, []).append(q)
                want.setdefault(t, []).append(f)
    rows = []
    for t in got:
        e = errors(np.concatenate(got[t]), np.concatenate(want[t]))
        st = writer[lw.buf_of[t]]
        if producer.get(t, st.op) in MOVES:
            continue
        rows.append(LayerRow(st.name, producer.get(t, st.op), t, e.cosine, e.max_abs,
                             e.max_abs / qg.qparams[t].scale))
    return rows
