"""The NAS cost model: a candidate's SRAM, flash and instructions, from mcuc's own compiler.

No formula: each candidate is lowered by `schedule.lower.lower` (every memory-technique
pass included) and planned by `memory.plan`, exactly as `mcuc build` does, and the
board's code, stack and data overhead is added by `firmware.estimate`, the function
the build's fit check uses. So "fits" here means "`mcuc build` would pass its fit
check". The canonical graph comes from nas/graph_builder.py (fast path, no export and
no calibration); `slow_cost_inputs` runs the real exporter + frontend + calibration and
exists to prove the fast path exact. Instructions per inference come from the same
lowered schedule through the compiler's latency model (mcuc.latency: per-step loop trip
counts times a table fitted from emulator counts), for boards whose core has a table;
the dummy quantization cannot say which data-dependent loops run, so those are assumed
(latency.predict's `exact=False`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from mcuc import McucError, latency, memory
from mcuc.boards import Board, load_board
from mcuc.nas.graph_builder import build_graph, dummy_qgraph
from mcuc.nas.space import SubnetConfig
from mcuc.schedule.lower import lower
from mcuc.schedule.schedule import Schedule
from mcuc.schedule.widen import for_board
from mcuc.target.fit import Fit, estimate

DEFAULT_SAMPLES = 4  # `mcuc build --samples` default: images baked into flash


@dataclass(frozen=True)
class Cost:
    """What a candidate needs, in bytes; ram/flash include the board's overheads."""
    arena_bytes: int
    weights_bytes: int
    flash_bytes: int
    ram_bytes: int
    macs: int
    fits: bool
    steps: int = 0
    instructions: int | None = None   # predicted per inference; None: no latency table

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def schedule_cost(schedule: Schedule, strategy: str = "best") -> tuple[int, int, int, int]:
    """(arena, weights, macs, steps) of a lowered schedule, planned as compile_graph plans."""
    plan = memory.plan(schedule.liveness(), strategy)
    return plan.arena_bytes, schedule.weights_bytes(), schedule.macs(), len(schedule.steps)


def predicted_instructions(schedule: Schedule, board: Board, optimize: str,
                           table: latency.Table | None) -> int | None:
    """The latency model's instructions of a fast schedule, or None without a table."""
    if table is None:
        return None
    return latency.predict(schedule, board, optimize, exact=False, table=table).instructions


def fast_schedule(cfg: SubnetConfig, disabled: tuple[str, ...] = (), dsp: bool = True,
                  optimize: str = "size") -> Schedule:
    """Lower the directly-built graph of `cfg` with dummy quantization, with the constants
    the build prepares for the board's kernels (schedule/widen.for_board)."""
    return for_board(lower(dummy_qgraph(build_graph(cfg)), disabled), dsp, optimize)


def slow_schedule(cfg: SubnetConfig, disabled: tuple[str, ...] = (), seed: int = 0,
                  n_calib: int = 2) -> Schedule:
    """The reference path: torch subnet -> exporter -> frontend -> real calibration ->
    compile_graph. Parameters are randomized (seeded) so no bias is all zero, as in a
    trained model (the exporter folds away all-zero biases)."""
    import torch

    from mcuc.nas.subnet import build_subnet
    from mcuc.pipeline import compile_graph, load_graph

    torch.manual_seed(seed)
    module = build_subnet(cfg).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    graph = load_graph(module, cfg.input_shape)
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((n_calib,) + cfg.input_shape[1:]).astype(np.float32)
    return compile_graph(graph, samples, disabled).schedule


