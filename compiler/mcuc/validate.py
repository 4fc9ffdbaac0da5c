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
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcuc import McucError
from mcuc.buildmeta import Build, load_build, sha256
from mcuc.codegen.modelname import model_files
from mcuc.text import cut, one_line, path_line

if TYPE_CHECKING:
    from mcuc.pipeline import Compiled

ENGINES = ("host", "unicorn", "qemu")
# Inputs per emulator launch where the firmware reads them from a file (semihosting):
# one launch could take them all, but a chunk at a time drives the progress bar.
SEMIHOST_CHUNK = 50
# The model sources whose digests must match the re-rendered reference (main.c is the
# driver, not the model).
MAX_VALIDATE_IMAGES = 10000
# --per-layer: inputs compared (each is one float and one int8 run in numpy), and the ops
# left out of its table (they move values, so their error is their input's).
PER_LAYER_IMAGES = 20
MOVES = frozenset({"Reshape", "Transpose", "Slice", "Gather", "Flatten", "Squeeze",
                   "Unsqueeze", "Identity", "Split", "Concat"})


@dataclass
class Errors:
    """Dequantized outputs against a baseline (flattened over inputs and outputs)."""
    rmse: float
    cosine: float
    rel_l2: float
    max_abs: float


@dataclass
class Row:
    """One model's figures; `note` says why a model could not be run (then no figures)."""
    name: str
    accuracy: float | None = None
    agreement: float | None = None         # top-1 agreement with the int8 reference
    vs_float: Errors | None = None
    vs_reference: Errors | None = None     # the target only
    note: str | None = None


@dataclass
class LayerRow:
    """One step of the int8 reference against the float interpreter (--per-layer)."""
    step: str
    op: str
    tensor: str
    cosine: float
    max_abs: float
    max_lsb: float


@dataclass
class Validation:
    """What `validate` returns (and `mcuc validate --json` prints)."""
    build: str
    board: str
    engine: str
    data: str
    images: int
    labelled: bool
    float_model: Row
    reference: Row
    target: Row
    mismatches: int                        # inputs where target != reference (any bit)
    first_mismatch: int | None
    per_launch: int = 1                    # inputs per run of the program / emulator
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    per_layer: list[LayerRow] | None = None

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bit_exact"] = self.bit_exact
        return d


# --- data ----------------------------------------------------------------------------------

def parse_data(spec: str) -> tuple[str, int | None]:
    """'fashion-mnist:200' -> ('fashion-mnist', 200), likewise an image folder's 'DIR:200';
    anything else -> (spec, None)."""
    from mcuc.datasets import NAMED_DATASETS

    name, sep, count = spec.rpartition(":")
    if sep and (name in NAMED_DATASETS or Path(name).is_dir()):
        try:
            n = int(count)
        except ValueError:
            raise McucError(f"bad --data {one_line(spec, 80)}: the count after ':' must be an "
                            "integer (e.g. fashion-mnist:1000)") from None
        return name, n
    return spec, None


