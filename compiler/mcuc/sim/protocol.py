"""The result lines a compiled model prints, wherever it runs (host program, firmware under
QEMU, Renode, Unicorn or a board's serial console): `MCUC_BEGIN`, `MCUC_MODEL name`
(firmware: before each model's outputs), `MCUC_OUTPUT v...`, `MCUC_STACK n`, `MCUC_CYCLES n`,
`MCUC_STEP i n` (`--profile` builds), `MCUC_STATUS n`, `MCUC_DONE`.

`cycles` and `cycles_per_step` are what the firmware's DWT counter read. On a board they are
cycles; the emulators' DWT is a model (the Unicorn engine's counts retired instructions), so
their callers rename them (mcuc.target.unicorn.run_unicorn).

Its own module so that the emulators and the firmware builder both read it without
importing each other.
"""

from __future__ import annotations

import numpy as np

from mcuc import McucError
from mcuc.text import path_line


def _bad_line(line: str) -> McucError:
    return McucError(f"the program printed a malformed result line: {path_line(line)}")


def int8_values(line: str) -> np.ndarray:
    """The int8 values after a protocol line's keyword; one error line if any value is not
    an integer in [-128, 127] (never wrapped around)."""
    try:
        vals = [int(v) for v in line.split()[1:]]
    except ValueError:
        raise _bad_line(line) from None
    if not vals or any(not -128 <= v <= 127 for v in vals):
        raise McucError(f"the program printed an output outside int8: {path_line(line)}")
    return np.array(vals, dtype=np.int8)


def int_field(line: str) -> int:
    """The integer after a protocol line's keyword."""
    parts = line.split()
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        raise _bad_line(line) from None


def step_fields(line: str) -> tuple[int, int]:
    """(step, count) of an `MCUC_STEP i n` line: two integers >= 0."""
    parts = line.split()
    try:
        step, count = int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise _bad_line(line) from None
    if len(parts) != 3 or step < 0 or count < 0:
        raise _bad_line(line)
    return step, count


def parse_protocol(text: str) -> dict:
    """The firmware protocol lines: outputs (all, in order, and by model), stack, cycles,
    per-step cycles, status, done (a malformed line or an output outside int8 is one error
    line)."""
    res: dict = {"outputs": [], "by_model": {}, "stack_bytes": None, "cycles": None,
                 "cycles_per_step": {}, "status": None, "begin": False, "done": False}
    model = ""
    for line in text.replace("\r", "").splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "MCUC_BEGIN":
            res["begin"] = True
        elif key == "MCUC_MODEL":
            if len(parts) != 2 or not parts[1].isidentifier() or not parts[1].isascii():
                raise _bad_line(line)
            model = parts[1]
            res["by_model"].setdefault(model, [])
        elif key == "MCUC_OUTPUT":
            res["outputs"].append(int8_values(line))
            res["by_model"].setdefault(model, []).append(res["outputs"][-1])
        elif key == "MCUC_STACK":
            res["stack_bytes"] = int_field(line)
        elif key == "MCUC_CYCLES":
            res["cycles"] = int_field(line)
        elif key == "MCUC_STEP":
            step, count = step_fields(line)
            res["cycles_per_step"][step] = count
        elif key == "MCUC_STATUS":
            res["status"] = int_field(line)
        elif key == "MCUC_DONE":
            res["done"] = True
    return res
