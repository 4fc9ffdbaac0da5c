"""The serial engine and per-step profiling.

The serial engine reads a real pseudo-terminal (os.openpty; pyserial opens its slave as it
would /dev/ttyACM0). What a board would print there is the firmware's own console output:
the patched ELF runs in the Unicorn engine and its UART bytes are written into the pty's
master at 115200 baud, in chunks split anywhere (mid-line included), after noise a real
port shows (bytes from an earlier, interrupted run, a glitch byte at reset, an overlong
garbage line). Only openocd (programming the board) is replaced: by that emulator run.

Profiling: a `--profile` firmware's MCUC_STEP lines are the DWT's window around each step;
in the Unicorn engine (whose DWT counts retired instructions) each equals the engine's own
count of the step plus the hook's 9 instructions, so the firmware times exactly the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
from mcuc.buildmeta import load_build
from mcuc.cli import main
from mcuc.pipeline import build
from mcuc.quant.qparams import prepare_input
from mcuc.target.unicorn import run_unicorn, unicorn_available

from helpers import cli_error_line

serial = pytest.importorskip("serial", reason="pyserial (pip install 'mcuc[board]')")
if not unicorn_available():
    pytest.skip("mcuc.sim.unicorn_m7 not available", allow_module_level=True)

BYTES_PER_S = 11520            # 115200 baud, 8N1
HOOK_INSTRUCTIONS = 9          # mcuc_prof_step_begin/end's own, inside the DWT window
# What a port may hold before the run: boot noise, a line of garbage far longer than any
# protocol line, an earlier run cut off mid-line by the reset, and a glitch byte at reset on
# the new MCUC_BEGIN's line.
NOISE = (b"\x00\xf0boot\r\n" + b"\xaa" * 9000
         + b"\r\nMCUC_BEGIN\r\nMCUC_OUTPUT 5 5 5 5 5 5 5 5 5 5\r\nMCUC_OUTP\xff")


class PtyBoard:
    """A pseudo-terminal in place of the board's USB serial port: `port` is its slave;
    `program(board, elf)` (flash.flash_elf's signature) runs elf in the Unicorn engine and
    writes its UART output, after `noise`, into the master at the console's pace."""

    def __init__(self, noise: bytes = NOISE, seed: int = 0):
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.noise, self.rng = noise, np.random.default_rng(seed)
        self.programmed = 0

    def program(self, board, elf: Path) -> None:
        from mcuc.sim.unicorn_m7 import run_elf

        out = run_elf(str(elf), chip=board.chip).stdout.encode("ascii")
        self.programmed += 1
        self.write(self.noise, fast=True)
        self.write(out)

    def write(self, data: bytes, fast: bool = False) -> None:
        i = 0
        while i < len(data):
            n = len(data) - i if fast else int(self.rng.integers(1, 40))
            i += os.write(self.master, data[i:i + n])
            if not fast:
                time.sleep(n / BYTES_PER_S)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_board():
    b = PtyBoard()
    yield b
    b.close()


@pytest.fixture(scope="module")
def f746_profile(tmp_path_factory) -> Path:
    """The default model for stm32f746 with --profile, 2 inputs per flash."""
    out = tmp_path_factory.mktemp("console") / "f746p"
    build(None, "stm32f746", "fashion-mnist", out, samples=2, calib_images=16, profile=True)
    return out


def _images(out: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    from mcuc.datasets import load_fashion_mnist

    b = load_build(out)
    x, _ = load_fashion_mnist("test", limit=n)
    return x, np.stack([prepare_input(v, b.input_shape, b.input_qp) for v in x])


def _reference(out: Path, xs_q: np.ndarray) -> np.ndarray:
    from mcuc.validation import rebuild_reference, run_reference

    c, _ = rebuild_reference(load_build(out))
    return run_reference(c, xs_q)


def test_pty_board_equals_reference_and_prints_steps(f746_profile, pty_board) -> None:
    from mcuc.console import run_board

    b = load_build(f746_profile)
    _, xs_q = _images(f746_profile, 2)
    t0 = time.monotonic()
    res = run_board(b, xs_q, pty_board.port, program=pty_board.program, timeout=120)
    assert pty_board.programmed == 1
    np.testing.assert_array_equal(np.stack(res["outputs"]), _reference(f746_profile, xs_q))
    assert res["status"] == 0 and res["stack_bytes"] > 0
    # The MCUC_STEP lines came through the port whole: the same as the emulator's own DWT.
    emu = run_unicorn(b.elf, xs_q, chip="stm32f746")
    assert res["cycles_per_step"] == emu["dwt_instructions_per_step"]
    assert res["cycles"] == emu["dwt_instructions"]
    assert time.monotonic() - t0 < 60


def test_profile_firmware_times_exactly_each_step(f746_profile) -> None:
    b = load_build(f746_profile)
    _, xs_q = _images(f746_profile, 1)   # one input: first inference == last inference
    r = run_unicorn(b.elf, xs_q, chip="stm32f746")
    ins, dwt = r["instructions_per_step"], r["dwt_instructions_per_step"]
    n = json.loads((f746_profile / "report.json").read_text())["steps"]
    assert sorted(ins) == sorted(dwt) == list(range(n))
    assert {dwt[i] - ins[i] for i in ins} == {HOOK_INSTRUCTIONS}
    report = json.loads((f746_profile / "report.json").read_text())
    assert report["profile"] is True and "cycles" not in report
    main_c = (f746_profile / "main.c").read_text()
    assert "MCUC_STEP " in main_c and "mcuc_prof_step_begin" in main_c


def test_validate_over_serial_in_chunks(f746_profile, pty_board, monkeypatch, capsys) -> None:
    import mcuc.flash

    monkeypatch.setattr(mcuc.flash, "flash_elf", pty_board.program)   # openocd's place
    assert main(["validate", str(f746_profile), "--data", "fashion-mnist:3",
                 "--engine", f"serial:{pty_board.port}", "--json"]) == 0
    v = json.loads(capsys.readouterr().out)
    assert pty_board.programmed == 2          # 3 inputs, 2 per flash
    assert v["bit_exact"] and v["images"] == 3 and v["per_launch"] == 2
    assert v["engine"] == f"serial:{pty_board.port}"


def test_run_profile_tables_name_their_unit(f746_profile, pty_board, monkeypatch, tmp_path,
                                            capsys) -> None:
    import mcuc.flash

    x, xs_q = _images(f746_profile, 1)
    np.save(tmp_path / "x.npy", x[0])
    # Emulator: instructions, exactly the engine's per-step counts.
    assert main(["run", str(f746_profile), "--input", str(tmp_path / "x.npy"), "--profile",
                 "--json"]) == 0
    emu = json.loads(capsys.readouterr().out)
    p = emu["profile"]
    assert p["unit"] == "instructions" and "total_instructions" in p
    assert all("instructions" in s and "cycles" not in s for s in p["steps"])
    counted = run_unicorn(load_build(f746_profile).elf, xs_q, chip="stm32f746")
    assert [s["instructions"] for s in p["steps"]] == [
        counted["instructions_per_step"][i] for i in range(len(p["steps"]))]
    assert p["total_instructions"] == counted["instructions"] == emu["instructions"]
    assert main(["run", str(f746_profile), "--input", str(tmp_path / "x.npy"),
                 "--profile"]) == 0
    text = capsys.readouterr().out
    assert "per-step instructions (emulator" in text and "instr/MAC" in text
    assert "cycles/MAC" not in text and "DWT" not in text
    assert "patch_embed" in text and "100.00%" in text
    # Board (over the pty): cycles, the firmware's MCUC_STEP lines.
    monkeypatch.setattr(mcuc.flash, "flash_elf", pty_board.program)
    argv = ["run", str(f746_profile), "--input", str(tmp_path / "x.npy"), "--profile",
            "--engine", f"serial:{pty_board.port}"]
    assert main(argv + ["--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["output"] == emu["output"] and board["instructions"] is None
    q = board["profile"]
    assert q["unit"] == "cycles" and q["total_cycles"] == board["cycles"]
    assert [s["cycles"] for s in q["steps"]] == [
        counted["dwt_instructions_per_step"][i] for i in range(len(q["steps"]))]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cycles (the board's DWT" in text and "instructions" not in text


def test_run_profile_refusals(f746_profile, tmp_path, capsys) -> None:
    x, _ = _images(f746_profile, 1)
    np.save(tmp_path / "x.npy", x[0])
    # A build without --profile prints no MCUC_STEP lines: refused before any flashing.
    plain = tmp_path / "plain"
    shutil.copytree(f746_profile, plain)
    meta = json.loads((plain / "mcuc.json").read_text())
    del meta["profile"]
    (plain / "mcuc.json").write_text(json.dumps(meta))
    err = cli_error_line(capsys, ["run", str(plain), "--input", str(tmp_path / "x.npy"),
                                  "--profile", "--engine", "serial:/dev/null-port"])
    assert "rebuild with --profile" in err
    err = cli_error_line(capsys, ["build", "--board", "qemu-m7", "--profile", "--out",
                                  str(tmp_path / "q")])
    assert "cycle counter" in err
    err = cli_error_line(capsys, ["build", "--board", "host", "--profile", "--out",
                                  str(tmp_path / "h")])
    assert "MCU boards" in err
    err = cli_error_line(capsys, ["run", str(f746_profile), "--input", str(tmp_path / "x.npy"),
                                  "--engine", "serial:/nonexistent/tty"])
    assert "cannot open serial port /nonexistent/tty" in err
    err = cli_error_line(capsys, ["validate", str(f746_profile), "--engine", "serial:",
                                  "--data", "fashion-mnist:1"])
    assert "bad serial port" in err


def _feeder(board: PtyBoard, data: bytes):
    """A programmer that writes `data` (not a firmware's run) into the pty."""
    def program(_board, _elf):
        board.write(data)
    return program


@pytest.mark.parametrize("data, match", [
    (b"", "no MCUC_BEGIN on .* within 1 s"),
    (b"noise\r\n" * 50, r"no MCUC_BEGIN on .* within 1 s \(350 other bytes\)"),
    (b"MCUC_BEGIN\r\nMCUC_OUTPUT 1 2 3 4 5 6 7 8 9 10\r\n", "stopped: no MCUC_DONE within 1 s"),
    (b"MCUC_BEGIN\r\nMCUC_OUTPUT " + b"1 " * 400, "printed a line longer than 114 bytes"),
    (b"MCUC_BEGIN\r\nMCUC_FAULT\r\n", r"faulted \(MCUC_FAULT\)"),
    (b"MCUC_BEGIN\r\nMCUC_OUTPUT 1 2 3\r\nMCUC_STATUS 0\r\nMCUC_DONE\r\n",
     "printed 1 outputs for 2 inputs"),
    (b"MCUC_BEGIN\r\nMCUC_OUTPUT 300\r\nMCUC_STATUS 0\r\nMCUC_DONE\r\n", "outside int8"),
    (b"MCUC_BEGIN\r\nMCUC_STATUS 3\r\nMCUC_DONE\r\n", "reported MCUC_STATUS 3"),
])
def test_serial_reader_refuses_in_one_line(f746_profile, pty_board, data, match) -> None:
    from mcuc.console import run_board

    b = load_build(f746_profile)
    _, xs_q = _images(f746_profile, 2)
    t0 = time.monotonic()
    with pytest.raises(McucError, match=match) as e:
        run_board(b, xs_q, pty_board.port, program=_feeder(pty_board, data), timeout=1.0)
    assert "\n" not in str(e.value)
    assert time.monotonic() - t0 < 5


def test_flasher_failure_stops_the_wait(f746_profile, pty_board) -> None:
    from mcuc.console import run_board

    def broken(_board, _elf):
        raise McucError("openocd failed (exit 1): Error: open failed")

    t0 = time.monotonic()
    with pytest.raises(McucError, match="openocd failed"):
        run_board(load_build(f746_profile), _images(f746_profile, 1)[1], pty_board.port,
                  program=broken, timeout=30)
    assert time.monotonic() - t0 < 5


def test_reader_line_splitting_is_chunk_independent() -> None:
    """The same bytes cut at every place give the same lines."""
    from mcuc.console import _Lines

    text = NOISE + b"MCUC_BEGIN\r\nMCUC_OUTPUT -1 2\r\nMCUC_STEP 0 17\r\nMCUC_DONE\r\nafter"
    for cut in range(1, len(text)):
        lines = _Lines("p", 114, 100)
        lines.feed(text[:cut])
        if not lines.done:
            lines.feed(text[cut:])
        assert lines.done and lines.lines == ["MCUC_BEGIN", "MCUC_OUTPUT -1 2",
                                              "MCUC_STEP 0 17", "MCUC_DONE"], cut


def test_step_lines_are_checked() -> None:
    from mcuc.sim.protocol import parse_protocol

    res = parse_protocol("MCUC_BEGIN\nMCUC_STEP 0 17\nMCUC_STEP 1 4294967295\nMCUC_DONE\n")
    assert res["cycles_per_step"] == {0: 17, 1: 4294967295}
    for bad in ("MCUC_STEP 1", "MCUC_STEP -1 5", "MCUC_STEP 0 5 7", "MCUC_STEP x 5",
                "MCUC_STEP 0 " + "9" * 5000):
        with pytest.raises(McucError, match="malformed result line") as e:
            parse_protocol(bad + "\n")
        assert "\n" not in str(e.value)


def test_profile_table_reads_report_json_as_untrusted(tmp_path) -> None:
    from mcuc.profile import format_profile, make_profile

    layers = [{"name": "evil\x1b[2J\nMCUC_DONE", "kernel": "linear", "macs": 100},
              {"name": "b", "kernel": "copy", "macs": 0}]
    (tmp_path / "report.json").write_text(json.dumps({"layers": layers}))
    p = make_profile(tmp_path, "cycles", "serial:/dev/x", {0: 250, 1: 50}, 400, 2)
    text = format_profile(p)
    assert "\x1b" not in text and "evil\\x1b[2J\\x0aMCUC_DONE" in text
    assert "62.50%" in text and "2.50" in text and "(outside steps)" in text
    assert p.to_dict()["steps"][0] == {"step": 0, "name": "evil\\x1b[2J\\x0aMCUC_DONE",
                                       "kernel": "linear", "macs": 100, "cycles": 250}
    with pytest.raises(McucError, match="for 1 steps; the model has 2"):
        make_profile(tmp_path, "cycles", "serial:/dev/x", {0: 250}, 400, 2)
    (tmp_path / "report.json").write_text(json.dumps({"layers": layers[:1]}))
    p = make_profile(tmp_path, "instructions", "unicorn", {0: 250, 1: 50}, 400, 2)
    assert p.steps[0].name is None and "another number of steps" in p.notes[0]
    (tmp_path / "report.json").write_text('{"layers": [{"name": 5}]}')
    assert "no readable report.json" in make_profile(
        tmp_path, "instructions", "unicorn", {0: 1}, None).notes[0]
