#!/usr/bin/env python3
"""`make bench-kernels`: instructions per MAC of each kernel of the default model, portable
against optimized kernel variants, written to bench/kernels.md.

Why a script: the figure that issue 23 tracks is the firmware's own, so the default model
is built twice for the board (`mcuc build`, --kernels portable, then optimized: the
board's -DMCUC_ARM_DSP), and each build's report.json gives the exact instruction count of
every step, counted by the Unicorn engine while the firmware runs its self-test. These are
retired instructions, not cycles (a Cortex-M7 dual-issues some pairs and stalls on others).

Usage: .venv/bin/python scripts/bench_kernels.py [--board stm32f746] [--out bench/kernels.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("portable", "optimized")


def build(board: str, variant: str, out: Path) -> dict:
    """report.json of the default model built for `board` with the kernel `variant`."""
    mcuc = Path(sys.executable).with_name("mcuc")
    res = subprocess.run([str(mcuc), "build", "--board", board, "--out", str(out),
                          "--kernels", variant], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"bench_kernels: {variant} build failed:\n{res.stdout}\n{res.stderr}")
    report = json.loads((out / "report.json").read_text())
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


def render(board: str, command: str, reports: dict[str, dict]) -> str:
    port, opt = reports["portable"], reports["optimized"]
    kp, ko = per_kernel(port), per_kernel(opt)
    lines = [
        "# Kernel benchmark: instructions per MAC",
        "",
        f"Made by `{command}` on {platform.node()}, {datetime.date.today().isoformat()}.",
        "",
        f"Default model on the {board} firmware, built twice: `portable` = the reference C",
        "kernels (--kernels portable), `optimized` = the board's variants (`[cpu] dsp = true`",
        "-> -DMCUC_ARM_DSP: linear core, attention, LayerNorm and patch embedding on SMLAD).",
        "**These are instruction counts from the Unicorn engine (exact, retired instructions",
        "per inference), not cycles.**",
        "Per kernel: a step's instructions / its MACs, the mean over the steps of the same",
        "shape. A token-wise step includes its LayerNorm, epilogues, table and residual add.",
        "",
        "| kernel | op | steps | MACs/step | portable instr/MAC | optimized instr/MAC | "
        "speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(kp, key=lambda k: (k[0], k[1], k[2])):
        kernel, op, macs = key
        n, ip = kp[key]
        io = ko.get(key, (0, float("nan")))[1]
        lines.append(f"| {kernel} | {op} | {n} | {macs:,} | {ip / macs:.2f} | {io / macs:.2f} "
                     f"| {ip / io:.2f}x |")
    macs = int(port["macs"])
    ip, io = int(port["instructions"]), int(opt["instructions"])
    lines += [
        f"| **whole model** | | {port['steps']} | {macs:,} | {ip / macs:.2f} | {io / macs:.2f} "
        f"| {ip / io:.2f}x |",
        "",
        f"Whole model: {ip:,} instructions (portable) -> {io:,} (optimized) per inference; "
        f"arena {port['arena_bytes']:,} B -> {opt['arena_bytes']:,} B; "
        f"flash {port['flash_bytes']:,} B -> {opt['flash_bytes']:,} B.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "kernels.md")
    args = ap.parse_args()
    command = "make bench-kernels" if os.environ.get("MAKELEVEL") else " ".join(
        ["scripts/bench_kernels.py", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="mcuc-bench-kernels-") as tmp:
        reports = {v: build(args.board, v, Path(tmp) / v) for v in VARIANTS}
    text = render(args.board, command, reports)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
