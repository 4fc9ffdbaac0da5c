"""Use the quantization a QDQ model states (`Graph.given`, frontend/qdq.py) instead of
mcuc's own calibration, and say in one line per kind what had to change.

Activations: a tensor the model quantizes gets its (scale, zero point); uint8 becomes
int8 with the zero point shifted by -128 (exact). Tensors the model leaves in float --
the intermediates of what mcuc fuses (GELU's erf chain, LayerNorm's statistics) or ops the
quantizer skipped -- keep the calibrated parameters they were given before. mcuc's integer
spec fixes three things a model may state otherwise: Reshape/Transpose/Slice are views,
so their output keeps their input's parameters, and Softmax's output is 1/256 with zero
point -128. A Linear's bias is added before its single rounding, where onnxruntime's
quantizer rounds the MatMul's product first and then the Add (one warning line).

Weights: a Linear/Conv weight that equals (after the transposes canonicalization
made) the value of a DequantizeLinear with zero point 0 (int8, or uint8 at 128) and one
scale per output channel (per tensor is one scale repeated) keeps those scales, so its
int8 values are the model's. Asymmetric or otherwise shaped grids, and float weights,
are quantized by mcuc (symmetric, per output channel).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcuc.ir.graph import GivenQuant, Graph
from mcuc.quant.calibrate import PASS_THROUGH, QGraph
from mcuc.quant.qparams import SOFTMAX_OUT, QParams, bias_floor

MODES = ("auto", "given", "calibrate")


def check_mode(mode: str) -> None:
    from mcuc import McucError

    if mode not in MODES:
        raise McucError(f"--quant must be one of {', '.join(MODES)}, not {mode!r}")


def resolve_mode(mode: str, graph: Graph) -> str:
    """'given' or 'calibrate': auto picks given exactly when the model has QDQ nodes."""
    from mcuc import McucError

    check_mode(mode)
    if mode == "given" and graph.given is None:
        raise McucError("--quant given: the model has no QuantizeLinear/DequantizeLinear "
                        "nodes to take scales from (use --quant calibrate)")
    if mode == "auto":
        return "given" if graph.given is not None else "calibrate"
    return mode


def given_activations(qg: QGraph) -> tuple[dict[str, QParams], list[str], int, int]:
    """Every activation's QParams with the model's where it states them; one note line
    per kind of change; how many use the model's and how many calibrated ones (views
    and Softmax outputs are neither)."""
    g, given = qg.graph, qg.graph.given
    qp: dict[str, QParams] = {}
    used = calibrated = views = soft = 0

    def pick(name: str) -> QParams:
        nonlocal used, calibrated
        if name in given.acts:
            used += 1
            return QParams(*given.acts[name])
        calibrated += 1
        return qg.qparams[name]

    for name in g.inputs:
        qp[name] = pick(name)
    for node in g.nodes:
        for out in node.outputs:
            if node.op in PASS_THROUGH:
                qp[out] = qp[node.inputs[0]]
                views += out in given.acts and QParams(*given.acts[out]) != qp[out]
            elif node.op == "Softmax":
                qp[out] = SOFTMAX_OUT
                soft += out in given.acts and QParams(*given.acts[out]) != SOFTMAX_OUT
            else:
                qp[out] = pick(out)
    notes = []
    if given.uint8:
        notes.append(f"quant: {given.uint8} uint8 activations run as int8 (zero point - 128; "
                     "exact)")
    if views:
        notes.append(f"quant: {views} Reshape/Transpose/Slice outputs keep their input's "
                     "scale instead of the model's (mcuc runs them as views)")
    if soft:
        notes.append(f"quant: {soft} Softmax outputs use scale 1/256, zero point -128 "
                     "instead of the model's (mcuc's integer softmax)")
    if given.products:
        notes.append(f"quant: {given.products} Linear layers add their bias before rounding "
                     "where the model rounds the product first (MatMul -> QDQ -> Add); "
                     "mcuc rounds once (1 LSB apart on some outputs)")
    if given.constants:
        notes.append(f"quant: {given.constants} quantized float constants are used at full "
                     "precision (mcuc folds them into integer parameters)")
    return qp, notes, used, calibrated


def _full(v: np.ndarray, axis: int | None, shape: tuple[int, ...]) -> np.ndarray:
    """A per-tensor or per-axis parameter as a (read-only, uncopied) array of `shape`."""
    if axis is not None:
        v = v.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return np.broadcast_to(v, shape)


def _match(w: np.ndarray, given: GivenQuant) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, zero point) laid out like `w`, from the given constant equal to w."""
    for value, scale, zp, axis in given.weights:
        if value.size != w.size:
            continue
        for view in (lambda a: a, lambda a: a.reshape(a.shape[-2:]).T if a.ndim >= 2 else a):
            try:
                v = view(value)
            except ValueError:
                continue
            if v.shape == w.shape and np.array_equal(v, w):
                return (view(_full(scale, axis, value.shape)),
                        view(_full(zp, axis, value.shape)))
    return None


def given_weights(qg: QGraph) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per output channel scales of the Linear/Conv weights the model quantized itself,
    by weight tensor name; notes for the weights mcuc had to quantize or coarsen."""
    g, given = qg.graph, qg.graph.given
    scales: dict[str, np.ndarray] = {}
    own = asym = coarse = 0
    for node in g.nodes:
        if node.op not in ("Linear", "Conv"):
            continue
        w = g.const(node.inputs[1])
        hit = _match(w, given)
        if hit is None:
            own += 1
            continue
        s, z = (a.reshape(w.shape[0], -1) for a in hit)
        if np.any(z != 0):
            asym += 1
            continue
        if np.any(s != s[:, :1]):
            own += 1
            continue
        scales[node.inputs[1]] = s[:, 0].copy()
        b = g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if b is not None:
            floor = bias_floor(w, b, qg.qparams[node.inputs[0]].scale, 128)
            coarse += int(np.any(floor > s[:, 0]))
    notes = []
    if asym:
        notes.append(f"quant: {asym} layers with asymmetric weights (zero point != 0) were "
                     "requantized symmetric per channel by mcuc")
    if own:
        notes.append(f"quant: {own} layers whose weights the model leaves in float or "
                     "quantizes along another axis were quantized by mcuc")
    if coarse:
        notes.append(f"quant: {coarse} layers got a coarser weight scale on some channels so "
                     "that their bias fits int32")
    return scales, notes


def apply_given(qg: QGraph) -> tuple[QGraph, dict]:
    """`qg` (calibrated, or as a build recorded it) with the model's stated quantization,
    and what report.json's "quant" says about it: counts and one warning line per kind
    of change."""
    qp, notes, used, calibrated = given_activations(qg)
    qg = dataclasses.replace(qg, qparams=qp)
    scales, more = given_weights(qg)
    layers = sum(n.op in ("Linear", "Conv") for n in qg.graph.nodes)
    info = {"mode": "given", "given_activations": used, "calibrated_activations": calibrated,
            "given_weights": len(scales), "mcuc_weights": layers - len(scales),
            "warnings": notes + more}
    return dataclasses.replace(qg, weight_scales=scales), info
