"""Renode support: generate a .resc script and a Robot Framework test, and run an ELF.

Renode models the whole STM32F7 Discovery board (its platforms/boards/
stm32f7_discovery-bb.repl), so it is the closest thing to the real board short of
hardware. It is not a Debian package; when `renode` is not on PATH, running says so in
one line instead of failing obscurely.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mcuc import McucError
from mcuc.boards import Board
from mcuc.codegen.templates import environment

RENODE = "renode"


# Stem of renode/<stem>.resc and .robot. Fixed: Renode scripts are interpreted (Tcl-like
# monitor commands, Robot syntax), so no text from the model file may reach them.
SCRIPT_STEM = "model"


def write_files(out: Path, board: Board, timeout_s: int = 600) -> list[Path]:
    """Write renode/model.resc and renode/model.robot for a board with a Renode platform."""
    if not board.renode:
        return []
    env = environment()
    name = SCRIPT_STEM
    d = out / "renode"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("resc", "robot"):
        p = d / f"{name}.{ext}"
        p.write_text(env.get_template(f"renode.{ext}.j2").render(
            board=board, name=name, timeout_s=timeout_s))
        paths.append(p)
    return paths


def require_renode() -> str:
    exe = shutil.which(RENODE)
    if exe is None:
        raise McucError("renode is not installed (not on PATH); get it from "
                        "https://renode.io or use --engine unicorn")
    return exe


def run_renode(elf: Path, board: Board, timeout: float = 600.0) -> str:
    """Boot elf headless on the board's Renode platform; returns the UART text up to
    MCUC_DONE. The UART goes to a file backend that is polled, since Renode keeps
    running after the firmware idles."""
    exe = require_renode()
    with tempfile.TemporaryDirectory(prefix="mcuc-renode-") as tmp:
        log = Path(tmp) / "uart.txt"
        cmds = "; ".join([
            "mach create", f"machine LoadPlatformDescription @{board.renode['platform']}",
            f"sysbus LoadELF @{Path(elf).resolve()}",
            f"{board.renode['uart']} CreateFileBackend @{log} true", "start"])
        proc = subprocess.Popen([exe, "--disable-xwt", "--console", "--plain", "-e", cmds],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = log.read_text(errors="replace") if log.is_file() else ""
                if "MCUC_DONE" in text:
                    return text
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
            raise McucError(f"firmware in Renode printed no MCUC_DONE within {timeout:.0f} s")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
