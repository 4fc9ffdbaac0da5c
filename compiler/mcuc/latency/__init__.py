"""The latency model: a schedule's retired instructions on a board, predicted per step.

Each step's features (features.py: the loop trip counts of the C kernel the board runs
for it) times a table of instructions per trip, fitted from the Unicorn engine's exact
per-step counts of random search-space ViTs (scripts/calibrate_latency.py), plus the
inference's own overhead (mcuc_run's checks and the per-step profiling markers). One
table per (core, kernel variant, --optimize): tables/<core>-<variant>-<optimize>.json.
The count is instructions, not cycles: a Cortex-M7 dual-issues some pairs and stalls on
others, so a time from it assumes a cycles-per-instruction figure (ms_of says which).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mcuc import McucError
from mcuc.boards import Board
from mcuc.latency.features import Features, Variant, step_features
from mcuc.schedule.schedule import Schedule

TABLES = Path(__file__).resolve().parent / "tables"
# Cycles per instruction assumed where a time becomes an instruction budget: 1.0, i.e.
# one instruction per clock cycle. Not measured: a Cortex-M7 dual-issues some pairs
# (below 1) and waits on flash and loads (above 1); no board here has a DWT figure yet.
ASSUMED_CPI = 1.0
RUN_KEYS = ("run_call", "run_step")   # the inference's overhead outside the steps


@dataclass(frozen=True)
class Table:
    """Instructions per feature unit for one (core, variant, optimize)."""
    key: str
    coef: dict[str, float]
    meta: dict

    def apply(self, f: Features) -> float:
        return sum(self.coef.get(name, 0.0) * v for name, v in f.items())

    def missing(self, f: Features) -> list[str]:
        """Features with a count but no fitted coefficient (a loop no calibration ran)."""
        return sorted(n for n, v in f.items() if v and n not in self.coef)


def table_key(board: Board, optimize: str = "size") -> str:
    """The table a build of `board` (its kernel variant already chosen) uses."""
    return f"{board.core}-{'dsp' if board.dsp else 'portable'}-{optimize}"


def variant_of(board: Board, optimize: str = "size", exact: bool = True) -> Variant:
    return Variant(dsp=board.dsp, wide=optimize == "speed", exact=exact)


def load_table(key: str, directory: Path = TABLES) -> Table:
    """The fitted table `key`, or a one-line error naming the tables there are."""
    path = directory / f"{key}.json"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in directory.glob("*.json"))) or "none"
        raise McucError(f"no latency table for {key} (have: {have}); "
                        "scripts/calibrate_latency.py makes one")
    data = json.loads(path.read_text())
    return Table(key, {k: float(v) for k, v in data["coef"].items()}, data.get("meta", {}))


def has_table(board: Board, optimize: str = "size") -> bool:
    return (TABLES / f"{table_key(board, optimize)}.json").is_file()


def schedule_features(schedule: Schedule, v: Variant) -> list[Features]:
    """One feature dict per step."""
    return [step_features(st.kernel, st.params, st.macs, schedule.buffers[st.output].size, v)
            for st in schedule.steps]


def run_features(n_steps: int) -> Features:
    return {"run_call": 1.0, "run_step": float(n_steps)}


@dataclass(frozen=True)
class Prediction:
    instructions: int              # the whole inference
    per_step: list[int]
    missing: list[str]             # features the table has no coefficient for

    def to_dict(self) -> dict:
        return {"instructions": self.instructions, "per_step": self.per_step,
                "missing_features": self.missing}


def predict(schedule: Schedule, board: Board, optimize: str = "size", exact: bool = True,
            table: Table | None = None) -> Prediction:
    """Predicted instructions of one inference of `schedule` on `board`.

    `exact`: the params hold real quantization (a build); False for the search's fast
    schedules, whose dummy quantization cannot decide the data-dependent loops (see
    features.linear_plan), which are then assumed."""
    t = table or load_table(table_key(board, optimize))
    feats = schedule_features(schedule, variant_of(board, optimize, exact))
    per = [max(0, round(t.apply(f))) for f in feats]
    missing = sorted({m for f in feats for m in t.missing(f)})
    total = sum(per) + round(t.apply(run_features(len(per))))
    return Prediction(int(total), per, missing)


def ms_of(instructions: int, clock_hz: int, cpi: float = ASSUMED_CPI) -> float:
    """Milliseconds at `clock_hz` if each instruction takes `cpi` cycles."""
    return instructions * cpi / clock_hz * 1000.0


def instruction_budget(ms: float, clock_hz: int, cpi: float = ASSUMED_CPI) -> int:
    """Instructions that fit `ms` milliseconds at `clock_hz` and `cpi` cycles each."""
    return math.floor(ms / 1000.0 * clock_hz / cpi)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|us)\s*$")
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KkMmGg]?)\s*$")


def parse_ms(text: str) -> float:
    """'100ms', '0.1s', '500us' -> milliseconds (a unit is required: no guessing)."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise McucError(f"cannot read {text!r} as a time budget (examples: 100ms, 0.2s)")
    return float(m.group(1)) * {"ms": 1.0, "s": 1000.0, "us": 0.001}[m.group(2)]


def parse_count(text: str) -> int:
    """'25000000', '25M', '300K' -> instructions (K, M, G: powers of 1000)."""
    m = _COUNT.match(str(text))
    n = float(m.group(1)) * 1000 ** " kmg".index(m.group(2).lower() or " ") if m else 0
    if n < 1:
        raise McucError(f"cannot read {text!r} as an instruction count (examples: 25M, "
                        "21600000)")
    return int(n)
