"""Measured instruction counts of random search-space ViTs, for the latency model.

Shared by scripts/calibrate_latency.py (fits the tables), scripts/bench_latency.py (the
30-config error table) and tests/test_latency.py. A config is built as a search pick
would be: the torch subnet (seeded random weights), exported, calibrated on Fashion-MNIST
training images and compiled by `mcuc.pipeline.build` for the board, whose firmware runs
one inference in the Unicorn engine; its report gives the exact retired instructions of
the inference and of every step. The compiled schedule (the same deterministic compile)
is kept beside the counts so that the steps' parameters can be fitted against them.
"""

from __future__ import annotations

import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc.schedule.schedule import Schedule

CALIB_IMAGES = 8


@dataclass
class Measured:
    """One built config: its compiled schedule and the emulator's counts."""
    cfg: object                 # mcuc.nas.space.SubnetConfig
    schedule: Schedule
    instructions: int           # whole inference
    per_step: list[int]         # one count per schedule step
    build_s: float


def add_build_options(ap, configs: int, seed: int) -> None:
    """The options the calibration and the benchmark share: which build, how many configs."""
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--kernels", default="optimized", choices=("optimized", "portable"))
    ap.add_argument("--optimize", default="size", choices=("size", "speed"))
    ap.add_argument("--configs", type=int, default=configs)
    ap.add_argument("--seed", type=int, default=seed)


def draw_configs(seed: int, board: str = "stm32f746", space=None):
    """Distinct configs drawn from the search space by the search's own sampler, among
    those that fit the board (nas/cost.py: the search never proposes the others), for
    ever: callers take what they need."""
    from mcuc.nas.cost import CostModel
    from mcuc.nas.space import load_space

    sp = space or load_space()
    costs = CostModel(board)
    rng = random.Random(seed)
    seen: set = set()
    while True:
        c = sp.sample(rng)
        if c not in seen and costs.cost(c).fits:
            seen.add(c)
            yield c


def random_configs(n: int, seed: int, board: str = "stm32f746", space=None) -> list:
    """The first n of draw_configs."""
    gen = draw_configs(seed, board, space)
    return [next(gen) for _ in range(n)]


def measured_configs(n: int, seed: int, board: str, kernels: str, optimize: str,
                     measure_one=None, skipped: list | None = None):
    """(cfg, Measured) for the first n drawn configs whose build fits: the fit filter
    is the --optimize size one, so a --optimize speed build (int16 weights, twice the
    flash) can still fail the build's fit check; such configs are skipped, and said so."""
    from mcuc import McucError

    done = 0
    for cfg in draw_configs(seed, board):
        if done == n:
            return
        try:
            m = (measure_one or measure)(cfg, board, kernels, optimize)
        except McucError as e:
            if "does not fit" not in str(e):
                raise
            print(f"skipped (build does not fit): {cfg}", file=sys.stderr, flush=True)
            if skipped is not None:
                skipped.append(cfg)
            continue
        done += 1
        yield cfg, m


def config_key(cfg) -> str:
    """A short stable name for a config (cache file names)."""
    import hashlib

    return hashlib.sha256(repr(cfg).encode()).hexdigest()[:16]


def _module(cfg, seed: int):
    """The torch subnet of cfg with seeded random weights (as nas/cost.py's slow path)."""
    import torch

    from mcuc.nas.subnet import build_subnet

    torch.manual_seed(seed)
    module = build_subnet(cfg).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module


def measure(cfg, board: str = "stm32f746", kernels: str = "optimized",
            optimize: str = "size", seed: int = 0) -> Measured:
    """Build cfg for board as `mcuc build` does and count its instructions in Unicorn."""
    import time

    from mcuc.pipeline import build, calibration_samples, compile_graph, load_graph

    module = _module(cfg, seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcuc-latency-") as tmp:
        report = build(module, board, "fashion-mnist", Path(tmp) / "b",
                       input_shape=cfg.input_shape, samples=1, kernels=kernels,
                       optimize=optimize, calib_images=CALIB_IMAGES)
    build_s = time.perf_counter() - t0
    if not report.get("instructions"):
        raise SystemExit(f"{board}: no instruction count (no Unicorn engine here?)")
    graph = load_graph(module, cfg.input_shape)
    calib = calibration_samples(graph, "fashion-mnist", CALIB_IMAGES)
    sched = compile_graph(graph, calib, optimize=optimize).schedule
    per_step = [int(row["instructions"]) for row in report["layers"]]
    names = [row["name"] for row in report["layers"]]
    if names != [st.name for st in sched.steps]:
        raise SystemExit("the recompiled schedule differs from the build's")
    return Measured(cfg, sched, int(report["instructions"]), per_step, build_s)


def step_records(m: Measured) -> list[dict]:
    """(kernel, params without arrays, measured) per step, for a JSON cache."""
    out = []
    for st, n in zip(m.schedule.steps, m.per_step, strict=True):
        out.append({"kernel": st.kernel, "params": scalar_params(st.params),
                    "instructions": n})
    return out


def scalar_params(p: dict) -> dict:
    """The params a cost formula may read: scalars, short int tuples, and whether each
    array field is present."""
    out: dict = {}
    for k, v in p.items():
        if v is None:
            out[k] = None
        elif isinstance(v, np.ndarray):
            out[k] = v.tolist() if v.size <= 8 else f"array{list(v.shape)}"
        elif isinstance(v, (list, tuple)):
            out[k] = list(v) if len(v) <= 8 else f"seq{len(v)}"
        else:
            out[k] = v.item() if hasattr(v, "item") else v
    return out
