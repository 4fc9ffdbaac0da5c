"""`mcuc run --profile`: one inference's cost per step, as a table.

Two units, never mixed: an emulator gives `instructions` (the Unicorn engine's exact count of
retired instructions per step, from the firmware's mcuc_prof_marker; it has no timing
model, so its DWT is not shown), a board gives `cycles` (its DWT cycle counter, printed by a
`mcuc build --profile` firmware as MCUC_STEP lines over the serial console). Each step's
share is of the whole inference (mcuc_run: copying the input in and the output out, and
the calls between steps, are the `outside steps` row).

Step names, kernels and MACs come from the build's report.json, which is not covered by
mcuc.json's digests: it is read as untrusted (types checked, names shown escaped), and a
report that does not match the measured steps is left out with a note.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mcuc import McucError
from mcuc.text import cut, one_line

UNITS = ("instructions", "cycles")
MAX_REPORT_BYTES = 16 << 20
NAME_CHARS = 48


@dataclass
class StepCost:
    step: int
    name: str | None
    kernel: str | None
    macs: int | None
    count: int


@dataclass
class Profile:
    """Per-step counts of one inference; `unit` says what was counted."""
    unit: str                  # "instructions" (emulator) or "cycles" (board DWT)
    engine: str
    total: int | None          # the whole inference, same unit
    steps: list[StepCost]
    notes: list[str] = field(default_factory=list)

    @property
    def steps_total(self) -> int:
        return sum(s.count for s in self.steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = [{"step": s.step, "name": s.name, "kernel": s.kernel, "macs": s.macs,
                       self.unit: s.count} for s in self.steps]
        d[f"total_{self.unit}"] = d.pop("total")
        return d


def _layers(build_dir: Path) -> list[dict] | None:
    """report.json's `layers` if it is a list of {name: str, kernel: str, macs: int >= 0}."""
    path = build_dir / "report.json"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_REPORT_BYTES:
            return None
        layers = json.loads(path.read_text(encoding="utf-8")).get("layers")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return None
    ok = isinstance(layers, list) and all(
        isinstance(r, dict) and isinstance(r.get("name"), str)
        and isinstance(r.get("kernel"), str) and isinstance(r.get("macs"), int)
        and not isinstance(r.get("macs"), bool) and r["macs"] >= 0 for r in layers)
    return layers if ok else None


def make_profile(build_dir: Path, unit: str, engine: str, counts: dict[int, int],
                 total: int | None, n_steps: int | None = None) -> Profile:
    """A Profile from per-step `counts` ({step: count}) in `unit`. `n_steps`, when known,
    must match: every step of the model measured once."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    if not counts:
        raise McucError(f"{engine} gave no per-step {unit}")
    if n_steps is not None and sorted(counts) != list(range(n_steps)):
        raise McucError(f"{engine} gave {unit} for {len(counts)} steps; the model has "
                        f"{n_steps}")
    layers = _layers(build_dir)
    notes = []
    if layers is not None and len(layers) != len(counts):
        layers = None
        notes.append("report.json lists another number of steps: names left out")
    elif layers is None:
        notes.append("no readable report.json: step names left out")
    rows = []
    for i in sorted(counts):
        r = layers[i] if layers is not None else None
        rows.append(StepCost(i, cut(r["name"], NAME_CHARS) if r else None,
                             cut(r["kernel"], 12) if r else None,
                             r["macs"] if r else None, int(counts[i])))
    return Profile(unit, engine, total, rows, notes)


def _share(n: int, total: int | None) -> str:
    return f"{100 * n / total:6.2f}%" if total else "      -"


def format_profile(p: Profile) -> str:
    """The table `mcuc run --profile` prints."""
    what = ("instructions (emulator: exact retired instructions, not cycles)"
            if p.unit == "instructions" else "cycles (the board's DWT cycle counter)")
    w = max([len(s.name or "-") for s in p.steps] + [4])
    col = "instructions" if p.unit == "instructions" else "cycles"
    per = "instr/MAC" if p.unit == "instructions" else "cycles/MAC"
    lines = [f"per-step {what}, one inference, engine {one_line(p.engine, 60)}", "",
             f"{'#':>3}  {'step':<{w}}  {'kernel':<12} {'MACs':>11} {col:>13} {'share':>7}"
             f" {per:>10}"]
    for s in p.steps:
        macs = f"{s.macs:>11,}" if s.macs is not None else f"{'-':>11}"
        rate = f"{s.count / s.macs:>10.2f}" if s.macs else f"{'':>10}"
        lines.append(f"{s.step:>3}  {s.name or '-':<{w}}  {s.kernel or '-':<12} {macs} "
                     f"{s.count:>13,} {_share(s.count, p.total)} {rate}")
    summed = p.steps_total
    macs = sum(s.macs or 0 for s in p.steps)
    if p.total is not None and p.total >= summed:
        lines.append(f"{'':>3}  {'(outside steps)':<{w}}  {'':<12} {'':>11} "
                     f"{p.total - summed:>13,} {_share(p.total - summed, p.total)}")
    total = p.total if p.total is not None else summed
    rate = f"{total / macs:>10.2f}" if macs else f"{'':>10}"
    lines.append(f"{'':>3}  {'total':<{w}}  {'':<12} {macs:>11,} {total:>13,} "
                 f"{_share(total, p.total)} {rate}")
    lines += [f"note: {n}" for n in p.notes]
    return "\n".join(line.rstrip() for line in lines)
