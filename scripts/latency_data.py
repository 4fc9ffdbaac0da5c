"""Measured instruction counts of random search-space ViTs, for the latency model.

Shared by scripts/calibrate_latency.py (fits the tables), scripts/bench_latency.py (the
30-config error table) and tests/test_latency.py. A config is built as a search pick
would be: the torch subnet (seeded random weights), exported, calibrated on Fashion-MNIST
training images and compiled by `mcuc.pipeline.build` for the board, whose firmware runs
one inference in the Unicorn engine; its report gives the exact retired instructions of
the inference and of every step. The compiled schedule (the same deterministic compile)
is kept beside the counts so that the steps' parameters can be fitted against them.

Weights: seeded random noise on the subnet's initialisation (scale NOISE) for most
configs, and for every `--init-every`-th one the initialisation itself (what a briefly
trained model is near). The two calibrate differently where it matters to the runtime:
at initialisation a low-rank block's factors (three linear layers, two without a bias)
shrink its branch to about 2^-17 of the residual stream's scale, so its residual add's
finer input needs a shift beyond add_exact's range for a nonzero zero point of the
residual (add.c fits30) and the add runs add_fast, as a trained low-rank model's did;
with the noise every add takes add_exact.
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
NOISE = 0.05      # std of the seeded noise added to every parameter ("noise" weights)
INIT_EVERY = 4    # default: every 4th measured config keeps its initial weights


@dataclass
class Measured:
    """One built config: its compiled schedule and the emulator's counts."""
    cfg: object                 # mcuc.nas.space.SubnetConfig
    schedule: Schedule
    instructions: int           # whole inference
    per_step: list[int]         # one count per schedule step
    build_s: float
    weights: str = "noise"      # "noise" or "init" (weights_of)


def add_build_options(ap, configs: int, seed: int) -> None:
    """The options the calibration and the benchmark share: which build, how many configs."""
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--kernels", default="optimized", choices=("optimized", "portable"))
    ap.add_argument("--optimize", default="size", choices=("size", "speed"))
    ap.add_argument("--configs", type=int, default=configs)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--init-every", type=int, default=INIT_EVERY,
                    help="every Nth config keeps the subnet's initial weights (its "
                         "low-rank residual adds take add_fast); 0: none")


def weights_of(i: int, init_every: int = INIT_EVERY) -> str:
    """The weights of the i-th measured config (0-based): "init" for every
    init_every-th, else "noise"."""
    return "init" if init_every > 0 and i % init_every == init_every - 1 else "noise"


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
                     measure_one=None, skipped: list | None = None,
                     init_every: int = INIT_EVERY):
    """(cfg, Measured) for the first n drawn configs whose build fits, the i-th of them
    with weights_of(i): the fit filter is the --optimize size one, so a --optimize speed
    build (int16 weights, twice the flash) can still fail the build's fit check; such
    configs are skipped, and said so."""
    from mcuc import McucError

    done = 0
    for cfg in draw_configs(seed, board):
        if done == n:
            return
        weights = weights_of(done, init_every)
        try:
            m = (measure_one or measure)(cfg, board, kernels, optimize, weights=weights)
        except McucError as e:
            if "does not fit" not in str(e):
                raise
            print(f"skipped (build does not fit): {cfg}", file=sys.stderr, flush=True)
            if skipped is not None:
                skipped.append(cfg)
            continue
        done += 1
        yield cfg, m


def config_key(cfg, weights: str = "noise") -> str:
    """A short stable name for a config and its weights (cache file names; "noise" keeps
    the names of caches made before the weights were a choice)."""
    import hashlib

    key = hashlib.sha256(repr(cfg).encode()).hexdigest()[:16]
    return key if weights == "noise" else f"{key}-{weights}"


def _module(cfg, seed: int, weights: str = "noise"):
    """The torch subnet of cfg, seeded: its initial weights plus NOISE (as nas/cost.py's
    slow path), or for "init" its initial weights alone."""
    import torch

    from mcuc.nas.subnet import build_subnet

    if weights not in ("noise", "init"):
        raise ValueError(f"weights {weights!r}: 'noise' or 'init'")
    torch.manual_seed(seed)
    module = build_subnet(cfg).eval()
    if weights == "noise":
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p) * NOISE)
    return module


def measure(cfg, board: str = "stm32f746", kernels: str = "optimized",
            optimize: str = "size", seed: int = 0, weights: str = "noise") -> Measured:
    """Build cfg for board as `mcuc build` does and count its instructions in Unicorn."""
    import time

    from mcuc.pipeline import build, calibration_samples, compile_graph, load_graph

    module = _module(cfg, seed, weights)
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
    return Measured(cfg, sched, int(report["instructions"]), per_step, build_s, weights)


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
