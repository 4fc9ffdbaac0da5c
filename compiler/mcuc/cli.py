"""Command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mcuc import McucError, __version__
from mcuc.text import MAX_ERROR_CHARS, one_line, path_line

if TYPE_CHECKING:
    from mcuc.nas.search import SearchOptions


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; use e.g. 1,1,28,28") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}")
    return dims


def _disabled(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_build(a: argparse.Namespace) -> int:
    from mcuc import api
    from mcuc.report import format_report

    report = api.build(a.model, board=a.board, out=a.out, calib=a.calib,
                       calib_method=a.calib_method, calib_percentile=a.calib_percentile,
                       calib_images=a.calib_images, input_shape=a.input_shape,
                       disable=a.disable, samples=a.samples, report=a.report,
                       stream_input=a.stream_input, kernels=a.kernels, optimize=a.optimize,
                       name=a.name, weights_region=a.weights_region, profile=a.profile,
                       quant=a.quant, int16=a.int16, lib=a.lib,
                       progress=sys.stderr.isatty())
    for line in report["quant"]["warnings"]:
        print(f"mcuc: warning: {line}", file=sys.stderr)
    print(format_report(report))
    extra = ", memory.png" if a.report == "full" else ""
    n = report["name"]
    print(f"\nwrote {path_line(a.out)}/ ({n}.h, {n}.c, {n}_weights.c, report.json{extra})")
    if a.lib:
        print(f"wrote the library folder {path_line(report['lib'])}/")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from mcuc import api

    dest = api.export(a.build, a.out)
    print(f"wrote the library folder {path_line(dest)}/ (CMake, PlatformIO, Zephyr; "
          "README.md has the STM32CubeIDE steps)")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from mcuc import api
    from mcuc.profile import format_profile

    res = api.run(a.out, a.input, engine=a.engine, allow_nonfinite=a.allow_nonfinite,
                  profile=a.profile)
    if a.json:
        d = {"output": res.output.tolist(), "argmax": res.argmax,
             "scores": [round(float(s), 6) for s in res.scores],
             "engine": res.engine, "instructions": res.instructions}
        if res.cycles is not None:
            d["cycles"] = res.cycles
        if res.profile is not None:
            d["profile"] = res.profile.to_dict()
        print(json.dumps(d))
        return 0
    print("output (int8): " + " ".join(str(int(v)) for v in res.output))
    print("scores       : " + " ".join(f"{s:.4f}" for s in res.scores))
    print(f"argmax       : {res.argmax}")
    if res.instructions is not None:
        print(f"instructions : {res.instructions:,} ({res.engine})")
    if res.cycles is not None:
        print(f"cycles       : {res.cycles:,} ({res.engine}, DWT)")
    if res.profile is not None:
        print("\n" + format_profile(res.profile))
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from mcuc import api
    from mcuc.validation import format_validation

    v = api.validate(a.out, data=a.data, labels=a.labels, engine=a.engine,
                     per_layer=a.per_layer, model=a.model, progress=sys.stderr.isatty())
    print(json.dumps(v.to_dict(), indent=2) if a.json else format_validation(v))
    return 0


def cmd_flash(a: argparse.Namespace) -> int:
    from mcuc.flash import flash

    line = flash(a.out, dry_run=a.dry_run)
    print(line if a.dry_run else f"flashed: {line}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from mcuc.demo import demo

    return demo(Path(a.out), a.board, a.images)


def cmd_boards(a: argparse.Namespace) -> int:
    from mcuc.boards import list_boards, load_board

    for name in list_boards():
        b = load_board(name)
        sram = f"{b.sram_bytes // 1024} KiB" if b.sram_bytes else "-"
        flash = f"{b.flash_bytes // 1024} KiB" if b.flash_bytes else "-"
        clock = f"{b.clock_hz / 1e6:.0f} MHz" if b.clock_hz else "-"
        print(f"{b.name:<12} {b.core:<12} SRAM {sram:>9}  flash {flash:>9}  {clock:>8}  "
              f"emulators: {', '.join(b.emulators) or '-'}   {b.description}")
    return 0


def add_search_args(s: argparse.ArgumentParser) -> None:
    from mcuc.latency import parse_count, parse_ms
    from mcuc.nas.recipe import add_recipe_args
    from mcuc.nas.search import SearchOptions
    from mcuc.nas.units import as_arg, size_arg

    o = SearchOptions()
    s.add_argument("--board", default=o.board, help="board whose overheads and limits apply")
    s.add_argument("--sram", type=size_arg, help="SRAM budget, e.g. 64K (default: the board's)")
    s.add_argument("--flash", type=size_arg, help="flash budget, e.g. 256K (default: the board's)")
    t = s.add_mutually_exclusive_group()
    t.add_argument("--latency", dest="latency_ms", type=as_arg(parse_ms), metavar="TIME",
                   help="time budget per inference, e.g. 100ms: the board's clock times it, "
                        "at 1 cycle per instruction (assumed), is an instruction budget")
    t.add_argument("--instructions", type=as_arg(parse_count), metavar="N",
                   help="time budget in predicted instructions per inference, e.g. 21.6M")
    s.add_argument("--dataset", default=o.dataset, help="fashion-mnist or an image-folder path")
    s.add_argument("--out", required=True, help="output folder (best.onnx, search.json, ...)")
    s.add_argument("--space", help="search-space TOML (default: the bundled one)")
    s.add_argument("--seed", type=int, default=o.seed)
    s.add_argument("--device", choices=["cpu", "cuda"], default=o.device)
    s.add_argument("--supernet", help="reuse a trained supernet.pt instead of training one")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted supernet training from OUT/supernet.pt")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    add_recipe_args(s)
    x = s.add_argument_group("more research options (advanced; not in the recipe)")
    x.add_argument("--val", type=int, help="training images held out to score candidates "
                                           "(default: 1/12 of them)")
    x.add_argument("--batch-size", type=int, default=o.batch_size)
    x.add_argument("--lr", type=float, default=o.lr,
                   help="learning rate of the supernet and the proxies")
    x.add_argument("--parents", type=int, default=o.parents)
    x.add_argument("--mutation-prob", type=float, default=o.mutation_prob)


def search_options(a: argparse.Namespace) -> SearchOptions:
    """SearchOptions from parsed `mcuc search` arguments: the recipe resolved (--budget,
    --recipe, explicit options) and every other option by its field name."""
    from dataclasses import asdict, fields

    from mcuc.nas.recipe import resolve
    from mcuc.nas.search import SearchOptions

    recipe = asdict(resolve(a))
    rest = {f.name: getattr(a, f.name) for f in fields(SearchOptions)
            if f.name not in recipe and hasattr(a, f.name)}
    return SearchOptions(**recipe, **rest, progress=not a.quiet,
                         extra={"command": "mcuc " + " ".join(getattr(a, "argv", [])),
                                "budget": a.budget})


def cmd_search(a: argparse.Namespace) -> int:
    from mcuc.nas.recipe import HOURS
    from mcuc.nas.search import run_search
    from mcuc.optional import require

    require("torch", "search", "mcuc search (it trains the candidates)")
    opts = search_options(a)
    if opts.progress:
        print(f"mcuc search: --budget {a.budget} (estimated {HOURS[a.budget]:g} h on a "
              "2-core CPU; options given explicitly override it)", flush=True)
    run_search(opts, a.out)
    return 0


def parser() -> argparse.ArgumentParser:
    from mcuc.boards import KERNELS
    from mcuc.quant.calibrate import DEFAULT_IMAGES, DEFAULT_METHOD, DEFAULT_PERCENTILE
    from mcuc.schedule.widen import OPTIMIZE

    p = argparse.ArgumentParser(prog="mcuc", description="Vision transformers on MCUs.")
    p.add_argument("--version", action="version", version=f"mcuc {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="compile a model into C (and a program) for a board")
    b.add_argument("--model", help="ONNX file (default: the bundled Fashion-MNIST ViT)")
    b.add_argument("--board", default="host", help="target board (see `mcuc boards`)")
    b.add_argument("--calib", default="fashion-mnist",
                   help="calibration inputs: a .npy file or 'fashion-mnist'")
    b.add_argument("--calib-method", default=DEFAULT_METHOD,
                   help="activation ranges: minmax, or percentile (clip rare outliers) "
                        f"(default {DEFAULT_METHOD})")
    b.add_argument("--calib-percentile", type=float, default=DEFAULT_PERCENTILE,
                   help="upper percentile for --calib-method percentile, in (50, 100] "
                        f"(default {DEFAULT_PERCENTILE})")
    b.add_argument("--calib-images", type=int, default=DEFAULT_IMAGES,
                   help="training images to calibrate on (named datasets; a .npy is used "
                        f"whole) (default {DEFAULT_IMAGES})")
    b.add_argument("--quant", default="auto",
                   help="given: a QDQ model's own scales and zero points (tensors it does "
                        "not quantize are calibrated); calibrate: mcuc's calibration; auto: "
                        "given when the model has QuantizeLinear/DequantizeLinear nodes "
                        "(default auto)")
    b.add_argument("--int16", default="",
                   help="mixed precision: comma-separated tensors to keep in int16 (Add and "
                        "Concat outputs read by Add, LayerNorm or Concat: the residual "
                        "stream), or auto: chosen by measured sensitivity on the "
                        "calibration images within 1.3x the int8 arena (default: none)")
    b.add_argument("--out", default="build/model", help="output directory")
    b.add_argument("--input-shape", type=_shape, help="override the input shape, e.g. 1,1,28,28")
    b.add_argument("--disable", type=_disabled, default=(),
                   help="comma-separated memory techniques to turn off (ablations)")
    b.add_argument("--samples", type=int, default=4,
                   help="calibration images baked into flash for the self-test (MCU boards)")
    b.add_argument("--report", choices=("summary", "full"), default="summary",
                   help="full: also the technique ablation (the arena with each memory "
                        "technique off: five more plans) and memory.png")
    b.add_argument("--stream-input", action="store_true",
                   help="read the image band by band through a callback "
                        "(mcuc_run_streaming); needs a patch-embedding first layer "
                        "(a Conv with kernel == stride, no padding)")
    b.add_argument("--kernels", choices=KERNELS, default=KERNELS[0],
                   help="optimized: the core's fast kernel variants where it has them "
                        "(ARMv7E-M DSP); portable: the C reference kernels everywhere")
    b.add_argument("--optimize", choices=OPTIMIZE, default=OPTIMIZE[0],
                   help="size: int8 weights; speed: the linear weights stored as int16 "
                        "(twice their flash, ~35%% fewer instructions in the linear "
                        "layers on DSP cores)")
    b.add_argument("--profile", action="store_true",
                   help="the firmware times every step with the DWT cycle counter and prints "
                        "it (MCUC_STEP lines; read by `mcuc run --profile` on a board)")
    b.add_argument("--name", help="the model's name: prefix of its files, functions, macros "
                   "and sections (<name>_run, <NAME>_ARENA_SIZE; a lower-case C identifier; "
                   "default: the model file's stem, `vit` for the bundled model)")
    b.add_argument("--weights-region", default="flash",
                   help="where an MCU board's linker script puts the weights section: flash "
                        "(default) or a region the board has (stm32f746: qspi)")
    b.add_argument("--lib", action="store_true",
                   help="also write <out>/lib: the model and its kernels as a library for "
                        "your own project (CMake, PlatformIO, Zephyr, STM32CubeIDE)")
    b.set_defaults(fn=cmd_build)

    e = sub.add_parser("export", help="a build's model as a library folder for your own "
                                      "firmware project (CMake, PlatformIO, Zephyr, CubeIDE)")
    e.add_argument("build", help="build directory made by `mcuc build`")
    e.add_argument("--out", help="the library folder to write (default: <build>/lib)")
    e.set_defaults(fn=cmd_export)

    r = sub.add_parser("run", help="run a built model on one input")
    r.add_argument("out", help="build directory made by `mcuc build`")
    r.add_argument("--input", required=True, help=".npy input (float, or int8 quantized)")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--allow-nonfinite", action="store_true",
                   help="run an input holding NaN/inf anyway (NaN as 0, inf saturated)")
    r.add_argument("--engine",
                   help="qemu, unicorn, renode, or serial:PORT (a board: the input is flashed "
                        "with openocd, the output read from its console) (default: the "
                        "board's first emulator)")
    r.add_argument("--profile", action="store_true",
                   help="each step's share of one inference: instructions in an emulator, "
                        "DWT cycles on a board (serial:PORT; needs `mcuc build --profile`)")
    r.set_defaults(fn=cmd_run)

    v = sub.add_parser("validate", help="a data set through the float model, the int8 "
                                        "reference and the build: accuracy, errors, bit-exactness")
    v.add_argument("out", help="build directory made by `mcuc build`")
    v.add_argument("--data", default="fashion-mnist:1000",
                   help="fashion-mnist[:N] (test split), an image folder, or an .npy of "
                        "inputs (float, or int8 quantized) (default fashion-mnist:1000)")
    v.add_argument("--labels", help=".npy of integer labels for an .npy --data")
    v.add_argument("--model", help="the build's model file, if it moved since the build "
                                   "(its sha256 must match)")
    v.add_argument("--engine",
                   help="host, unicorn, qemu, renode, or serial:PORT (a board: inputs flashed with "
                        "openocd, --samples per flash, outputs read from its console) "
                        "(default: host builds on the host, MCU builds in the board's first "
                        "emulator)")
    v.add_argument("--per-layer", action="store_true",
                   help="also each int8 reference step against the float interpreter "
                        "(on the first 20 inputs)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(fn=cmd_validate)

    f = sub.add_parser("flash", help="program a built firmware onto its board (openocd)")
    f.add_argument("out", help="build directory made by `mcuc build --board <mcu>`")
    f.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    f.set_defaults(fn=cmd_flash)

    d = sub.add_parser("demo", help="build the default model, run it on test images")
    d.add_argument("--out", default="build/demo")
    d.add_argument("--board", default="stm32f746", help="board to build for")
    d.add_argument("--images", type=int, default=10, help="test images to run")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("search", help="find the most accurate ViT that fits a board "
                                      "(one-shot supernet + evolutionary search)")
    add_search_args(s)
    s.set_defaults(fn=cmd_search)

    bl = sub.add_parser("boards", help="list the known boards")
    bl.set_defaults(fn=cmd_boards)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.fn(args)
    except McucError as e:
        print(f"mcuc: error: {one_line(str(e), MAX_ERROR_CHARS)}", file=sys.stderr)
        return 2
    except MemoryError:  # an allocation no limit (mcuc/limits.py) foresaw
        print("mcuc: error: out of memory (the input or model is too large)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mcuc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
