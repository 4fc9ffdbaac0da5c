"""Host runner: build the generated C with the system compiler and run it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from mcuc import McucError, subproc
from mcuc.sim.protocol import parse_protocol
from mcuc.text import one_line, path_line

MAKE_TIMEOUT_S = 900.0


def build_host(out_dir: Path, sanitize: bool = False, exe: str = "model",
               timeout: float = MAKE_TIMEOUT_S) -> Path:
    """Compile OUT/ with its Makefile; returns the executable path."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise McucError("building for the host needs make and gcc (apt-get install gcc make)")
    cmd = ["make", "-s", "-C", str(out_dir), exe]
    if sanitize:
        cmd.append("SAN=1")
    (out_dir / exe).unlink(missing_ok=True)
    proc = subproc.run(cmd, "the host C build (make)", timeout)
    if proc.returncode != 0:
        raise McucError(f"host C build failed: {(proc.stderr or proc.stdout).strip()[:2000]}")
    return out_dir / exe


def parse_output(text: str) -> tuple[np.ndarray, int]:
    """The output (int8 values) and the status code the host driver prints, read by the
    one protocol parser every firmware's console goes through (sim/protocol.py)."""
    res = parse_protocol(text)
    if not res["outputs"] or res["status"] is None:
        raise McucError(f"the program printed no result: {one_line(text.strip(), 300)}")
    return res["outputs"][-1], res["status"]


def run_host(exe: Path, x_q: np.ndarray, timeout: float = 60.0) -> np.ndarray:
    """Run one inference of a host build on int8 input `x_q`."""
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(np.asarray(x_q, dtype=np.int8).tobytes())
        path = f.name
    try:
        proc = subproc.run([str(exe), path], f"the program {path_line(exe)}", timeout)
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode not in (0, 1):
        raise McucError(f"{path_line(exe)} failed (exit {proc.returncode}): "
                        f"{one_line(proc.stderr.strip(), 300)}")
    values, status = parse_output(proc.stdout)
    if status != 0:
        raise McucError(f"the model's <name>_run returned error code {status}")
    return values
