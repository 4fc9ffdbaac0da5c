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
from mcuc.text import one_line, path_line

if TYPE_CHECKING:
    from mcuc.pipeline import Compiled

ENGINES = ("host", "unicorn", "qemu")
# Inputs per emulator launch where the firmware reads them from a file (semihosting):
# one launch could take them all, but a chunk at a time drives the progress bar.
SEMIHOST_CHUNK = 50


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
