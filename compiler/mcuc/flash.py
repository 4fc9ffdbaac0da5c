"""`mcuc flash`: program a built firmware.elf onto its board with the board's flasher.

The command comes from board.toml ([flasher] tool and configs), so a new board needs no
code here. --dry-run prints it exactly, for copying onto a machine with the board.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.runner import load_meta


def flash_command(out_dir: Path | str) -> list[str]:
    """The flasher command line for a build directory (absolute ELF path)."""
    out_dir = Path(out_dir)
    meta = load_meta(out_dir)
    board = load_board(meta["board"])
    if not board.flasher:
        raise McucError(f"board '{board.name}' has no flasher (it is not a physical board)")
    if board.flasher.get("tool") != "openocd":
        raise McucError(f"board '{board.name}': unsupported flasher {board.flasher.get('tool')}")
    elf = (out_dir / meta.get("elf", "firmware.elf")).resolve()
    cmd = ["openocd"]
    for cfg in board.flasher.get("configs", []):
        cmd += ["-f", cfg]
    return cmd + ["-c", f"program {elf} verify reset exit"]


def flash(out_dir: Path | str, dry_run: bool = False) -> str:
    """Flash (or with dry_run only describe); returns the command as a shell line."""
    cmd = flash_command(out_dir)
    line = shlex.join(cmd)
    if dry_run:
        return line
    if not Path(cmd[-1].split()[1]).is_file():
        raise McucError(f"{cmd[-1].split()[1]} is missing; rebuild with `mcuc build`")
    if shutil.which(cmd[0]) is None:
        raise McucError("openocd is not installed (apt-get install openocd)")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise McucError(f"openocd failed (exit {proc.returncode}): "
                        f"{last[-1] if last else 'no output'}")
    return line
