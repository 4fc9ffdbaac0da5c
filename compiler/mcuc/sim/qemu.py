"""Run qemu-m7 firmware in QEMU (mps2-an500) over semihosting.

One QEMU process serves any number of inputs: they go into mcuc_inputs.bin in a fresh
temporary directory (QEMU's cwd, where the firmware's SYS_OPEN looks), the firmware
reads records until end of file and prints one MCUC_OUTPUT line per input. Starting
QEMU once for 1,000 images instead of 1,000 times is what makes an accuracy run cheap.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.sim.protocol import parse_protocol

QEMU = "qemu-system-arm"
INPUTS_FILE = "mcuc_inputs.bin"


@dataclass
class QemuResult:
    outputs: list[np.ndarray]
    status: int
    stack_bytes: int | None
    exit_code: int
    stdout: str
    extra: dict = field(default_factory=dict)


def qemu_command(elf: Path, machine: str = "mps2-an500") -> list[str]:
    return [QEMU, "-M", machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


def run_qemu_full(elf: Path | str, inputs: np.ndarray, machine: str = "mps2-an500",
                  timeout: float = 600.0) -> QemuResult:
    """Run the firmware on all rows of `inputs` (int8 [N, size]); checks the protocol."""
    if shutil.which(QEMU) is None:
        raise McucError(f"{QEMU} not found (apt-get install qemu-system-arm)")
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise McucError(f"{elf} is missing; rebuild with `mcuc build`")
    data = np.ascontiguousarray(inputs, dtype=np.int8)
    n = data.shape[0] if data.ndim > 1 else 1
    with tempfile.TemporaryDirectory(prefix="mcuc-qemu-") as tmp:
        (Path(tmp) / INPUTS_FILE).write_bytes(data.tobytes())
        try:
            proc = subprocess.run(qemu_command(elf, machine), cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise McucError(f"QEMU did not finish within {timeout:.0f} s") from None
    text = proc.stdout + proc.stderr
    res = parse_protocol(text)
    if not res["done"] or res["status"] is None:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise McucError(f"firmware in QEMU did not complete (exit {proc.returncode}): "
                        f"{tail[:300]!r}")
    if res["status"] != 0:
        raise McucError(f"firmware in QEMU reported MCUC_STATUS {res['status']}")
    if len(res["outputs"]) != n:
        raise McucError(f"firmware in QEMU printed {len(res['outputs'])} outputs for {n} inputs")
    return QemuResult(res["outputs"], res["status"], res["stack_bytes"], proc.returncode,
                      text)


def run_qemu(elf: Path | str, inputs: np.ndarray, timeout: float = 600.0) -> list[np.ndarray]:
    """Batch API: int8 inputs [N, size] -> N int8 output vectors, one QEMU process."""
    return run_qemu_full(elf, inputs, timeout=timeout).outputs
