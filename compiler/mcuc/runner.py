"""`mcuc run`: feed an input to a built model and read its output."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.buildmeta import Build, load_build
from mcuc.profile import Profile, make_profile
from mcuc.quant.qparams import prepare_input

RUN_TIMEOUT_S = 60.0


@dataclass
class RunResult:
    output: np.ndarray     # int8, flat
    scores: np.ndarray     # dequantized
    argmax: int
    instructions: int | None = None   # one inference, when an emulator counted them
    engine: str = "host"
    cycles: int | None = None         # one inference, the board's DWT (serial engine)
    profile: Profile | None = None    # per step (--profile): instructions or cycles


def load_input(path: Path | str) -> np.ndarray:
    """A `.npy` input, its header checked before reading (mcuc/limits.py: size, dtype,
    no .npz or pickle)."""
    from mcuc.limits import MAX_INPUT_ELEMENTS, read_npy

    return read_npy(path, "input file", max_bytes=8 * MAX_INPUT_ELEMENTS)


def run_built(out_dir: Path | str, x: np.ndarray, engine: str | None = None,
              timeout: float = RUN_TIMEOUT_S, allow_nonfinite: bool = False,
              profile: bool = False) -> RunResult:
    """One inference of a build: the host program, the firmware in an emulator, or on a
    board over its serial console (`serial:PORT`). The build is checked first
    (buildmeta.load_build); `timeout` bounds the host program. `profile` adds each step's
    count (mcuc.profile): instructions in an emulator, DWT cycles on a board (a
    `mcuc build --profile` firmware)."""
    from mcuc.target import engines

    b = load_build(out_dir)
    x_q = prepare_input(x, b.input_shape, b.input_qp, allow_nonfinite)
    eng, label = engines.resolve(b, engine)
    if profile:
        _check_profile(b, eng)
    res = engines.run(b, np.asarray(x_q).reshape(1, -1), label, timeout=timeout)
    y = res.outputs[0]
    if y.size != math.prod(b.output_shape):
        raise McucError(f"the build printed {y.size} output values; its mcuc.json says "
                        f"{math.prod(b.output_shape)}; rebuild with `mcuc build`")
    prof = None
    if profile and eng.counts == "cycles":
        prof = make_profile(b.path, "cycles", label, res.cycles_per_step, res.cycles,
                            _steps(b))
    elif profile:
        if res.instructions is None:
            raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not available")
        prof = make_profile(b.path, "instructions", "unicorn", res.instructions_per_step,
                            res.instructions, _steps(b))
    scores = b.output_qp.dequantize(y)
    return RunResult(y, scores, int(np.argmax(scores)), res.instructions, label,
                     res.cycles, prof)


def _check_profile(b: Build, eng) -> None:
    """--profile needs something that counts per step: an emulator's instructions (the
    Unicorn engine) or the DWT cycles a `mcuc build --profile` firmware prints."""
    if not eng.mcu:
        raise McucError("--profile needs an MCU build: an emulator counts its "
                        "instructions per step, a board its cycles")
    if eng.counts is None:
        raise McucError(f"--profile counts instructions in the Unicorn engine (or QEMU's "
                        f"builds through it); {eng.name.capitalize()} does not count them")
    if eng.counts == "cycles" and b.meta.get("profile") is not True:
        raise McucError("--profile on a board reads the DWT cycles a `mcuc build "
                        "--profile` firmware prints; rebuild with --profile")


def _steps(b: Build) -> int | None:
    """The number of steps, from the build's <name>.h (digest-checked), or None."""
    import re

    text = b.model_files["header"].read_text(encoding="utf-8", errors="replace")
    m = re.search(rf"^#define {b.name.upper()}_NUM_STEPS (\d{{1,6}})$", text, flags=re.M)
    return int(m.group(1)) if m else None
