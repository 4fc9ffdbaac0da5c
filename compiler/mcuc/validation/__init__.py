"""`mcuc validate`: a data set through the float model, the int8 reference and the target.

For a build directory (mcuc.json, checked by buildmeta.load_build) and a data set
(`fashion-mnist[:N]` test images with labels, an image folder, or an `.npy` array with
optional `.npy` labels) it reports, side by side:

- the float model (the build's ONNX file under onnxruntime, when `mcuc[search]`
  installed it; otherwise one line says so),
- the int8 reference (schedule/execute.py, the spec), rebuilt from what the build
  recorded (model file and digest, schedule options, every activation's quantization):
  no calibration runs again, and the re-rendered model sources must equal the build's,
- the target: the build itself, run on its engine (the host program, or the firmware in
  the board's emulator, many inputs per emulator launch).

Figures: accuracy (with labels), top-1 agreement with the reference, and the dequantized
outputs' RMSE, cosine similarity and relative L2 error against the float outputs (and the
target's against the reference), plus the number of inputs on which the target's int8
output differs from the reference's in any bit. Errors are over all inputs and outputs
flattened: rmse = sqrt(mean((a - b)^2)), cosine = <a, b> / (|a| |b|),
relative L2 = |a - b| / |b|, b the float (or reference) outputs.

The package: data.py reads the data set, runs.py runs the three models (run_target: the
build on its engine), results.py holds the figures and how they are computed, layers.py
the --per-layer table, table.py the printed table.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mcuc.buildmeta import load_build
from mcuc.target import engines
from mcuc.text import path_line
from mcuc.validation.data import load_data, parse_data
from mcuc.validation.layers import PER_LAYER_IMAGES, per_layer_errors
from mcuc.validation.results import Errors, LayerRow, Row, Validation, errors, top1
from mcuc.validation.runs import (
    float_available,
    rebuild_reference,
    run_float,
    run_reference,
    run_target,
)
from mcuc.validation.table import format_validation

__all__ = ["Errors", "LayerRow", "Row", "Validation", "errors", "float_available",
           "format_validation", "load_data", "parse_data", "per_layer_errors",
           "rebuild_reference", "run_float", "run_reference", "run_target", "validate"]


def validate(out_dir: Path | str, data: str = "fashion-mnist:1000",
             labels: str | Path | None = None, engine: str | None = None,
             limit: int | None = None, progress: bool = False,
             per_layer: bool = False, model: str | Path | None = None) -> Validation:
    """Validate build `out_dir` on `data` (see load_data) through the float model, the int8
    reference and the target on `engine` (mcuc.target.engines.resolve); see the module doc
    for the figures.
    `per_layer` adds each reference step against the float interpreter (per_layer_errors).
    `model`: where the build's model file is now, if it moved (rebuild_reference).
    One McucError line for any bad build, data, engine or failed run."""
    t_all = time.perf_counter()
    b = load_build(out_dir)
    eng = engines.resolve(b, engine)[1]
    x, y, desc = load_data(data, b, labels, limit)
    secs: dict[str, float] = {}
    warns: list[str] = []
    t0 = time.perf_counter()
    c, model_path = rebuild_reference(b, warns, model)
    secs["rebuild_reference"] = time.perf_counter() - t0
    from mcuc.quant.qparams import prepare_input

    xs_q = np.stack([prepare_input(v, b.input_shape, b.input_qp) for v in x])
    xs_f = b.input_qp.dequantize(x) if x.dtype == np.int8 else x

    t0 = time.perf_counter()
    ref_q = run_reference(c, xs_q, progress)
    secs["reference"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tgt_q, per_launch = run_target(b, xs_q, eng, progress)
    secs["target"] = time.perf_counter() - t0
    secs["target_per_image"] = secs["target"] / len(xs_q)

    flt = None
    f_row = Row("float (onnxruntime)")
    if model_path.suffix.lower() != ".onnx":
        f_row.note = f"not an ONNX file ({path_line(model_path.name)})"
    elif not float_available():
        f_row.note = "onnxruntime not installed (pip install 'mcuc[search]')"
    else:
        t0 = time.perf_counter()
        flt = run_float(model_path, xs_f, b.input_shape, progress,
                        as_written=c.graph.given is not None)
        secs["float"] = time.perf_counter() - t0
        if flt.shape[1] != ref_q.shape[1]:
            f_row.note = f"the ONNX model gives {flt.shape[1]} outputs, the build {ref_q.shape[1]}"
            flt = None

    ref_s, tgt_s = b.output_qp.dequantize(ref_q), b.output_qp.dequantize(tgt_q)
    ref_top = top1(ref_s)
    r_row = Row("int8 reference")
    t_row = Row(f"target ({'board' if eng.startswith('serial:') else eng})")
    for row, s in ((f_row, flt), (r_row, ref_s), (t_row, tgt_s)):
        if s is None:
            continue
        if y is not None:
            row.accuracy = float(np.mean(top1(s) == y))
        row.agreement = float(np.mean(top1(s) == ref_top))
        if flt is not None and row is not f_row:
            row.vs_float = errors(s, flt)
    t_row.vs_reference = errors(tgt_s, ref_s)
    diff = np.flatnonzero(np.any(ref_q != tgt_q, axis=1))
    layers = per_layer_errors(c, xs_f[:PER_LAYER_IMAGES]) if per_layer else None
    secs["total"] = time.perf_counter() - t_all
    return Validation(str(b.path), b.board, eng, desc, len(x), y is not None, f_row, r_row,
                      t_row, int(diff.size), int(diff[0]) if diff.size else None,
                      min(per_launch, len(x)), {k: round(v, 4) for k, v in secs.items()},
                      warns, layers)
