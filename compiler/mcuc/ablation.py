"""What each memory technique saves: the same calibrated graph planned with techniques off.

Calibration is done once; lowering and planning are milliseconds, so a build can afford
to report the naive arena (every technique disabled) and each technique's saving (the
arena with that one technique off, minus the arena with all on).
"""

from __future__ import annotations

from mcuc import memory
from mcuc.quant.calibrate import QGraph
from mcuc.schedule.lower import lower
from mcuc.schedule.passes import TECHNIQUES


def arena_with(qg: QGraph, disabled: tuple[str, ...], strategy: str = "best") -> int:
    return memory.plan(lower(qg, disabled).liveness(), strategy).arena_bytes


def ablation(qg: QGraph, arena_all: int, strategy: str = "best") -> dict:
    naive = arena_with(qg, TECHNIQUES, strategy)
    savings = {t: arena_with(qg, (t,), strategy) - arena_all for t in TECHNIQUES}
    return {"naive_arena_bytes": naive, "technique_savings_bytes": savings,
            "saving_vs_naive": round(1 - arena_all / max(1, naive), 4)}
