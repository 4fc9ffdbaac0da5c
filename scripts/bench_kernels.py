#!/usr/bin/env python3
"""`make bench-kernels`: instructions per MAC of each kernel of the default model, the
portable C against the optimized kernel variants (size and speed builds), written to
bench/kernels.md.

Why a script: the figure that issue 23 tracks is the firmware's own, so the default model
is built for each board three times (mcuc.pipeline.build, as `mcuc build`: --kernels
portable; the board's variants, -DMCUC_ARM_DSP; and the variants with --optimize speed),
and each build's report gives the exact instruction count of every step, counted by the
Unicorn engine while the firmware runs its self-test. These are retired instructions,
not cycles (a Cortex-M7 dual-issues some pairs and stalls on others). Issue 23's two
larger shapes (dim 128 with 65 tokens, dim 192 with 145 tokens) are built the same way
on the first board, as one-block ViTs with seeded random weights.

Usage: .venv/bin/python scripts/bench_kernels.py [--boards stm32f746,stm32f427]
       [--out bench/kernels.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hot_loops import HotLoop, hot_loops  # noqa: E402  (a sibling script module)
from mcuc.boards import load_board  # noqa: E402

# functions whose hot loop is a matrix product (per-MAC figures make sense)
MATRIX_FUNCS = ("mcuc_linear", "mcuc_lin_", "mcuc_att_dot_pair", "mcuc_att_pv", "pv_dsp",
                "block_fast", "mcuc_patch_embed", "mcuc_pe_wide16", "pe16_")
# build name -> the mcuc.pipeline.build options that make it
VARIANTS: dict[str, dict[str, str]] = {"portable": {"kernels": "portable"}, "optimized": {},
                                       "speed": {"optimize": "speed"}}
# issue 23's larger shapes: one block each (at dim 192 the --optimize speed weights take
# 0.9 MB of the F746's 1 MB of flash), patch 4, MLP ratio 4, head dim 64
LARGE = {"dim 128, 65 tokens": {"img_size": 32, "dim": 128, "heads": 2},
         "dim 192, 145 tokens": {"img_size": 48, "dim": 192, "heads": 3}}
# issue 23's goals in instructions per MAC, by kernel (the table's "goal" column)
GOALS = {"linear": 1.2, "tokenwise": 1.2, "attention": 1.6, "patch_embed": 1.5}
WHOLE_GOAL = 1.4
# the element-wise parts: the runtime functions that do them (name prefixes; static
# helpers included) and issue 23's goals in instructions per element
ELEMENTWISE = {"LayerNorm": ("ln_", "mcuc_layernorm", "mcuc_ln_"), "softmax": ("softmax",),
               "GELU (table)": ("mcuc_lut",), "residual add": ("mcuc_add", "add_")}
ELEMENT_GOALS = {"LayerNorm": 8, "softmax": 15}
INFERENCES = 4  # the firmware's self-test runs its `samples` (4 by default) once each


def build(board: str, variant: str, out: Path, shape: dict | None = None) -> dict:
    """The report of the default model (or a LARGE shape) built for `board` as `variant`."""
    from mcuc import McucError
    from mcuc.pipeline import build as mcuc_build

    model, calib, kw = None, "fashion-mnist", {}
    if shape is not None:
        import numpy as np
        import torch

        from mcuc.models.vit import ViTConfig, build_vit

        cfg = ViTConfig(patch=4, depth=1, mlp_ratio=4.0, **shape)
        torch.manual_seed(0)
        model = build_vit(cfg).eval()
        side = cfg.img_size
        calib = np.random.default_rng(0).standard_normal((8, 1, side, side)).astype(np.float32)
        kw = {"input_shape": (1, 1, side, side), "samples": 1}
    try:
        report = mcuc_build(model, board, calib, out, **VARIANTS[variant], **kw)
    except McucError as e:
        sys.exit(f"bench_kernels: {variant} build failed: {e}")
    if not report.get("instructions"):
        sys.exit(f"bench_kernels: the {variant} build reports no instruction count "
                 f"(board {board} has no instruction-counting emulator)")
    return report


def per_kernel(report: dict) -> dict[tuple[str, str, int], tuple[int, float]]:
    """(kernel, op, MACs) -> (layers, mean instructions per layer) over the steps with MACs."""
    groups: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for layer in report["layers"]:
        if layer.get("macs") and layer.get("instructions"):
            groups[(layer["kernel"], layer["op"], int(layer["macs"]))].append(
                int(layer["instructions"]))
    return {key: (len(v), sum(v) / len(v)) for key, v in groups.items()}


def loops_table(chip: str, runs: dict[str, tuple[int, list[HotLoop]]]) -> list[str]:
    """The llvm-mca section: each build's hottest loops with estimated cycles."""
    lines = [
        f"## Hot loops, {chip}: instructions and estimated cycles",
        "",
        "Per build, the functions that retire the most instructions over the firmware's",
        "run (4 inferences), and each one's hottest loop (scripts/hot_loops.py): its",
        "instructions per iteration (exact), and **estimated** cycles per iteration from",
        "llvm-mca's Cortex-M7 model (`llvm-mca -mtriple=thumbv7em-none-eabi",
        "-mcpu=cortex-m7`): a steady-state pipeline model without flash wait states, cache",
        "misses or mispredictions; IT instructions are dropped and their block modelled",
        "unconditionally. Per MAC only for the matrix loops (SMLAD = 2 MACs).",
        "",
        "| build | function | share of run | loop share of function | loop instr/iter | "
        "est. cycles/iter | instr/MAC | est. cycles/MAC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for build_name, (total, loops) in runs.items():
        for lp in loops:
            cyc = "n/a" if lp.cycles is None else f"{lp.cycles:.1f}"
            matrix = lp.macs and lp.function.startswith(MATRIX_FUNCS)
            per_mac = (f"{lp.instructions / lp.macs:.2f}", "n/a" if lp.cycles is None
                       else f"{lp.cycles / lp.macs:.2f}") if matrix else ("", "")
            lines.append(f"| {build_name} | `{lp.function}` | "
                         f"{100 * lp.function_total / total:.1f}% | {100 * lp.share:.0f}% | "
                         f"{lp.instructions} | {cyc} | {per_mac[0]} | {per_mac[1]} |")
    return lines + [""]


def element_counts() -> dict[str, int]:
    """Elements per inference of the default model's element-wise parts, from its
    schedule (the same compile as `mcuc build`: LayerNorm rows x cols, softmax scores,
    GELU inputs, residual-add outputs)."""
    from collections import Counter

    from mcuc.pipeline import calibration_samples, compile_graph, load_graph

    g = load_graph(None)
    n: Counter = Counter()
    for st in compile_graph(g, calibration_samples(g, "fashion-mnist")).schedule.steps:
        p = st.params
        if st.kernel == "layernorm":
            n["LayerNorm"] += p["rows"] * p["cols"]
        elif st.kernel == "tokenwise":
            n["LayerNorm"] += p["has_ln"] * p["rows"] * p["k"]
            n["GELU (table)"] += p["has_lut"] * p["rows"] * p["h"]
            n["residual add"] += p["has_res"] * p["rows"] * p["n"]
        elif st.kernel == "attention":
            n["softmax"] += p["batch"] * p["q_len"] * p["kv_len"]
        elif st.kernel == "add":
            n["residual add"] += p["size"]
        elif st.kernel == "lut":
            n["GELU (table)"] += p["size"]
    return dict(n)


def element_rows(functions: dict[str, dict[str, int]], counts: dict[str, int]) -> list[str]:
    """Instructions per element of each element-wise part, per build ({build: {function:
    instructions over the run}}), from the function profile of the hot-loop run."""
    builds = list(functions)
    lines = ["| part | elements / inference | " + " | ".join(builds) + " | goal |",
             "|---|---|" + "---|" * len(builds) + "---|"]
    for part, prefixes in ELEMENTWISE.items():
        per = []
        for b in builds:
            total = sum(v for f, v in functions[b].items() if f.startswith(prefixes))
            # 0: the build has no function of that name (inlined into its caller)
            per.append(f"{total / INFERENCES / counts[part]:.1f}" if total and counts.get(part)
                       else "n/a")
        goal = f"<= {ELEMENT_GOALS[part]}" if part in ELEMENT_GOALS else ""
        lines.append(f"| {part} | {counts.get(part, 0):,} | " + " | ".join(per) + f" | {goal} |")
    return lines


def kernel_rows(port: dict, opt: dict, fast: dict) -> list[str]:
    """The per-kernel table (and its whole-model line) of one model's three builds."""
    kp, ko, kf = per_kernel(port), per_kernel(opt), per_kernel(fast)
    lines = [
        "| kernel | op | steps | MACs/step | portable | optimized | speed | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(kp, key=lambda k: (k[0], k[1], k[2])):
        kernel, op, macs = key
        n, ip = kp[key]
        io = ko.get(key, (0, float("nan")))[1]
        iff = kf.get(key, (0, float("nan")))[1]
        goal = f"<= {GOALS[kernel]}" if kernel in GOALS else ""
        lines.append(f"| {kernel} | {op} | {n} | {macs:,} | {ip / macs:.2f} | {io / macs:.2f} "
                     f"| {iff / macs:.2f} | {goal} |")
    macs = int(port["macs"])
    lines.append(
        f"| **whole model** | | {port['steps']} | {macs:,} | "
        f"{int(port['instructions']) / macs:.2f} | {int(opt['instructions']) / macs:.2f} | "
        f"{int(fast['instructions']) / macs:.2f} | <= {WHOLE_GOAL} |")
    return lines


def render(command: str, reports: dict[str, dict[str, dict]],
           loops: dict[str, tuple[int, list[HotLoop]]],
           large: dict[str, dict[str, dict]], elements: list[str]) -> str:
    """bench/kernels.md from {board: {variant: report}}; per kernel for the first board,
    and for each LARGE shape ({shape: {variant: report}}) on that board."""
    board = next(iter(reports))
    lines = [
        "# Kernel benchmark: instructions per MAC",
        "",
        f"Made by `{command}` on {platform.node()}, {datetime.date.today().isoformat()}.",
        "",
        "The default model built three times per board: `portable` = the reference C",
        "kernels (`--kernels portable`), `optimized` = the board's variants (`[cpu] dsp =",
        "true` -> -DMCUC_ARM_DSP: linear core, attention, LayerNorm and patch embedding on",
        "SMLAD; the default build), `speed` = the same with `--optimize speed` (the linear",
        "weights stored as int16: more flash, no unpacking in the inner loop).",
        "**These are instruction counts from the Unicorn engine (exact, retired instructions",
        "per inference), not cycles.** Goals are issue 23's, in the same unit.",
        "",
        f"## Per kernel, {board}",
        "",
        "A step's instructions / its MACs, the mean over the steps of the same shape. A",
        "token-wise step includes its LayerNorm, epilogues, table and residual add.",
        "",
        *kernel_rows(*(reports[board][v] for v in VARIANTS)),
        "",
        f"## Element-wise parts, {board}",
        "",
        "Instructions per element: the retired instructions of the functions that do each",
        "part (by name: " + "; ".join(f"{k}: " + ", ".join(f"{v}*" for v in vs)
                                      for k, vs in ELEMENTWISE.items()) + ") over",
        f"the firmware's run, over its {INFERENCES} inferences, per element of the default",
        "model's schedule. Attributed by function, so call overhead counts; the residual adds",
        "inside the token-wise steps are included.",
        "",
        *elements,
        "",
        "## Whole model per board",
        "",
        "| board | build | instructions / inference | instr/MAC | arena B | weights B | "
        "flash B |",
        "|---|---|---|---|---|---|---|",
    ]
    for b, by_variant in reports.items():
        for v, r in by_variant.items():
            n = int(r["instructions"])
            lines.append(f"| {b} | {v} | {n:,} | {n / int(r['macs']):.2f} | "
                         f"{r['arena_bytes']:,} | {r['weights_bytes']:,} | "
                         f"{r['flash_bytes']:,} |")
    for shape, by_variant in large.items():
        opt = by_variant["optimized"]
        lines += [
            "",
            f"## Larger shape, {board}: {shape}",
            "",
            f"One block ({LARGE[shape]['img_size']} x {LARGE[shape]['img_size']} image, patch 4, "
            f"{LARGE[shape]['heads']} heads of 64, MLP ratio 4), seeded random "
            f"weights; arena {opt['arena_bytes']:,} B, flash {opt['flash_bytes']:,} B "
            f"(speed: {by_variant['speed']['flash_bytes']:,} B).",
            "",
            *kernel_rows(*(by_variant[v] for v in VARIANTS)),
        ]
    lines += [
        "",
        "CMSIS-NN: its fully connected layer is measured beside mcuc's linear kernel, same "
        "compiler, flags, operands and counter, by `make bench-cmsis` (bench/vs_cmsis.md). "
        "Its attention (two `arm_batch_matmul_s8`, `arm_softmax_s8` and a V transpose) is "
        "quoted from issue 23's anchor table (commit 99f736a, counted on the same engine), "
        "**not re-measured**: 11.84 instructions/MAC, softmax 534.6 per element.",
        "",
    ]
    if loops:
        lines += loops_table(board, loops)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="stm32f746,stm32f427",
                    help="comma-separated; the first gets the per-kernel table")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "kernels.md")
    args = ap.parse_args()
    command = "make bench-kernels" if os.environ.get("MAKELEVEL") else " ".join(
        ["scripts/bench_kernels.py", *sys.argv[1:]])
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    reports: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="mcuc-bench-kernels-") as tmp:
        for b in boards:
            reports[b] = {}
            for v in VARIANTS:
                print(f"bench_kernels: {b} {v} ...", file=sys.stderr, flush=True)
                reports[b][v] = build(b, v, Path(tmp) / f"{b}-{v}")
        large: dict[str, dict[str, dict]] = {}
        for i, (shape, kw) in enumerate(LARGE.items()):
            large[shape] = {}
            for v in VARIANTS:
                print(f"bench_kernels: {boards[0]} {shape} {v} ...", file=sys.stderr,
                      flush=True)
                large[shape][v] = build(boards[0], v, Path(tmp) / f"large{i}-{v}", kw)
        print("bench_kernels: hot loops (llvm-mca) ...", file=sys.stderr, flush=True)
        chip = load_board(boards[0]).chip
        functions: dict[str, dict[str, int]] = {v: {} for v in VARIANTS}
        loops = {v: hot_loops(Path(tmp) / f"{boards[0]}-{v}" / "firmware.elf", chip,
                              functions=functions[v]) for v in VARIANTS}
    elements = element_rows(functions, element_counts())
    text = render(command, reports, {v: loops[v] for v in ("optimized", "speed")}, large,
                  elements)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
