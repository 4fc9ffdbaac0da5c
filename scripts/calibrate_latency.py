#!/usr/bin/env python3
"""Fit the latency model's table for a board from exact emulator counts.

Builds `--configs` random ViTs of the search space (seeded; scripts/latency_data.py: every
`--init-every`-th keeps its initial weights, whose low-rank residual adds run add_fast) for
the board as `mcuc build` does, runs each in the Unicorn engine, and fits the
instructions per loop trip of every feature (mcuc.latency.features) by least squares
over all the steps' counts; the inference's overhead outside the steps (run_call,
run_step) is fitted on whole-inference minus summed step counts. Writes
compiler/mcuc/latency/tables/<core>-<variant>-<optimize>.json and prints the in-sample
errors. The held-out error is scripts/bench_latency.py's job (other seeds).

Usage: .venv/bin/python scripts/calibrate_latency.py [--board stm32f746]
       [--kernels optimized] [--optimize size] [--configs 40] [--seed 100] [--cache DIR]
       [--init-every 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_data import (  # noqa: E402
    Measured,
    add_build_options,
    config_key,
    measure,
    measured_configs,
)
from mcuc.boards import load_board  # noqa: E402
from mcuc.latency import RUN_KEYS, TABLES, run_features, schedule_features, table_key, variant_of  # noqa: E402

RIDGE = 1e-6   # relative: keeps features that never vary (collinear) from blowing up


def collect(board: str, kernels: str, optimize: str, n: int, seed: int,
            cache: Path | None, init_every: int) -> list[Measured]:
    """Measure n seeded configs, reusing (and filling) a pickle cache when given."""
    def cached(cfg, *args, weights: str) -> Measured:
        name = f"{board}-{kernels}-{optimize}-{config_key(cfg, weights)}.pkl"
        path = cache / name if cache else None
        if path is not None and path.is_file():
            return pickle.loads(path.read_bytes())
        t0 = time.perf_counter()
        m = measure(cfg, *args, weights=weights)
        print(f"calibrate_latency: {m.instructions:,} instructions "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(m))
            os.replace(tmp, path)
        return m

    return [m for _, m in measured_configs(n, seed, board, kernels, optimize, cached,
                                           init_every=init_every)]


def _lstsq(rows: list[dict], y: list[float], names: list[str]) -> dict[str, float]:
    """Least squares coef over `names`, errors relative to each target (big and small
    steps alike), with a small ridge."""
    a = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    w = 1.0 / np.sqrt(np.maximum(b, 1.0))
    a, b = a * w[:, None], b * w
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    an = a / scale
    lam = RIDGE * np.trace(an.T @ an) / max(1, len(names))
    x = np.linalg.solve(an.T @ an + lam * np.eye(len(names)), an.T @ b)
    return {k: float(v) for k, v in zip(names, x / scale, strict=True)}


def fit(ms: list[Measured], board, optimize: str) -> dict[str, float]:
    """The table: per-step coefficients, then the run overhead."""
    v = variant_of(board, optimize, exact=True)
    rows, y = [], []
    for m in ms:
        for f, n in zip(schedule_features(m.schedule, v), m.per_step, strict=True):
            rows.append(f)
            y.append(n)
    names = sorted({k for r in rows for k, val in r.items() if val})
    coef = _lstsq(rows, y, names)
    over = [run_features(len(m.per_step)) for m in ms]
    coef.update(_lstsq(over, [m.instructions - sum(m.per_step) for m in ms], list(RUN_KEYS)))
    return coef


def per_kernel_errors(ms: list[Measured], board, optimize: str, coef: dict) -> list[str]:
    """In-sample relative error of the summed instructions of each kernel."""
    v = variant_of(board, optimize, exact=True)
    meas, pred = defaultdict(float), defaultdict(float)
    for m in ms:
        feats = schedule_features(m.schedule, v)
        for st, f, n in zip(m.schedule.steps, feats, m.per_step, strict=True):
            meas[st.kernel] += n
            pred[st.kernel] += sum(coef.get(k, 0.0) * x for k, x in f.items())
    return [f"  {k:<12} measured {meas[k]:>14,.0f}  predicted {pred[k]:>14,.0f}  "
            f"{100 * (pred[k] / meas[k] - 1):+.2f}%" for k in sorted(meas)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_build_options(ap, configs=40, seed=100)
    ap.add_argument("--cache", type=Path, default=None,
                    help="directory of measured configs to reuse (pickles: trusted only)")
    ap.add_argument("--out-dir", type=Path, default=TABLES)
    args = ap.parse_args()
    board = load_board(args.board).with_kernels(args.kernels)
    ms = collect(args.board, args.kernels, args.optimize, args.configs, args.seed, args.cache,
                 args.init_every)
    coef = fit(ms, board, args.optimize)
    key = table_key(board, args.optimize)
    meta = {"board": args.board, "kernels": args.kernels, "optimize": args.optimize,
            "configs": args.configs, "seed": args.seed, "init_every": args.init_every,
            "steps": sum(len(m.per_step) for m in ms),
            "date": datetime.date.today().isoformat(),
            "command": " ".join(["scripts/calibrate_latency.py", *sys.argv[1:]])}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{key}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "coef": dict(sorted(coef.items()))}, indent=1)
                   + "\n")
    os.replace(tmp, path)
    v = variant_of(board, args.optimize, exact=True)
    errs = []
    for m in ms:
        feats = schedule_features(m.schedule, v)
        p = sum(sum(coef.get(k, 0.0) * x for k, x in f.items()) for f in feats)
        p += sum(coef[k] * x for k, x in run_features(len(feats)).items())
        errs.append(100 * (p / m.instructions - 1))
    print(f"wrote {path}: {len(coef)} coefficients from {meta['steps']} steps of "
          f"{len(ms)} configs")
    print(f"in-sample whole-model error: max |e| {max(map(abs, errs)):.2f}%, "
          f"mean |e| {np.mean(np.abs(errs)):.2f}%")
    print("\n".join(per_kernel_errors(ms, board, args.optimize, coef)))


if __name__ == "__main__":
    main()
