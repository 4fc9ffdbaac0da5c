"""`--int16 auto`: which tensors to widen, by measured sensitivity on calibration images.

The measure is a fake-quantized float run (`simulate`): the float interpreter with every
activation rounded to its grid (int8, or int16 for the widened ones) after each node;
weights stay float, so it isolates the activation error that int16 can remove. The error
of a choice is the mean squared difference of the model's output from the float run,
relative to the float output's mean square, over the calibration images.

`choose_auto` ranks each candidate (quant/wide.candidates) by the error with it alone
int16, then compares two choices within the arena budget (AUTO_ARENA_FACTOR times the
all-int8 arena): walking that ranking and keeping a candidate when it lowers the error of
the set so far, and all candidates less the least sensitive ones until the arena fits.
The one with the lower error wins (none, if neither beats all-int8). One simulation per
candidate, one per accepted step, one more for the whole set.
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
    ranked = sorted(alone, key=lambda c: alone[c])
    options = [_forward(qg, samples, ref, ranked, alone, base_err, arena_of, budget)]
    options.append(_whole(qg, samples, ref, ranked, arena_of, budget))
    chosen, err, arena = min((o for o in options if o is not None), key=lambda o: o[1])
    if err >= base_err:
        chosen, err, arena = [], base_err, base_arena
    record = {"images": len(samples), "int8_error": base_err, "error": err,
              "alone": alone, "arena_int8": base_arena, "arena": arena, "budget": budget}
    return chosen, record


Choice = tuple[list[str], float, int]  # names, error, arena


def _forward(qg: QGraph, samples: np.ndarray, ref: np.ndarray, ranked: list[str],
             alone: dict[str, float], base_err: float, arena_of: Callable[[QGraph], int],
             budget: int) -> Choice:
    """Add candidates, most sensitive first, while each lowers the error within budget."""
    chosen: list[str] = []
    err, arena = base_err, arena_of(qg)
    for c in ranked:
        if alone[c] >= base_err:
            break
        trial = widen(qg, [*chosen, c])
        a = arena_of(trial)
        if a > budget:
            continue
        e = error(trial, samples, ref)
        if e < err:
            chosen, err, arena = [*chosen, c], e, a
    return chosen, err, arena


def _whole(qg: QGraph, samples: np.ndarray, ref: np.ndarray, ranked: list[str],
           arena_of: Callable[[QGraph], int], budget: int) -> Choice | None:
    """Every candidate, dropping the least sensitive until the arena fits. One tensor of a
    residual stream alone in int16 often costs more arena than all of them (int8 and
    int16 neighbours cannot share a buffer in place), so forward steps can miss this."""
    chosen = list(ranked)
    while chosen:
        trial = widen(qg, chosen)
        a = arena_of(trial)
        if a <= budget:
            return chosen, error(trial, samples, ref), a
        chosen.pop()
    return None