def load_data(spec: str, b: Build, labels: str | Path | None = None,
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs [N, *input_shape[1:]] float32 or int8, labels int64 [N] or None, a
    description). A named data set gives its test split with labels; a folder its test
    split (or all of it); an `.npy` file holds [N, ...] inputs (float, or int8 already
    quantized), its labels an optional `.npy` of N integers."""
    from mcuc.datasets import NAMED_DATASETS, load_dataset
    from mcuc.limits import check_count, read_npy

    name, n = parse_data(spec)
    if n is None:
        n = limit
    if n is not None:
        check_count(n, "the number of images", MAX_VALIDATE_IMAGES)
    sample = tuple(b.input_shape[1:])
    if name in NAMED_DATASETS or Path(name).is_dir():
        if labels is not None:
            raise McucError("--labels goes with an .npy --data; a data set brings its own")
        if len(sample) != 3:
            raise McucError(f"data set {one_line(name, 80)} gives images; the model input is "
                            f"{list(b.input_shape)}")
        x, y, _ = load_dataset(name, "test", limit=n, size=sample[1], channels=sample[0])
        if x.shape[1:] != sample:
            raise McucError(f"data set {one_line(name, 80)} gives inputs shaped "
                            f"{list(x.shape[1:])}; the model input is {list(b.input_shape)}")
        return x, y, f"{name} test[:{len(x)}]"
    if not name.endswith(".npy"):
        raise McucError(f"--data {one_line(name, 80)} is neither a data set "
                        f"({', '.join(sorted(NAMED_DATASETS))}[:N]), a folder nor an .npy file")
    x = read_npy(name, "data file")
    if x.shape == tuple(b.input_shape) or x.shape == sample:
        x = x.reshape((1,) + sample)
    elif x.ndim == len(sample) + 2 and x.shape[1:] == tuple(b.input_shape):
        x = x.reshape((x.shape[0],) + sample)
    elif x.ndim != len(sample) + 1 or x.shape[1:] != sample:
        raise McucError(f"data file {path_line(name)} holds an array shaped {list(x.shape)}; "
                        f"expected [N, {', '.join(map(str, sample))}] for model input "
                        f"{list(b.input_shape)}")
    if len(x) == 0:
        raise McucError(f"data file {path_line(name)} holds no inputs")
    if n is not None:
        x = x[:n]
    check_count(len(x), f"inputs in {path_line(name)}", MAX_VALIDATE_IMAGES)
    if x.dtype != np.int8:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise McucError(f"data file {path_line(name)} holds NaN or infinite values")
    y = None
    if labels is not None:
        y = read_npy(labels, "labels file")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise McucError(f"labels file {path_line(labels)} must hold a 1-D integer array, "
                            f"not {y.dtype} shaped {list(y.shape)}")
        y = y[: len(x)]
        if len(y) != len(x):
            raise McucError(f"labels file {path_line(labels)} holds {len(y)} labels for "
                            f"{len(x)} inputs")
        y = y.astype(np.int64)
    return np.ascontiguousarray(x), y, f"{path_line(name)} [:{len(x)}]"


# --- the int8 reference ------------------------------------------------------------------

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
    from mcuc.quant.qparams import QParams

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
        recorded = {str(k): QParams(float(s), int(z)) for k, (s, z) in ref["qparams"].items()}
        disabled = tuple(str(d) for d in ref["disabled"])
        stream, optimize = bool(ref["stream_input"]), str(ref["optimize"])
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
                      optimize=optimize, qparams=qparams, quant=str(ref.get("quant", "auto")))
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


# --- the target ----------------------------------------------------------------------------

def pick_engine(b: Build, engine: str | None) -> str:
    """The engine that runs build `b`: 'host' for host builds, else an emulator of its
    board (default: the board's first), or the board itself (`serial:PORT`, mcuc.console)."""
    from mcuc.boards import load_board
    from mcuc.console import port_of

    board = load_board(b.board)
    if port_of(engine) is not None:
        if not board.is_mcu or board.semihosting:
            raise McucError(f"board {board.name} has no serial console to read (the serial "
                            "engine runs physical boards)")
        return engine
    if engine is not None and engine not in ENGINES:
        raise McucError(f"unknown engine {one_line(engine, 40)} (validate runs: "
                        f"{', '.join(ENGINES)}, serial:PORT)")
    if not board.is_mcu:
        if engine not in (None, "host"):
            raise McucError(f"a build for board {board.name} runs on the host, not in "
                            f"{engine}")
        return "host"
    engine = engine or board.default_engine
    if engine is None or engine == "host" or engine not in board.emulators:
        raise McucError(f"engine {engine or 'host'} does not run board {board.name} (it has: "
                        f"{', '.join(e for e in board.emulators if e in ENGINES) or 'none'})")
    return engine


def run_target(b: Build, xs_q: np.ndarray, engine: str, progress: bool = False
               ) -> tuple[np.ndarray, int]:
    """(int8 outputs [N, K], inputs per launch) of the build on int8 inputs [N, size]: the
    host program once per input; the firmware as many inputs per emulator launch as it
    takes (a semihosting file in chunks of SEMIHOST_CHUNK, or as many as its <name>_samples
    holds: the build's --samples; on a board, `serial:PORT`, one flash per chunk)."""
    from mcuc import console, firmware
    from mcuc.boards import load_board

    k = math.prod(b.output_shape)
    out: list[np.ndarray] = []
    chunk = 1
    with _bar(len(xs_q), f"target ({engine})", progress) as bar:
        if engine == "host":
            from mcuc.sim.host import run_host

            for x in xs_q:
                out.append(run_host(b.exe, x))
                bar.update(1)
        else:
            board = load_board(b.board)
            if board.semihosting:
                chunk = SEMIHOST_CHUNK
            else:
                _, size = firmware.symbol(b.elf, f"{b.name}_samples")
                chunk = max(1, size // xs_q.shape[1])
            for i in range(0, len(xs_q), chunk):
                rows = xs_q[i:i + chunk]
                port = console.port_of(engine)
                if port is not None:
                    got = console.run_board(b, rows, port)["outputs"]
                elif engine == "qemu":
                    from mcuc.sim.qemu import run_qemu_full

                    got = run_qemu_full(b.elf, rows,
                                        machine=board.qemu.get("machine", "mps2-an500")).outputs
                else:
                    if not firmware.unicorn_available():
                        raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not "
                                        "available")
                    got = firmware.run_unicorn(b.elf, rows, semihosted=board.semihosting,
                                               chip=board.chip)["outputs"]
                if len(got) != len(rows):
                    raise McucError(f"the firmware printed {len(got)} outputs for "
                                    f"{len(rows)} inputs")
                out.extend(got)
                bar.update(len(rows))
    for y in out:
        if y.size != k:
            raise McucError(f"the build printed {y.size} output values; its mcuc.json says "
                            f"{k}; rebuild with `mcuc build`")
    return np.stack([y.reshape(-1) for y in out]).astype(np.int8), chunk


# --- the float model -----------------------------------------------------------------------

def run_float(model: Path, xs: np.ndarray, input_shape: tuple[int, ...],
              progress: bool = False) -> np.ndarray:
    """Float outputs [N, K] of the ONNX model under onnxruntime (ImportError without it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
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


# --- figures -------------------------------------------------------------------------------

def errors(a: np.ndarray, base: np.ndarray) -> Errors:
    """a against base (see the module doc)."""
    a, base = np.asarray(a, np.float64).reshape(-1), np.asarray(base, np.float64).reshape(-1)
    d = a - base
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(base))
    cos = float(a @ base / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    rel = float(np.linalg.norm(d) / nb) if nb > 0 else (0.0 if not d.any() else math.inf)
    return Errors(float(np.sqrt(np.mean(d * d))), cos, rel, float(np.abs(d).max(initial=0.0)))


def _top1(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores.reshape(len(scores), -1), axis=1)


def validate(out_dir: Path | str, data: str = "fashion-mnist:1000",
             labels: str | Path | None = None, engine: str | None = None,
             limit: int | None = None, progress: bool = False,
             per_layer: bool = False, model: str | Path | None = None) -> Validation:
    """Validate build `out_dir` on `data` (see load_data) through the float model, the int8
    reference and the target on `engine` (pick_engine); see the module doc for the figures.
    `per_layer` adds each reference step against the float interpreter (per_layer_errors).
    `model`: where the build's model file is now, if it moved (rebuild_reference).
    One McucError line for any bad build, data, engine or failed run."""
    t_all = time.perf_counter()
    b = load_build(out_dir)
    eng = pick_engine(b, engine)
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
        flt = run_float(model_path, xs_f, b.input_shape, progress)
        secs["float"] = time.perf_counter() - t0
        if flt.shape[1] != ref_q.shape[1]:
            f_row.note = f"the ONNX model gives {flt.shape[1]} outputs, the build {ref_q.shape[1]}"
            flt = None

    ref_s, tgt_s = b.output_qp.dequantize(ref_q), b.output_qp.dequantize(tgt_q)
    ref_top = _top1(ref_s)
    r_row = Row("int8 reference")
    t_row = Row(f"target ({'board' if eng.startswith('serial:') else eng})")
    for row, s in ((f_row, flt), (r_row, ref_s), (t_row, tgt_s)):
        if s is None:
            continue
        if y is not None:
            row.accuracy = float(np.mean(_top1(s) == y))
        row.agreement = float(np.mean(_top1(s) == ref_top))
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


# --- per layer -----------------------------------------------------------------------------

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
            q = qg.qparams[t].dequantize(trace[st.name][: f.size])
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


# --- the table -----------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _launch(engine: str) -> str:
    return "run" if engine == "host" else "flash" if engine.startswith("serial:") else "launch"


def format_validation(v: Validation) -> str:
    """The table `mcuc validate` prints."""
    lines = [f"validate {path_line(v.build)} (board {v.board}, engine {v.engine}) on "
             f"{v.data}: {v.images} inputs{'' if v.labelled else ', no labels'}", ""]
    head = (f"{'':<22}{'accuracy':>9}{'agree':>9}  {'rmse':>9}{'cosine':>9}{'rel L2':>9}"
            f"  {'rmse':>9}{'cosine':>9}{'rel L2':>9}")
    lines += [f"{'':<22}{'':>9}{'w/ ref':>9}  {'--- vs float ---':^27}  {'--- vs ref ---':^27}",
              head]
    for r in (v.float_model, v.reference, v.target):
        if r.note:
            lines.append(f"{r.name:<22}{r.note}")
            continue
        vf, vr = r.vs_float, r.vs_reference
        lines.append(
            f"{r.name:<22}{_pct(r.accuracy):>9}{_pct(r.agreement):>9}  "
            f"{_num(vf and vf.rmse, '.5f'):>9}{_num(vf and vf.cosine, '.6f'):>9}"
            f"{_num(vf and vf.rel_l2, '.5f'):>9}  {_num(vr and vr.rmse, '.5f'):>9}"
            f"{_num(vr and vr.cosine, '.6f'):>9}{_num(vr and vr.rel_l2, '.5f'):>9}")
    lines.append("")
    if v.bit_exact:
        lines.append(f"target == reference bit for bit on all {v.images} inputs")
    else:
        lines.append(f"target != reference on {v.mismatches} of {v.images} inputs "
                     f"(first: input {v.first_mismatch})")
    s = v.seconds
    lines.append(f"time: target {s.get('target', 0):.2f} s "
                 f"({1000 * s.get('target_per_image', 0):.1f} ms/input, {v.per_launch} per "
                 f"{_launch(v.engine)}), reference "
                 f"{s.get('reference', 0):.2f} s, total {s.get('total', 0):.1f} s")
    for w in v.warnings:
        lines.append(f"warning: {w}")
    if v.per_layer is not None:
        lines += ["", f"per layer: int8 reference vs float interpreter on the first "
                      f"{min(v.images, PER_LAYER_IMAGES)} inputs (errors accumulate along "
                      "the graph)",
                  f"{'step':<44}{'op':<11}{'cosine':>10}{'max err':>10}{'in LSB':>8}"]
        for lr in v.per_layer:
            lines.append(f"{cut(lr.step, 43):<44}{cut(lr.op, 10):<11}"
                         f"{lr.cosine:>10.6f}{lr.max_abs:>10.4f}{lr.max_lsb:>8.1f}")
    return "\n".join(lines)
