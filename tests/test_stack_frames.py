"""Stack frames of the runtime, as gcc lays them out for the boards' cores.

Why: issue 23 wants every kernel's scratch planned in the arena, where the memory
report, the fit check and the search see it; a buffer on the stack is hidden from all
three. gcc's -fstack-usage gives each function's frame; a chain of kernel calls nests at
most a few of them (tokenwise -> linear / layernorm / add), so bounding every frame
bounds the runtime's stack. The known exceptions are kept to their measured sizes here:
the DSP attention's pair path (V^T of a head, q/p pairs and a score row: up to 3.1 KB,
bounded in attention_internal.h), and the DSP linear's k % 16 == 0 plans and their _lut twins
(one row pair of x unpacked to int16, 4 k <= 2,048 B for k <= MCUC_PRE_MAX_K = 512),
which sit under a tokenwise step and so nest less deep than attention's, and the one-row
loop (mcuc_lin_row1: one row of x unpacked, 2 k <= 1,024 B, called by mcuc_linear_s8 only); see
docs/architecture.md,
"Kernel variants and options".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ckernels import INCLUDE, SOURCES

FRAME_MAX = 320  # bytes, any function but the exceptions below
# measured (gcc 12, -O2, Cortex-M7 and M4)
EXCEPTIONS = {"mcuc_attention_s8": 3648, "mcuc_lin_short16": 2192, "mcuc_lin_wide_short16": 2192,
              "mcuc_lin_short16_lut": 2192, "mcuc_lin_wide_short16_lut": 2192,
              "mcuc_lin_row1": 1104}
CORES = {
    "cortex-m7 dsp": ["-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-DMCUC_ARM_DSP"],
    "cortex-m4 dsp": ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-DMCUC_ARM_DSP"],
    "cortex-m7 portable": ["-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16"],
}


def frames(tmp_path: Path, flags: list[str]) -> dict[str, int]:
    """function -> frame bytes over every runtime_c source, as the firmware builds them."""
    out: dict[str, int] = {}
    for src in SOURCES:
        obj = tmp_path / f"{src.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-I{INCLUDE}", "-mthumb",
                        "-mfloat-abi=hard", "-O2", "-fstack-usage", *flags, "-c", str(src),
                        "-o", str(obj)], check=True)
        for line in obj.with_suffix(".su").read_text().splitlines():
            where, size, _kind = line.split("\t")
            out[where.rsplit(":", 1)[-1]] = int(size)
    return out


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("core", sorted(CORES))
def test_no_kernel_keeps_buffers_on_the_stack(core: str, tmp_path: Path) -> None:
    got = frames(tmp_path, CORES[core])
    assert "mcuc_linear_s8" in got and len(got) > 15, got
    over = {f: n for f, n in got.items() if n > EXCEPTIONS.get(f, FRAME_MAX)}
    assert not over, f"{core}: frames over {FRAME_MAX} B: {over}"
