"""What runs a build: one registry of engines for `mcuc run` and `mcuc validate`.

An engine takes a checked build (buildmeta.Build) and int8 inputs [N, size] and returns
the outputs, plus what it measured: an emulator counts retired instructions (exact), a
board reports its DWT cycles; never one named as the other. Engines:

- host: the host program, once per input.
- unicorn: the firmware ELF in the Unicorn engine (as many inputs per launch as its
  `<name>_samples` holds, or a semihosting file in chunks); counts instructions.
- qemu: a semihosting firmware in QEMU; with `count`, the same ELF is counted again in
  the Unicorn engine (QEMU counts nothing).
- renode: the firmware in Renode (`renode` on PATH), one launch per chunk.
- serial:PORT: a physical board (mcuc.console): patched, flashed and read back; its
  `mcuc build --profile` firmware prints cycles per step.

`resolve` is the one rule for which engine may run which build; `run` splits the inputs
into launches. Adding an engine is one entry in ENGINES.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.boards import Board, load_board
from mcuc.buildmeta import Build
from mcuc.text import one_line

# Inputs per launch where the firmware reads them from a file (semihosting): one launch
# could take them all, but a chunk at a time drives a progress bar.
SEMIHOST_CHUNK = 50


@dataclass
class EngineRun:
    """Outputs of every input, and what the last launch measured (one inference)."""
    outputs: list[np.ndarray]
    engine: str                                   # "unicorn", "serial:/dev/ttyACM0", ...
    instructions: int | None = None               # emulator: exact retired instructions
    instructions_per_step: dict[int, int] = field(default_factory=dict)
    cycles: int | None = None                     # board: DWT cycles
    cycles_per_step: dict[int, int] = field(default_factory=dict)
    per_launch: int = 1


# (build, board, rows, label, count, timeout: the host program's, None = its default)
Launch = Callable[[Build, Board, np.ndarray, str, bool, float | None], EngineRun]


@dataclass(frozen=True)
class Engine:
    name: str
    launch: Launch
    counts: str | None        # what it measures: "instructions", "cycles" or None
    mcu: bool = True          # runs firmware (else the host program)


def _host(b: Build, board: Board, rows: np.ndarray, label: str, count: bool,
           timeout: float | None) -> EngineRun:
    from mcuc.sim.host import run_host

    kw = {} if timeout is None else {"timeout": timeout}
    return EngineRun([run_host(b.exe, x, **kw) for x in rows], label)


def _unicorn_run(b: Build, board: Board, rows: np.ndarray, label: str) -> EngineRun:
    from mcuc.target.unicorn import run_unicorn, unicorn_available

    if not unicorn_available():
        raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not available")
    res = run_unicorn(b.elf, rows, semihosted=board.semihosting, chip=board.chip)
    return EngineRun(res["outputs"], label, res["instructions"],
                     res["instructions_per_step"])


def _unicorn(b: Build, board: Board, rows: np.ndarray, label: str, count: bool,
           timeout: float | None) -> EngineRun:
    return _unicorn_run(b, board, rows, label)


def _qemu(b: Build, board: Board, rows: np.ndarray, label: str, count: bool,
           timeout: float | None) -> EngineRun:
    from mcuc.sim.qemu import run_qemu_full
    from mcuc.target.unicorn import unicorn_available

    outs = run_qemu_full(b.elf, rows, machine=board.qemu.get("machine", "mps2-an500")).outputs
    if not count or not unicorn_available():
        return EngineRun(outs, label)
    counted = _unicorn_run(b, board, rows, label)   # the same ELF, counted
    counted.outputs = outs
    return counted


def _renode(b: Build, board: Board, rows: np.ndarray, label: str, count: bool,
           timeout: float | None) -> EngineRun:
    from mcuc.sim import protocol
    from mcuc.sim.renode import require_renode, run_renode
    from mcuc.target.elf import ELF_NAME, patch_samples

    require_renode()
    with tempfile.TemporaryDirectory(prefix="mcuc-renode-") as tmp:
        patched = patch_samples(b.elf, rows, Path(tmp) / ELF_NAME)
        res = protocol.parse_protocol(run_renode(patched, board))
    if res["status"] != 0 or not res["done"]:
        raise McucError(f"firmware in Renode reported MCUC_STATUS {res['status']}")
    return EngineRun(res["outputs"], label)


def _serial(b: Build, board: Board, rows: np.ndarray, label: str, count: bool,
           timeout: float | None) -> EngineRun:
    from mcuc import console

    res = console.run_board(b, rows, label[len(console.PREFIX):])
    return EngineRun(res["outputs"], label, cycles=res["cycles"],
                     cycles_per_step=res["cycles_per_step"] or {})


ENGINES: dict[str, Engine] = {
    "host": Engine("host", _host, None, mcu=False),
    "unicorn": Engine("unicorn", _unicorn, "instructions"),
    "qemu": Engine("qemu", _qemu, "instructions"),
    "renode": Engine("renode", _renode, None),
    "serial": Engine("serial", _serial, "cycles"),
}


def resolve(b: Build, engine: str | None) -> tuple[Engine, str]:
    """(the engine, its label) that runs build `b`: the host program for host builds;
    for MCU builds `engine` (default: the board's first emulator) if the board lists
    it, or `serial:PORT`. One McucError line otherwise."""
    from mcuc.console import port_of

    board = load_board(b.board)
    if not board.is_mcu:
        if engine not in (None, "host"):
            raise McucError(f"a build for board {board.name} runs on the host, not "
                            f"{one_line(engine, 60)}")
        return ENGINES["host"], "host"
    if port_of(engine) is not None:
        if board.semihosting:
            raise McucError(f"board {board.name} has no serial console to read (the serial "
                            "engine runs physical boards)")
        return ENGINES["serial"], engine
    engine = engine or board.default_engine
    if engine is None:
        raise McucError(f"board '{board.name}' has no emulator here; flash it with "
                        "`mcuc flash` and read its console (--engine serial:PORT)")
    if engine not in board.emulators or engine not in ENGINES:
        raise McucError(f"engine '{one_line(engine, 60)}' does not run board '{board.name}' "
                        f"(it has: {', '.join(board.emulators) or 'none'}, serial:PORT)")
    return ENGINES[engine], engine


def per_launch(b: Build, board: Board, engine: Engine, size: int) -> int:
    """Inputs one launch takes: the firmware's <name>_samples array (its --samples), a
    semihosting file's chunk, or one for the host program."""
    if not engine.mcu:
        return 1
    if board.semihosting:
        return SEMIHOST_CHUNK
    from mcuc.target.elf import symbol

    _, nbytes = symbol(b.elf, f"{b.name}_samples")
    return max(1, nbytes // size)


def run(b: Build, xs_q: np.ndarray, engine: str | None = None, count: bool = True,
        on_launch: Callable[[int], None] | None = None,
        timeout: float | None = None) -> EngineRun:
    """Build `b` on int8 inputs [N, size], as many per launch as the engine takes;
    `count`: also what the engine measures (QEMU builds: one more run, in Unicorn).
    `on_launch(n)` is told after each launch of n inputs (a progress bar); `timeout`
    bounds the host program."""
    eng, label = resolve(b, engine)
    rows = np.ascontiguousarray(xs_q, dtype=np.int8).reshape(len(xs_q), -1)
    board = load_board(b.board)
    chunk = per_launch(b, board, eng, rows.shape[1])
    outs: list[np.ndarray] = []
    last = EngineRun([], label)
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        last = eng.launch(b, board, part, label, count, timeout)
        if len(last.outputs) != len(part):
            raise McucError(f"the firmware printed {len(last.outputs)} outputs for "
                            f"{len(part)} inputs")
        outs.extend(last.outputs)
        if on_launch is not None:
            on_launch(len(part))
    last.outputs, last.per_launch = outs, chunk
    return last
