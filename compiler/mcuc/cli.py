"""Command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcuc import McucError, __version__
from mcuc.text import MAX_ERROR_CHARS, one_line


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
    from mcuc.pipeline import build
    from mcuc.report import format_report

    report = build(a.model, a.board, a.calib, a.out, a.input_shape, a.disable,
                   progress=sys.stderr.isatty(), samples=a.samples,
                   stream_input=a.stream_input, calib_method=a.calib_method,
                   calib_percentile=a.calib_percentile, calib_images=a.calib_images,
                   kernels=a.kernels, report_full=a.report == "full", optimize=a.optimize)
    print(format_report(report))
    extra = ", memory.png" if a.report == "full" else ""
    print(f"\nwrote {a.out}/ (model.c, model.h, weights.c, report.json{extra})")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from mcuc.runner import load_input, run_built

    res = run_built(a.out, load_input(a.input), a.engine, allow_nonfinite=a.allow_nonfinite)
    if a.json:
        print(json.dumps({"output": res.output.tolist(), "argmax": res.argmax,
                          "scores": [round(float(s), 6) for s in res.scores],
                          "engine": res.engine, "instructions": res.instructions}))
    else:
        print("output (int8): " + " ".join(str(int(v)) for v in res.output))
        print("scores       : " + " ".join(f"{s:.4f}" for s in res.scores))
        print(f"argmax       : {res.argmax}")
        if res.instructions is not None:
            print(f"instructions : {res.instructions:,} ({res.engine})")
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from mcuc.validate import format_validation, validate

    v = validate(a.out, a.data, a.labels, a.engine, progress=sys.stderr.isatty(),
                 per_layer=a.per_layer, model=a.model)
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
    from mcuc.nas.search import SearchOptions
    from mcuc.nas.space import SAMPLING
    from mcuc.nas.units import size_arg

    o = SearchOptions()
    s.add_argument("--board", default=o.board, help="board whose overheads and limits apply")
    s.add_argument("--sram", type=size_arg, help="SRAM budget, e.g. 64K (default: the board's)")
    s.add_argument("--flash", type=size_arg, help="flash budget, e.g. 256K (default: the board's)")
    s.add_argument("--dataset", default=o.dataset, help="fashion-mnist or an image-folder path")
    s.add_argument("--out", required=True, help="output folder (best.onnx, search.json, ...)")
    s.add_argument("--space", help="search-space TOML (default: the bundled one)")
    s.add_argument("--limit", type=int, help="use only the first N training images")
    s.add_argument("--val", type=int, help="training images held out to score candidates "
                                           "(default: 1/12 of them)")
    s.add_argument("--epochs", type=int, default=o.epochs, help="supernet training epochs")
    s.add_argument("--batch-size", type=int, default=o.batch_size)
    s.add_argument("--lr", type=float, default=o.lr)
    s.add_argument("--pool", type=int, default=o.pool,
                   help="budget-feasible subnets the supernet trains")
    s.add_argument("--population", type=int, default=o.population)
    s.add_argument("--generations", type=int, default=o.generations)
    s.add_argument("--parents", type=int, default=o.parents)
    s.add_argument("--mutation-prob", type=float, default=o.mutation_prob)
    s.add_argument("--sampling", choices=SAMPLING, default=o.sampling,
                   help="supernet subnet draw: weighted by MACs (default) or uniform")
    s.add_argument("--augment", action="store_true",
                   help="random crops and flips while training (pays off only in long runs)")
    s.add_argument("--finetune-epochs", type=int, default=o.finetune_epochs,
                   help="fine-tune the chosen subnet alone for this many epochs")
    s.add_argument("--finetune-lr", type=float, default=o.finetune_lr)
    s.add_argument("--finetune-init", choices=["inherited", "scratch"], default=o.finetune_init,
                   help="fine-tune from the supernet's weights, or retrain the picked "
                        "architecture from scratch (then raise --finetune-lr, e.g. 2e-3)")
    s.add_argument("--finalists", type=int, default=o.finalists,
                   help="fine-tune the best candidate of each of this many patch-size "
                        "families and keep the best on held-out images (default 1)")
    s.add_argument("--proxy-epochs", type=int, default=o.proxy_epochs,
                   help="train the best candidate of each of the --proxy-shapes best shapes "
                        "(resolution, patch, dim, depth) from scratch this many epochs; the "
                        "best on held-out images is the finalist (0: off)")
    s.add_argument("--proxy-shapes", type=int, default=o.proxy_shapes)
    s.add_argument("--proxy-plain", action="store_true",
                   help="the proxy also trains each shape's plain variant (one MLP ratio "
                        "and rank in every block, the most MACs that fit)")
    s.add_argument("--distill-epochs", type=int, default=o.distill_epochs,
                   help="train a small CNN teacher this many epochs and distil its labels "
                        "into the fine-tune (0: no teacher)")
    s.add_argument("--distill-supernet", action="store_true",
                   help="distil the teacher's labels into the supernet too")
    s.add_argument("--seed", type=int, default=o.seed)
    s.add_argument("--device", choices=["cpu", "cuda"], default=o.device)
    s.add_argument("--supernet", help="reuse a trained supernet.pt instead of training one")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted supernet training from OUT/supernet.pt")
    s.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_search(a: argparse.Namespace) -> int:
    from mcuc.nas.search import SearchOptions, run_search
    from mcuc.optional import require

    require("torch", "search", "mcuc search (it trains the candidates)")

    opts = SearchOptions(
        board=a.board, sram=a.sram, flash=a.flash, dataset=a.dataset, limit=a.limit, val=a.val,
        space=a.space, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, pool=a.pool,
        population=a.population, generations=a.generations, parents=a.parents,
        mutation_prob=a.mutation_prob, finetune_epochs=a.finetune_epochs,
        finetune_lr=a.finetune_lr, distill_epochs=a.distill_epochs, finalists=a.finalists,
        proxy_epochs=a.proxy_epochs, proxy_shapes=a.proxy_shapes, proxy_plain=a.proxy_plain,
        distill_supernet=a.distill_supernet, finetune_init=a.finetune_init,
        sampling=a.sampling, augment=a.augment, seed=a.seed,
        device=a.device, supernet=a.supernet, resume=a.resume, progress=not a.quiet,
        extra={"command": "mcuc " + " ".join(a.argv)})
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
    b.set_defaults(fn=cmd_build)

    r = sub.add_parser("run", help="run a built model on one input")
    r.add_argument("out", help="build directory made by `mcuc build`")
    r.add_argument("--input", required=True, help=".npy input (float, or int8 quantized)")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--allow-nonfinite", action="store_true",
                   help="run an input holding NaN/inf anyway (NaN as 0, inf saturated)")
    r.add_argument("--engine", choices=["qemu", "unicorn", "renode"],
                   help="emulator for MCU builds (default: the board's first)")
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
    v.add_argument("--engine", choices=["host", "unicorn", "qemu"],
                   help="what runs the build (default: host builds on the host, MCU builds "
                        "in the board's first emulator)")
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
