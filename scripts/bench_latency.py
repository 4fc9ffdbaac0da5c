#!/usr/bin/env python3
"""The latency model's error on random search-space configs, written to bench/latency.md.

Draws `--configs` configs that fit the board from the default search space (the
search's own sampler, seed `--seed`, which calibration never used), builds each as
`mcuc build` does (scripts/latency_data.py) and runs it once in the Unicorn engine, and
compares the exact instruction count with two predictions: the build's (report.json
`predicted_instructions`, from the real schedule) and the search's (nas/cost.py, from
the fast schedule with dummy quantization: what the search ranks by). Also times the
search's cost model (lower + plan + predict) on fresh configs: candidates per minute.

Usage: .venv/bin/python scripts/bench_latency.py [--board stm32f746] [--configs 30]
       [--seed 7] [--optimize size] [--out bench/latency.md] [--append]
(--append adds this board's section to an existing --out instead of replacing it.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_data import add_build_options, measured_configs  # noqa: E402
from mcuc import latency  # noqa: E402
from mcuc.boards import load_board  # noqa: E402
from mcuc.nas.cost import CostModel, fast_schedule  # noqa: E402
from mcuc.nas.space import load_space  # noqa: E402

SPEED_CONFIGS = 300


def describe(cfg) -> str:
    """A config in one short cell."""
    lr = "/".join(f"{r:g}" for r in cfg.lowrank)
    mlp = "/".join(f"{r:g}" for r in cfg.mlp_ratio)
    heads = "/".join(str(h) for h in cfg.heads)
    return f"p{cfg.patch} d{cfg.dim} L{cfg.depth} h {heads} mlp {mlp} lr {lr}"


def speed(board: str, optimize: str, n: int) -> tuple[float, float]:
    """(candidates per minute of the whole cost, predictions per minute alone), fresh
    configs, one process."""
    sp, rng = load_space(), random.Random(99)
    cfgs = list(dict.fromkeys(sp.sample(rng) for _ in range(n)))
    cm = CostModel(board, optimize=optimize)
    t0 = time.perf_counter()
    for c in cfgs:
        cm.cost(c)
    whole = len(cfgs) / (time.perf_counter() - t0) * 60
    b = load_board(board)
    scheds = [fast_schedule(c) for c in cfgs[:100]]
    t0 = time.perf_counter()
    for s in scheds:
        latency.predict(s, b, optimize, exact=False, table=cm.table)
    alone = len(scheds) / (time.perf_counter() - t0) * 60
    return whole, alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_build_options(ap, configs=30, seed=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "latency.md")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()
    board = load_board(args.board).with_kernels(args.kernels)
    key = latency.table_key(board, args.optimize)
    table = latency.load_table(key)
    cm = CostModel(board, optimize=args.optimize)
    rows, e_build, e_search, t_build = [], [], [], 0.0
    skipped: list = []
    for i, (cfg, m) in enumerate(measured_configs(args.configs, args.seed, args.board,
                                                   args.kernels, args.optimize,
                                                   skipped=skipped,
                                                   init_every=args.init_every)):
        t_build += m.build_s
        pb = latency.predict(m.schedule, board, args.optimize, table=table).instructions
        ps = cm.cost(cfg).instructions
        eb, es = 100 * (pb / m.instructions - 1), 100 * (ps / m.instructions - 1)
        e_build.append(eb)
        e_search.append(es)
        print(f"bench_latency: {i + 1}/{args.configs} measured {m.instructions:,} "
              f"build {eb:+.2f}% search {es:+.2f}%", file=sys.stderr, flush=True)
        init = " (init)" if m.weights == "init" else ""
        rows.append(f"| {i + 1} | {describe(cfg)}{init} | {m.schedule.macs():,} | "
                    f"{m.instructions:,} | {pb:,} | {eb:+.2f}% | {ps:,} | {es:+.2f}% |")
    whole, alone = speed(args.board, args.optimize, SPEED_CONFIGS)
    load = os.getloadavg()[0]   # the machine may be shared: say how busy it was
    ab, as_ = np.abs(e_build), np.abs(e_search)
    command = " ".join(["scripts/bench_latency.py", *sys.argv[1:]])
    meta = table.meta
    text = "\n".join([
        f"{'##' if args.append else '#'} Latency model: predicted vs measured instructions, "
        f"{args.board}",
        "",
        f"Made by `{command}` on {platform.node()}, {datetime.date.today().isoformat()}.",
        "",
        f"{args.configs} configs drawn (seed {args.seed}) from the default search space "
        "among those that fit the board, each with seeded random weights (one in "
        f"{args.init_every}: its initial weights, marked (init)), calibrated on 8"
        if args.init_every else
        "among those that fit the board, each with seeded random weights, calibrated on 8",
        "Fashion-MNIST training images, built as `mcuc build` builds "
        f"(`--kernels {args.kernels} --optimize {args.optimize}`) and run once in the Unicorn",
        "engine: **measured** is its exact count of retired instructions for one",
        "inference. **Build** is the latency model on the build's schedule (report.json",
        "`predicted_instructions`); **search** is the model on the search's fast schedule",
        "(dummy quantization, data-dependent loops assumed: what `mcuc search` ranks by).",
        f"Table `{key}`: fitted by `{meta.get('command', '?')}` ({meta.get('configs', '?')} "
        f"other configs, seed {meta.get('seed', '?')}, {meta.get('steps', '?')} steps).",
        "Instructions, not cycles."
        + (f" {len(skipped)} drawn configs were skipped: their build did not fit the board "
           f"(`--optimize {args.optimize}`)." if skipped else ""),
        "",
        "| # | config | MACs | measured | build | error | search | error |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Build prediction: max |error| **{ab.max():.2f}%**, mean |error| {ab.mean():.2f}%.",
        f"Search prediction: max |error| **{as_.max():.2f}%**, mean |error| {as_.mean():.2f}%.",
        "",
        f"Speed (one process, {SPEED_CONFIGS} fresh configs): the search's whole cost "
        f"(lower, plan, memory fit, latency) {whole:,.0f} candidates per minute; the latency",
        f"prediction alone {alone:,.0f} per minute (load average {load:.1f} on "
        f"{os.cpu_count()} CPUs). Building and emulating the {args.configs} configs took "
        f"{t_build:.0f} s.",
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.append:
        text = args.out.read_text().rstrip("\n") + "\n\n" + text
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