class CostModel:
    """Cached cost of configs against one board (or explicit budgets).

    `sram_bytes`/`flash_bytes` override the board's limits (a tighter budget than the
    chip, e.g. SRAM shared with a camera buffer); overheads still come from the board.
    `instructions` is a time budget in predicted instructions per inference (None: no
    time limit): a candidate fits when it fits the memory and its prediction is within it.
    """

    def __init__(self, board: str | Board = "stm32f746", sram_bytes: int | None = None,
                 flash_bytes: int | None = None, disabled: tuple[str, ...] = (),
                 samples: int = DEFAULT_SAMPLES, optimize: str = "size",
                 instructions: int | None = None) -> None:
        self.board = load_board(board) if isinstance(board, str) else board
        self.optimize = optimize
        # a time budget needs a table: load_table's one-line error names the missing one
        self.table = (latency.load_table(latency.table_key(self.board, optimize))
                      if instructions is not None or latency.has_table(self.board, optimize)
                      else None)
        self.instructions_limit = None if instructions is None else int(instructions)
        self.sram_limit = self.board.sram_bytes if sram_bytes is None else int(sram_bytes)
        self.flash_limit = self.board.flash_bytes if flash_bytes is None else int(flash_bytes)
        self.disabled = tuple(disabled)
        self.samples = samples
        self._cache: dict[SubnetConfig, Cost] = {}
        self.hits = 0
        self.misses = 0
        self.compute_s = 0.0

    def fit(self, cfg: SubnetConfig, arena: int, weights: int, steps: int) -> Fit:
        """The build's fit estimate for these sizes, against this model's budgets."""
        f = estimate(self.board, arena, weights, steps, int(np.prod(cfg.input_shape)),
                     cfg.num_classes, self.samples)
        return dataclasses.replace(f, sram_limit=self.sram_limit, flash_limit=self.flash_limit)

    def fits(self, f: Fit, instructions: int | None) -> bool:
        """Within the memory budgets and, given one, the instruction budget."""
        if f.problems():
            return False
        return self.instructions_limit is None or (
            instructions is not None and instructions <= self.instructions_limit)

    def cost(self, cfg: SubnetConfig) -> Cost:
        hit = self._cache.get(cfg)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        t0 = time.perf_counter()
        sched = fast_schedule(cfg, self.disabled, self.board.dsp, self.optimize)
        arena, weights, macs, steps = schedule_cost(sched)
        f = self.fit(cfg, arena, weights, steps)
        instr = predicted_instructions(sched, self.board, self.optimize, self.table)
        c = Cost(arena_bytes=arena, weights_bytes=weights, flash_bytes=f.flash,
                 ram_bytes=f.sram, macs=macs, fits=self.fits(f, instr), steps=steps,
                 instructions=instr)
        self._cache[cfg] = c
        self.compute_s += time.perf_counter() - t0
        return c

    def cost_many(self, cfgs: list[SubnetConfig], workers: int = 1) -> list[Cost]:
        """Costs of many configs; uncached ones over `workers` processes (lowering is
        pure Python, so threads would not help). Results land in the cache."""
        todo = list(dict.fromkeys(c for c in cfgs if c not in self._cache))
        fresh: set[SubnetConfig] = set()
        if workers > 1 and len(todo) > 1:
            fresh = set(todo)
            from concurrent.futures import ProcessPoolExecutor

            t0 = time.perf_counter()
            with ProcessPoolExecutor(workers) as pool:
                n = len(todo)
                sizes = list(pool.map(_sizes, todo, [self.disabled] * n, [self.board] * n,
                                      [self.optimize] * n, [self.table] * n,
                                      chunksize=max(1, n // (4 * workers))))
            for cfg, (arena, weights, macs, steps, instr) in zip(todo, sizes, strict=True):
                f = self.fit(cfg, arena, weights, steps)
                self._cache[cfg] = Cost(arena, weights, f.flash, f.sram, macs,
                                        self.fits(f, instr), steps, instr)
            self.misses += len(todo)
            self.compute_s += time.perf_counter() - t0
        return [self._cache[c] if c in fresh else self.cost(c) for c in cfgs]

    def __len__(self) -> int:
        return len(self._cache)

    def no_fit_error(self, draws: int) -> McucError:
        """The one-line error for a budget that none of `draws` drawn configs fits,
        with the smallest RAM and flash this model has costed."""
        costs = list(self._cache.values())
        ram = min((c.ram_bytes for c in costs), default=0)
        flash = min((c.flash_bytes for c in costs), default=0)
        time_part = ""
        if self.instructions_limit is not None:
            fewest = min((c.instructions for c in costs if c.instructions is not None),
                         default=0)
            time_part = (f", fewest instructions {fewest:,} vs limit "
                         f"{self.instructions_limit:,}")
        return McucError(
            f"no config of the search space fits {self.board.name} in {draws} draws: "
            f"smallest RAM seen {ram:,} B vs limit {self.sram_limit:,} B, smallest flash "
            f"{flash:,} B vs limit {self.flash_limit:,} B{time_part} (raise the budget or "
            "add smaller choices to the space)")

    @property
    def candidates_per_s(self) -> float:
        """Uncached evaluations per second so far."""
        return self.misses / self.compute_s if self.compute_s else 0.0


def _sizes(cfg: SubnetConfig, disabled: tuple[str, ...], board: Board, optimize: str,
           table: latency.Table | None) -> tuple[int, int, int, int, int | None]:
    sched = fast_schedule(cfg, disabled, board.dsp, optimize)
    return (*schedule_cost(sched), predicted_instructions(sched, board, optimize, table))
