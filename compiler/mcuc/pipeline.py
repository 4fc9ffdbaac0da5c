"""The compiler as a library: model in, planned schedule and C sources out.

frontend -> calibrate -> lower (schedule) -> plan (+ validate) -> render -> build.
Every CLI command is a thin wrapper over these functions.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mcuc import McucError, memory
from mcuc.ablation import ablation
from mcuc.boards import Board, load_board
from mcuc.builddir import check_out, staging
from mcuc.buildmeta import write_meta
from mcuc.codegen.modelname import check_name, default_name
from mcuc.codegen.render import render
from mcuc.ir.graph import Graph
from mcuc.quant.calibrate import (
    DEFAULT_IMAGES,
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    QGraph,
    calibrate,
    check_method,
    describe,
)
from mcuc.quant.given import apply_given, check_mode, resolve_mode
from mcuc.quant.qparams import QParams
from mcuc.schedule.lower import lower
from mcuc.schedule.schedule import Schedule
from mcuc.schedule.widen import check_optimize, for_board
from mcuc.text import one_line

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"


@dataclass
class Compiled:
    graph: Graph
    qgraph: QGraph
    schedule: Schedule
    plan: memory.Plan
    timings: dict[str, float] = field(default_factory=dict)
    quant: dict = field(default_factory=lambda: {"mode": "calibrate", "warnings": []})


def load_graph(model=None, input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import and canonicalize a model: ONNX path, torch module, or None for the default."""
    from mcuc.frontend import load_model

    if model is None:
        model = DEFAULT_MODEL
        if not model.is_file():
            raise McucError(f"the bundled default model is missing ({model})")
    if isinstance(model, str | Path) and not Path(model).is_file():
        raise McucError(f"model file not found: {model}")
    return load_model(model, input_shape)


def calibration_samples(graph: Graph, calib, count: int = DEFAULT_IMAGES) -> np.ndarray:
    """Calibration inputs from an array, a .npy path or a dataset name (`count` seeded
    training images; arrays and .npy files are used whole)."""
    from mcuc.limits import MAX_CALIB_IMAGES, check_count

    check_count(count, "calibration images (--calib-images)", MAX_CALIB_IMAGES)
    shape = tuple(graph.tensors[graph.inputs[0]].shape)
    if isinstance(calib, np.ndarray):
        arr = calib.astype(np.float32)
    else:
        from mcuc.datasets import load_calibration

        arr = load_calibration(str(calib), shape, count=count)
    if tuple(arr.shape[1:]) == shape[1:]:
        return arr
    if tuple(arr.shape[1:]) == shape:
        return arr.reshape((arr.shape[0],) + shape[1:])
    raise McucError(f"calibration data has shape {arr.shape}; model input is {shape}")


