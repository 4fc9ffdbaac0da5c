"""`mcuc flash`: program a built firmware.elf onto its board with the board's flasher.

The command comes from board.toml ([flasher] tool and configs), so a new board needs no
code here. openocd runs inside the build directory and is given the ELF by its relative
name (checked by buildmeta: letters, digits, `_.+-/` only), so the Tcl command it
evaluates never holds the build path or anything else that Tcl could interpret (brackets,
braces, `$`, spaces). --dry-run prints the same command as one shell line to copy.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from mcuc import McucError, subproc
from mcuc.boards import Board, load_board
from mcuc.buildmeta import load_build
from mcuc.text import one_line, path_line

FLASH_TIMEOUT_S = 300.0
# A word that Tcl reads literally: no whitespace, quotes, brackets, braces, `$`, `\` or `;`.
TCL_PLAIN = re.compile(r"[A-Za-z0-9_.+/:=-]+")


def flash_command(out_dir: Path | str) -> tuple[list[str], Path]:
    """The flasher argv and the directory to run it in (the checked build)."""
    b = load_build(out_dir)
    board = load_board(b.board)
    # A host build has no ELF, and its board no flasher: openocd_argv says so first.
    elf = b.elf.relative_to(b.path).as_posix() if b.elf is not None else ""
    return openocd_argv(board, elf), b.path


def openocd_argv(board: Board, elf: str) -> list[str]:
    """openocd's argv that programs `elf` (a plain name relative to its working directory)
    onto `board`, verifies and resets it (the reset starts the firmware)."""
    if not board.flasher:
        raise McucError(f"board '{board.name}' has no flasher (it is not a physical board)")
    if board.flasher.get("tool") != "openocd":
        raise McucError(f"board '{board.name}': unsupported flasher "
                        f"{one_line(str(board.flasher.get('tool')), 40)}")
    cmd = ["openocd"]
    for cfg in board.flasher.get("configs", []):
        if not isinstance(cfg, str) or not TCL_PLAIN.fullmatch(cfg):
            raise McucError(f"board '{board.name}': openocd config {one_line(repr(cfg), 60)} "
                            "is not a plain file name")
        cmd += ["-f", cfg]
    if not TCL_PLAIN.fullmatch(elf):    # buildmeta allows less; checked here where it matters
        raise McucError(f"{path_line(elf)} is not a plain file name; rebuild with `mcuc build`")
    return cmd + ["-c", f"program {elf} verify reset exit"]


def flash(out_dir: Path | str, dry_run: bool = False, timeout: float = FLASH_TIMEOUT_S) -> str:
    """Flash (or with dry_run only describe); returns the command as a shell line."""
    cmd, cwd = flash_command(out_dir)
    line = f"cd {shlex.quote(str(cwd))} && {shlex.join(cmd)}"
    if dry_run:
        return line
    run_openocd(cmd, cwd, timeout)
    return line


def flash_elf(board: Board, elf: Path, timeout: float = FLASH_TIMEOUT_S) -> None:
    """Program `elf` (any firmware of `board`, e.g. a copy with other inputs over its
    <name>_samples) and reset the board; openocd runs in the ELF's directory."""
    run_openocd(openocd_argv(board, elf.name), elf.parent, timeout)


def run_openocd(cmd: list[str], cwd: Path, timeout: float) -> None:
    """Run openocd; its last output line is the error when it fails."""
    if shutil.which(cmd[0]) is None:
        raise McucError("openocd is not installed (apt-get install openocd)")
    proc = subproc.run(cmd, "openocd", timeout, cwd=cwd)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise McucError(f"openocd failed (exit {proc.returncode}): "
                        f"{one_line(last[-1], 200) if last else 'no output'}")
