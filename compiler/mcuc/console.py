"""The serial engine (`--engine serial:/dev/ttyACM0`): a real board, read over its console.

How inputs reach the board: the firmware has no input channel (its UART is TX only, and
the ST-LINK virtual COM port is the only link most users have); at every reset it runs the
inputs baked into flash (<name>_samples, `mcuc build --samples N`) and prints the protocol
(mcuc.sim.protocol). So one run here is what the emulators do, on the board: write the
inputs over <name>_samples of a copy of the ELF (patch_samples), open the port,
program the copy with the board's flasher (openocd `program ... verify reset exit`: the
reset starts it) and read the console until MCUC_DONE. More inputs than <name>_samples holds
go in chunks, one flash each (a larger `--samples` means fewer).

Everything that arrives over the port is untrusted: bytes before MCUC_BEGIN (boot noise,
an earlier run, a glitch at reset, even on MCUC_BEGIN's own line) are ignored; lines are
bounded in length and number; a port that goes quiet is a one-line timeout error; a new
MCUC_BEGIN (the board reset again) starts the reading over.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.boards import Board, load_board
from mcuc.buildmeta import Build
from mcuc.sim.protocol import parse_protocol
from mcuc.text import one_line, path_line

PREFIX = "serial:"
BAUD = 115200            # every board's console: 115200 8N1 (boards/*/system.c)
READ_SLICE_S = 0.05      # one read's wait; the deadline is checked between reads
BOOT_S = 30.0            # reset, clock init and printing, plus the flasher's own time
PER_INPUT_S = 10.0       # one inference on a slow core, generously
EXTRA_LINES = 8192       # besides one MCUC_OUTPUT per input: steps, stack, cycles, status...
MAX_NOISE_BYTES = 1 << 20   # bytes before MCUC_BEGIN that are ignored, at most

# program(board, elf): flash elf onto the board and reset it (flash.flash_elf by default).
Programmer = Callable[[Board, Path], None]


def port_of(engine: str | None) -> str | None:
    """The port of a `serial:PORT` engine (None for any other engine); one error line for a
    bad port name."""
    if engine is None or not engine.startswith(PREFIX):
        return None
    port = engine[len(PREFIX):]
    if not port or len(port) > 255 or any(ord(c) < 0x20 or c == "\x7f" for c in port):
        raise McucError(f"bad serial port {one_line(port, 60)!s}: give e.g. "
                        "--engine serial:/dev/ttyACM0")
    return port


def _open(port: str):
    from mcuc.optional import require

    require("serial", "board", "the serial engine (--engine serial:PORT)")
    import serial

    try:
        return serial.Serial(port, baudrate=BAUD, timeout=READ_SLICE_S)
    except (serial.SerialException, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise McucError(f"cannot open serial port {path_line(port)}: {one_line(msg, 160)}"
                        ) from None


class _Lines:
    """Bytes in, protocol lines out: from the last MCUC_BEGIN to MCUC_DONE."""

    def __init__(self, port: str, max_line: int, max_lines: int):
        self.port, self.max_line, self.max_lines = port, max_line, max_lines
        self.partial = bytearray()
        self.lines: list[str] = []
        self.begun = self.done = False
        self.noise = 0

    def feed(self, data: bytes) -> None:
        *complete, rest = (bytes(self.partial) + data).split(b"\n")
        for raw in complete:
            self._line(raw)
            if self.done:
                return
        if len(rest) > self.max_line:
            if self.begun:
                raise McucError(f"the board on {path_line(self.port)} printed a line longer "
                                f"than {self.max_line:,} bytes; not mcuc's firmware output")
            self.noise += len(rest)
            rest = rest[-len(b"MCUC_BEGIN\r"):]   # keep what could end in MCUC_BEGIN
        self.partial = bytearray(rest)
        if not self.begun and self.noise > MAX_NOISE_BYTES:
            raise McucError(f"{self.noise:,} bytes on {path_line(self.port)} and no "
                            "MCUC_BEGIN: is it the board's console (115200 8N1)?")

    def _line(self, raw: bytes) -> None:
        text = raw.decode("ascii", errors="replace").strip()
        if text.endswith("MCUC_BEGIN"):   # noise at reset may share its line
            self.begun, self.lines = True, ["MCUC_BEGIN"]
            return
        if not self.begun:
            self.noise += len(raw) + 1
            return
        if text.startswith("MCUC_FAULT"):
            raise McucError(f"the board on {path_line(self.port)} faulted (MCUC_FAULT) "
                            f"after {len(self.lines) - 1} result lines")
        self.lines.append(text)
        if len(self.lines) > self.max_lines:
            raise McucError(f"the board on {path_line(self.port)} printed more than "
                            f"{self.max_lines:,} lines without MCUC_DONE")
        if text == "MCUC_DONE":
            self.done = True


def read_protocol(ser, port: str, timeout: float, max_line: int, max_lines: int,
                  failed: Callable[[], McucError | None] = lambda: None) -> str:
    """The protocol text (MCUC_BEGIN .. MCUC_DONE) read from an open port `ser` within
    `timeout` seconds; `failed()` returns the flasher's error, if it has one, to stop
    waiting early."""
    lines = _Lines(port, max_line, max_lines)
    deadline = time.monotonic() + timeout
    while not lines.done:
        err = failed()
        if err is not None:
            raise err
        if time.monotonic() > deadline:
            if not lines.begun:
                raise McucError(f"no MCUC_BEGIN on {path_line(port)} within {timeout:.0f} s "
                                f"({lines.noise:,} other bytes): is the board connected and "
                                "this its console?")
            raise McucError(f"the board on {path_line(port)} stopped: no MCUC_DONE within "
                            f"{timeout:.0f} s ({len(lines.lines)} lines after MCUC_BEGIN)")
        try:
            data = ser.read(max(1, min(ser.in_waiting, 1 << 16)))
        except OSError as e:
            raise McucError(f"reading {path_line(port)} failed: {one_line(str(e), 120)}"
                            ) from None
        if data:
            lines.feed(data)
    return "\n".join(lines.lines) + "\n"


class _Background(threading.Thread):
    """Runs the flasher while the port is read (the board prints as soon as it resets)."""

    def __init__(self, fn: Callable[[], None]):
        super().__init__(daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except McucError as e:
            self.error = e
        except Exception as e:  # any flasher failure becomes one line
            self.error = McucError(f"programming the board failed: {one_line(str(e), 160)}")


def run_board(b: Build, inputs: np.ndarray, port: str, program: Programmer | None = None,
              timeout: float | None = None) -> dict:
    """Run the build's firmware on the board at `port` on int8 `inputs` [N, size] (at most
    what its <name>_samples holds): patch, program and reset (`program`, default
    flash.flash_elf), read the console. Returns parse_protocol's dict (outputs, stack,
    `cycles` and `cycles_per_step`: the board's DWT) after checking status and count."""
    from mcuc.target.elf import ELF_NAME, patch_samples

    board = load_board(b.board)
    if board.semihosting or not board.is_mcu:
        raise McucError(f"board {board.name} has no serial console to read (the serial engine "
                        "runs physical boards)")
    if program is None:
        from mcuc.flash import flash_elf as program
    rows = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
    timeout = BOOT_S + PER_INPUT_S * len(rows) if timeout is None else timeout
    max_line = 64 + 5 * math.prod(b.output_shape)
    with tempfile.TemporaryDirectory(prefix="mcuc-serial-") as tmp:
        elf = patch_samples(b.elf, rows, Path(tmp) / ELF_NAME)
        ser = _open(port)
        try:
            ser.reset_input_buffer()          # what an earlier run left is not this one's
            job = _Background(lambda: program(board, elf))
            job.start()
            text = read_protocol(ser, port, timeout, max_line, len(rows) + EXTRA_LINES,
                                 lambda: job.error)
            job.join(timeout=BOOT_S)
            if job.error is not None:
                raise job.error
        finally:
            ser.close()
    res = parse_protocol(text)
    if res["status"] is None:
        raise McucError(f"the board on {path_line(port)} printed no MCUC_STATUS")
    if res["status"] != 0:
        raise McucError(f"the board on {path_line(port)} reported MCUC_STATUS {res['status']}")
    if len(res["outputs"]) != len(rows):
        raise McucError(f"the board on {path_line(port)} printed {len(res['outputs'])} "
                        f"outputs for {len(rows)} inputs")
    return res
