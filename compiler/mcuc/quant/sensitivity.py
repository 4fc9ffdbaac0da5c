"""`--int16 auto`: which tensors to widen, by measured sensitivity on calibration images.

The measure is a fake-quantized float run (`simulate`): the float interpreter with every
activation rounded to its grid (int8, or int16 for the widened ones) after each node;
weights stay float, so it isolates the activation error that int16 can remove. The error
of a choice is the mean squared difference of the model's output from the float run,
relative to the float output's mean square, over the calibration images.

`choose_auto` ranks each candidate (quant/wide.candidates) by the error with it alone
int16, then walks that ranking and keeps a candidate when it lowers the error of the set
chosen so far and the planned arena stays within the budget (AUTO_ARENA_FACTOR times the
all-int8 arena). One simulation per candidate, one more per accepted step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuc.ir import interpreter
from mcuc.quant.calibrate import QGraph
from mcuc.quant.wide import AUTO_ARENA_FACTOR, candidates, widen

MAX_IMAGES = 32  # calibration images the measure uses (each choice runs them all)


def simulate(qg: QGraph, samples: np.ndarray) -> np.ndarray:
    """The graph output on each sample with every activation fake-quantized: [N, outputs]."""
    g = qg.graph
    name = g.inputs[0]
    shape = g.tensors[name].shape
    outs = []
    for x in samples:
        q = qg.qparams[name]
        env = {name: q.dequantize(q.quantize(np.reshape(x, shape))).astype(np.float32)}
        for node in g.nodes:
            ins = [None if not i else env[i] if i in env else g.const(i) for i in node.inputs]
            for t, v in zip(node.outputs, interpreter.run_node(node, ins), strict=False):
                qp = qg.qparams.get(t)
                env[t] = v if qp is None else qp.dequantize(qp.quantize(v)).astype(np.float32)
        outs.append(np.asarray(env[g.outputs[0]], dtype=np.float64).reshape(-1))
    return np.stack(outs)


def float_outputs(qg: QGraph, samples: np.ndarray) -> np.ndarray:
    g = qg.graph
    shape = g.tensors[g.inputs[0]].shape
    return np.stack([np.asarray(interpreter.run(g, {g.inputs[0]: np.reshape(x, shape)})
                                [g.outputs[0]], dtype=np.float64).reshape(-1)
                     for x in samples])


def error(qg: QGraph, samples: np.ndarray, ref: np.ndarray) -> float:
    """Mean squared output error of the fake-quantized run, relative to the float output."""
    d = simulate(qg, samples) - ref
    return float(np.mean(d * d) / max(np.mean(ref * ref), 1e-30))


def choose_auto(qg: QGraph, samples: np.ndarray, arena_of: Callable[[QGraph], int]
                ) -> tuple[list[str], dict]:
    """(chosen tensor names, a record of the measure for the build report)."""
    samples = np.asarray(samples)[:MAX_IMAGES]
    ref = float_outputs(qg, samples)
    base_err = error(qg, samples, ref)
    base_arena = arena_of(qg)
    budget = int(AUTO_ARENA_FACTOR * base_arena)
    alone = {c: error(widen(qg, [c]), samples, ref) for c in candidates(qg.graph)}
    chosen: list[str] = []
    err, arena = base_err, base_arena
    for c in sorted(alone, key=lambda c: alone[c]):
        if alone[c] >= base_err:
            break
        trial = widen(qg, [*chosen, c])
        a = arena_of(trial)
        if a > budget:
            continue
        e = error(trial, samples, ref)
        if e < err:
            chosen, err, arena = [*chosen, c], e, a
    record = {"images": len(samples), "int8_error": base_err, "error": err,
              "alone": alone, "arena_int8": base_arena, "arena": arena, "budget": budget}
    return chosen, record