def compile_graph(graph: Graph, samples: np.ndarray, disabled: tuple[str, ...] = (),
                  strategy: str = "best", progress: bool = False,
                  stream_input: bool = False, calib_method: str = DEFAULT_METHOD,
                  calib_percentile: float = DEFAULT_PERCENTILE,
                  optimize: str = "size", qparams: dict[str, QParams] | None = None,
                  quant: str = "auto", dsp: bool = True,
                  int16: tuple[str, ...] | str = ()) -> Compiled:
    """Calibrate (quant/calibrate.py: `calib_method`, `calib_percentile`), lower and plan.
    Given `qparams` (every activation's, as a build records them for `mcuc validate`),
    calibration is skipped and `samples` unused.
    `stream_input` makes the image arrive band by band through a callback
    (schedule/stream.py), so the arena never holds all of it. `optimize` "speed" stores
    the linear weights as int16 (schedule/widen.py): faster, twice their flash. `dsp`
    (the board's Board.dsp) widens the patch embedding's weights and gives LayerNorm its
    table, for the ARMv7E-M variants.
    `quant` "given" uses a QDQ model's own scales where it states them (quant/given.py;
    the rest is calibrated), "calibrate" ignores them, "auto" picks given for QDQ models.
    `int16` names tensors to keep in int16, or "auto" (quant/wide.py, quant/sensitivity.py);
    with `qparams` the recorded int16 tensors are kept and `int16` is not used."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    mode = resolve_mode(quant, graph)
    if qparams is not None:
        qg = QGraph(graph, dict(qparams))
    else:
        qg = calibrate(graph, samples, progress=progress, method=calib_method,
                       percentile=calib_percentile)
    info: dict = {"mode": mode, "warnings": []}
    if mode == "calibrate" and graph.given is not None:
        info["warnings"].append("quant: the model's QuantizeLinear/DequantizeLinear scales "
                                "were ignored (--quant calibrate); a Relu its quantizer "
                                "folded into a scale's range is then not applied")
    if mode == "given":
        qg, info = apply_given(qg)
    if int16 and qparams is None:
        qg, info["int16"] = _apply_int16(qg, int16, samples, disabled, strategy)
    t["calibrate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    schedule = lower(qg, disabled)
    if stream_input:
        from mcuc.schedule.stream import stream_input as streamed

        schedule = streamed(schedule)
    schedule = for_board(schedule, dsp, optimize)
    t["schedule_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bufs = schedule.liveness()
    plan = memory.plan(bufs, strategy)
    memory.validate(bufs, plan)
    t["plan_s"] = time.perf_counter() - t0
    return Compiled(graph, qg, schedule, plan, t, info)


def _apply_int16(qg: QGraph, int16: tuple[str, ...] | str, samples: np.ndarray,
                 disabled: tuple[str, ...], strategy: str) -> tuple[QGraph, dict]:
    """qg with the --int16 tensors widened, and what was chosen (and, for auto, why)."""
    from mcuc.quant.sensitivity import choose_auto
    from mcuc.quant.wide import check_names, widen

    def arena_of(q: QGraph) -> int:
        return memory.plan(lower(q, disabled).liveness(), strategy).arena_bytes

    if int16 == "auto":
        names, record = choose_auto(qg, samples, arena_of)
    else:
        names, record = list(int16), {}
        check_names(qg.graph, tuple(names))
    return widen(qg, names), {"mode": "auto" if int16 == "auto" else "names",
                              "tensors": names, **record}


def layer_table(c: Compiled) -> list[dict]:
    """Per step: kernel, MACs and the activation bytes live while it runs."""
    timeline = memory.usage_timeline(c.schedule.liveness(), c.schedule.n_times)
    return [
        {"name": st.name, "op": st.op, "kernel": st.kernel, "macs": st.macs,
         "bytes_live": int(timeline[k + 1]),
         "output_bytes": c.schedule.buffers[st.output].size}
        for k, st in enumerate(c.schedule.steps)
    ]


def make_report(c: Compiled, board: Board, model_desc: str) -> dict:
    s = c.schedule
    return {
        "model": model_desc,
        "board": board.name,
        "arena_bytes": c.plan.arena_bytes,
        "arena_lower_bound_bytes": c.plan.lower_bound_bytes,
        "planner": c.plan.planner,
        "weights_bytes": s.weights_bytes(),
        "macs": s.macs(),
        "steps": len(s.steps),
        "input": {"shape": list(s.input_shape), **s.input_qp.to_dict()},
        "output": {"shape": list(s.output_shape), **s.output_qp.to_dict()},
        "layers": layer_table(c),
        "timings": {k: round(v, 4) for k, v in c.timings.items()},
    }


def build(model=None, board: str = "host", calib="fashion-mnist", out_dir: Path | str = "build",
          input_shape: tuple[int, ...] | None = None, disabled: tuple[str, ...] = (),
          progress: bool = False, compile_c: bool = True, samples: int = 4,
          emulate: bool = True, stream_input: bool = False,
          calib_method: str = DEFAULT_METHOD, calib_percentile: float = DEFAULT_PERCENTILE,
          calib_images: int = DEFAULT_IMAGES, kernels: str = "optimized",
          report_full: bool = False, optimize: str = "size", profile: bool = False,
          quant: str = "auto", name: str | None = None,
          weights_region: str = "flash", int16: tuple[str, ...] | str = ()) -> dict:
    """Compile a model for a board into out_dir; returns the report (also report.json).

    For an MCU board the fit check runs before any C is written, then the firmware is
    cross-built and, where the board has an emulator here, run once to measure stack
    (and instructions) for the report. `samples` calibration images are baked into flash
    on boards without a semihosting input file. `stream_input` adds
    mcuc_run_streaming (the image supplied band by band by a callback) and plans for it.
    Calibration takes `calib_images` training images of a named dataset (a .npy is used
    whole) and ranges by `calib_method` / `calib_percentile` (quant/calibrate.py).
    `kernels` "portable" builds the C reference kernels even where the board's core has
    optimized variants (to measure them, or to rule them out). `report_full` adds the
    technique ablation (one more plan per technique) and memory.png, which a build that
    only wants firmware does not pay for. `optimize` "speed" trades flash for speed
    (compile_graph). `profile` makes the firmware print each step's DWT cycles
    (MCUC_STEP lines; `mcuc run --profile` on a board reads them). `quant`
    given|calibrate|auto: a QDQ model's own scales or mcuc's calibration (compile_graph).
    `name` prefixes every file, symbol, macro and section of the generated model
    (codegen/modelname.py; default: from the model file's stem, `vit` for the bundled
    model). `weights_region` places the weights section on an MCU board: "flash" or a
    region the board declares (Board.weight_regions, e.g. "qspi"). `int16`: tensors to
    keep in int16, or "auto" (compile_graph).
    """
    t_start = time.perf_counter()
    check_method(calib_method, calib_percentile)
    check_optimize(optimize)
    check_mode(quant)
    b = load_board(board).with_kernels(kernels)
    ident = check_name(name) if name is not None else default_name(model)
    _check_region(b, weights_region)
    if profile:
        if not b.is_mcu:
            raise McucError("--profile is for MCU boards (their DWT cycle counter); a host "
                            "build has none")
        from mcuc.target.firmware import check_profile

        check_profile(b)
    out = check_out(out_dir)
    graph = load_graph(model, input_shape)
    calib_x = calibration_samples(graph, calib, calib_images)
    c = compile_graph(graph, calib_x, disabled, progress=progress, stream_input=stream_input,
                      calib_method=calib_method, calib_percentile=calib_percentile,
                      optimize=optimize, quant=quant, dsp=b.dsp, int16=int16)
    name = graph.name or "model"
    fit = None
    if b.is_mcu:
        from mcuc.target.fit import check_fit

        fit = estimate_fit(c, b, samples, profile, weights_region)
        check_fit(b, fit)
    with staging(out) as tmp:   # replaces out only once everything below succeeded
        t0 = time.perf_counter()
        render(c.schedule, c.plan, tmp, model_name=name,
               makefile=None if b.is_mcu else "Makefile.host.j2", name=ident)
        fw: dict = {}
        if b.is_mcu:
            from mcuc.target.firmware import render_mcu

            samples_q = _quantized_samples(c, calib_x, samples)
            render_mcu(b, tmp, name, samples_q, profile, ident, weights_region)
        c.timings["codegen_s"] = time.perf_counter() - t0
        if compile_c and b.core == "host":
            from mcuc.sim.host import build_host

            t0 = time.perf_counter()
            build_host(tmp)
            c.timings["c_compile_s"] = time.perf_counter() - t0
        elif compile_c:
            from mcuc.target.firmware import build_and_measure

            t0 = time.perf_counter()
            fw = build_and_measure(b, tmp, fit, samples_q, emulate=emulate)
            c.timings["c_compile_s"] = time.perf_counter() - t0
        c.timings["total_s"] = time.perf_counter() - t_start
        desc = str(model) if model is not None else f"default ({DEFAULT_MODEL.name})"
        report = make_report(c, b, desc)
        report["name"] = ident
        if b.is_mcu:
            report["weights_region"] = weights_region
        report["disabled"] = list(c.schedule.disabled)
        report["kernels"] = kernels
        report["optimize"] = optimize
        report["calibration"] = describe(calib_method, len(calib_x), calib_percentile)
        report["quant"] = c.quant
        if c.schedule.stream:
            report["stream_input"] = True
        if profile:
            report["profile"] = True
        if report_full:
            report.update(ablation(c.qgraph, c.plan.arena_bytes))
            _plot_memory(c, tmp / "memory.png", desc)
        if b.is_mcu:
            report["estimate"] = {"sram_bytes": fit.sram, "flash_bytes": fit.flash,
                                  **asdict(fit)}
            _add_firmware(report, fw)
            _add_prediction(report, c, b, optimize)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        ref = _reference_meta(model, input_shape, c, stream_input, optimize, b.dsp)
        _save_runtime_meta(c, tmp, b.name, ident, b.is_mcu, ref, profile)
    return report


def _plot_memory(c: Compiled, path: Path, desc: str) -> None:
    from mcuc.memory.plot import plot_plan
    from mcuc.optional import require

    require("matplotlib", "plot", "memory.png (--report full)")

    plot_plan(c.schedule.liveness(), c.plan, path,
              title=f"{desc}: arena {c.plan.arena_bytes:,} B "
                    f"(lower bound {c.plan.lower_bound_bytes:,} B)")


def estimate_fit(c: Compiled, b: Board, samples: int, profile: bool = False,
                 weights_region: str = "flash"):
    """The build's pre-link fit estimate; the NAS cost model predicts exactly this (without
    --profile)."""
    from mcuc.target.fit import estimate

    s = c.schedule
    return estimate(b, c.plan.arena_bytes, s.weights_bytes(), len(s.steps),
                             int(np.prod(s.input_shape)), int(np.prod(s.output_shape)),
                             samples, profile, weights_region,
                             a16=any(q.wide for q in c.qgraph.qparams.values()))


def _check_region(b: Board, weights_region: str) -> None:
    regions = b.weight_regions() if b.is_mcu else ("flash",)
    if weights_region not in regions:
        raise McucError(f"--weights-region must be one of {', '.join(regions)} on board "
                        f"{b.name}, not {one_line(repr(weights_region), 40)}")


def _quantized_samples(c: Compiled, calib_x: np.ndarray, samples: int) -> np.ndarray:
    """The first `samples` calibration images as int8 model inputs (rows)."""
    from mcuc.schedule.execute import quantize_input

    if samples < 1:
        raise McucError(f"--samples must be at least 1, not {samples}")
    xs = [calib_x[i % len(calib_x)] for i in range(samples)]
    return np.stack([quantize_input(c.schedule, x[None]).reshape(-1) for x in xs])


def _add_firmware(report: dict, fw: dict) -> None:
    """Firmware keys: sizes from the ELF, stack/instructions from an emulator run. An
    emulator counts instructions, never cycles: no key here says `cycles` (a board's DWT
    cycles come from `mcuc run --profile` over its serial console)."""
    for key in ("flash_bytes", "ram_bytes", "stack_bytes", "instructions"):
        report[key] = fw.get(key)
    report["firmware"] = {k: v for k, v in fw.items() if k != "instructions_per_step"}
    per_step = fw.get("instructions_per_step") or {}
    for i, row in enumerate(report["layers"]):
        row["instructions"] = per_step.get(i)


def _add_prediction(report: dict, c: Compiled, b: Board, optimize: str) -> None:
    """The latency model's instructions (mcuc.latency) beside the measured ones, where
    the board's core and kernel variant have a fitted table."""
    from mcuc import latency

    if not latency.has_table(b, optimize):
        return
    p = latency.predict(c.schedule, b, optimize)
    report["predicted_instructions"] = p.instructions
    report["latency_table"] = latency.table_key(b, optimize)
    for row, n in zip(report["layers"], p.per_step, strict=True):
        row["predicted_instructions"] = n


