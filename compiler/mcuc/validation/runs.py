"""The three runs `mcuc validate` compares: the float model (onnxruntime), the int8
reference (rebuilt from mcuc.json) and the target (the build on its engine)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcuc import McucError
from mcuc.buildmeta import Build, sha256
from mcuc.codegen.modelname import model_files
from mcuc.text import path_line

if TYPE_CHECKING:
    from mcuc.pipeline import Compiled
    from mcuc.quant.qparams import QParams



def rebuild_reference(b: Build, warnings: list[str] | None = None,
                      model_file: str | Path | None = None) -> tuple[Compiled, Path]:
    """The build's Compiled (graph, schedule, plan), rebuilt from mcuc.json's `reference`
    record without calibrating. The model file (`model_file` if given: the build's model
    moved or copied elsewhere) must have the recorded digest; the
    model sources rendered from the rebuilt schedule are compared with the build's (a
    difference is appended to `warnings`: the target is then not this reference's C)."""
    import tempfile

    from mcuc.codegen.render import render
    from mcuc.pipeline import DEFAULT_MODEL, compile_graph, load_graph, tensor_key

    where = path_line(b.path / "mcuc.json")
    ref = b.meta.get("reference")
    if not isinstance(ref, dict):
        raise McucError(f"{where} records no model to rebuild the int8 reference from (made "
                        "by an older mcuc, or from a model given as a Python object); "
                        "rebuild with `mcuc build`")
    try:
        model = DEFAULT_MODEL if ref["model"] is None else Path(str(ref["model"]))
        digest = str(ref["model_sha256"])
        shape = tuple(int(d) for d in ref["input_shape"]) if ref["input_shape"] else None
        recorded = {str(k): _recorded_qp(v) for k, v in ref["qparams"].items()}
        disabled = tuple(str(d) for d in ref["disabled"])
        stream, optimize = bool(ref["stream_input"]), str(ref["optimize"])
        dsp = bool(ref.get("dsp", False))   # absent: a build from before the variants' tables
    except (KeyError, TypeError, ValueError, AttributeError):
        raise McucError(f"{where} has a malformed reference record; rebuild with "
                        "`mcuc build`") from None
    if model_file is not None:
        model = Path(model_file)
    if not model.is_file():
        raise McucError(f"the build's model {path_line(model)} is missing; validate needs it "
                        "to rebuild the int8 reference (give its new place with --model)")
    if sha256(model) != digest:
        raise McucError(f"the model {path_line(model)} is not the one this build was made "
                        "from (its sha256 differs); rebuild with `mcuc build`")
    graph = load_graph(model, shape)
    name = graph.name or "model"   # as `mcuc build` names it
    keys = {tensor_key(t): t for t in graph.tensors}
    if not set(recorded) <= set(keys):
        raise McucError(f"{where}'s quantization names tensors the model does not have; "
                        "rebuild with `mcuc build`")
    qparams = {keys[k]: q for k, q in recorded.items()}
    c = compile_graph(graph, np.zeros((0,)), disabled, stream_input=stream,
                      optimize=optimize, qparams=qparams, quant=str(ref.get("quant", "auto")),
                      dsp=dsp)
    files = b.meta.get("files", {})
    with tempfile.TemporaryDirectory(prefix="mcuc-validate-") as tmp:
        render(c.schedule, c.plan, Path(tmp), model_name=name, makefile=None, name=b.name)
        differ = [f for f in model_files(b.name).values()
                  if f in files and sha256(Path(tmp) / f) != files[f]]
    if differ and warnings is not None:
        warnings.append(f"the build's {', '.join(differ)} differ from the reference rebuilt "
                        "from its model (another mcuc version?): mismatches may be expected")
    if (c.schedule.output_qp != b.output_qp or c.schedule.input_qp != b.input_qp
            or tuple(c.schedule.output_shape) != b.output_shape):
        raise McucError(f"the reference rebuilt from {path_line(model)} does not match "
                        f"{where} (input/output quantization); rebuild with `mcuc build`")
    return c, model


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)


def run_reference(c: Compiled, xs_q: np.ndarray, progress: bool = False) -> np.ndarray:
    """int8 outputs [N, K] of the reference on int8 inputs [N, size]."""
    from mcuc.schedule import execute

    out = []
    with _bar(len(xs_q), "int8 reference", progress) as bar:
        for x in xs_q:
            out.append(execute.run(c.schedule, x, c.plan).reshape(-1))
            bar.update(1)
    return np.stack(out)



def run_target(b: Build, xs_q: np.ndarray, engine: str | None, progress: bool = False
               ) -> tuple[np.ndarray, int]:
    """(int8 outputs [N, K], inputs per launch) of the build on int8 inputs [N, size], on
    `engine` (mcuc.target.engines: the host program, an emulator, or a board, `serial:PORT`)."""
    from mcuc.target import engines

    k = math.prod(b.output_shape)
    label = engines.resolve(b, engine)[1]
    with _bar(len(xs_q), f"target ({label})", progress) as bar:
        res = engines.run(b, xs_q, label, count=False, on_launch=bar.update)
    for y in res.outputs:
        if y.size != k:
            raise McucError(f"the build printed {y.size} output values; its mcuc.json says "
                            f"{k}; rebuild with `mcuc build`")
    return np.stack([y.reshape(-1) for y in res.outputs]).astype(np.int8), res.per_launch


def run_float(model: Path, xs: np.ndarray, input_shape: tuple[int, ...],
              progress: bool = False, as_written: bool = False) -> np.ndarray:
    """Float outputs [N, K] of the ONNX model under onnxruntime (ImportError without it).
    `as_written` turns onnxruntime's graph optimizations off, so a QDQ model runs op by op
    as written (float between its Q/DQ pairs): its default session fuses them into QLinear
    kernels whose results depend on the host (bench/quant.md)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if as_written:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = []
    with _bar(len(xs), "float (onnxruntime)", progress) as bar:
        for x in xs:
            y = sess.run(None, {name: x.reshape(input_shape).astype(np.float32)})[0]
            out.append(np.asarray(y, dtype=np.float64).reshape(-1))
            bar.update(1)
    return np.stack(out)


def float_available() -> bool:
    """Whether onnxruntime imports (the `mcuc[search]` extra installs it)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _recorded_qp(v: list) -> QParams:
    """[scale, zero point] as a build records an int8 tensor; [.., 16] an int16 one."""
    if len(v) not in (2, 3) or (len(v) == 3 and int(v[2]) != 16):
        raise ValueError("malformed qparams")
    from mcuc.quant.qparams import QParams

    return QParams(float(v[0]), int(v[1]), 16 if len(v) == 3 else 8)
