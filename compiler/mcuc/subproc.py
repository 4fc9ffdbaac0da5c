"""Run a tool (make, a built program, an emulator, openocd) with a time limit.

The tool runs in its own process group, so that on a timeout or Ctrl-C the whole group
(make and the compilers it started) is killed rather than left running, and a timeout,
or a program that cannot be started, is one McucError line instead of a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()
    proc.communicate()


def run(cmd: Sequence[str], what: str, timeout: float, cwd: Path | str | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run cmd to completion (text stdout/stderr captured, stdin empty unless `input`)."""
    from mcuc import McucError

    try:
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise McucError(f"cannot run {what}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise McucError(f"{what} did not finish within {timeout:g} s; stopped it") from None
    except BaseException:       # KeyboardInterrupt: take the whole group down with us
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode,
                                       out.decode("utf-8", "replace"),
                                       err.decode("utf-8", "replace"))