def tensor_key(name: str | bytes) -> str:
    """A tensor's name as mcuc.json records it: a digest, because model text is untrusted
    and never written raw (names may be any bytes, even not UTF-8)."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:24]


def _reference_meta(model, input_shape: tuple[int, ...] | None, c: Compiled,
                    stream_input: bool, optimize: str, dsp: bool) -> dict | None:
    """What `mcuc validate` needs to rebuild the int8 reference without calibrating again:
    the model file (None: the bundled default) and its digest, the options that shape the
    schedule (`dsp`: the ARMv7E-M variants' prepared constants), and every activation's
    quantization, keyed by tensor_key. None for a model
    given as an object. (The model's name is read again from the model.)"""
    from mcuc.buildmeta import sha256

    if model is not None and not isinstance(model, str | Path):
        return None
    path = DEFAULT_MODEL if model is None else Path(model).resolve()
    return {"model": None if model is None else str(path), "model_sha256": sha256(path),
            "input_shape": list(input_shape) if input_shape else None,
            "disabled": list(c.schedule.disabled), "stream_input": bool(stream_input),
            "optimize": optimize, "dsp": dsp, "quant": c.quant["mode"],
            "qparams": {tensor_key(t): [q.scale, q.zero_point] + ([16] if q.wide else [])
                        for t, q in c.qgraph.qparams.items()}}


def _save_runtime_meta(c: Compiled, out: Path, board: str, name: str, is_mcu: bool,
                       reference: dict | None = None, profile: bool = False) -> None:
    """What `mcuc run` needs later: the model's name (its files), shapes and quantization
    of input and output; and `reference` (see _reference_meta) for `mcuc validate`;
    `profile`: the firmware prints MCUC_STEP lines."""
    s = c.schedule
    meta = {"board": board, "name": name, "input_shape": list(s.input_shape),
            "input": s.input_qp.to_dict(), "output_shape": list(s.output_shape),
            "output": s.output_qp.to_dict(), "exe": "model"}
    if reference is not None:
        meta["reference"] = reference
    if profile:
        meta["profile"] = True
    if is_mcu:
        from mcuc.sim.renode import SCRIPT_STEM

        meta.update(exe=None, elf="firmware.elf", renode=f"renode/{SCRIPT_STEM}")
    write_meta(out, meta)   # last: it records digests of what was built
