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
from mcuc.text import one_line

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
    b = load_build(out_dir)
    x_q = prepare_input(x, b.input_shape, b.input_qp, allow_nonfinite)
    if b.exe is not None:
        from mcuc.sim.host import run_host

        if engine not in (None, "host"):
            raise McucError(f"a build for board {b.board} runs on the host, not "
                            f"{one_line(engine, 60)}")
        if profile:
            raise McucError("--profile needs an MCU build: an emulator counts its "
                            "instructions per step, a board its cycles")
        res = {"output": run_host(b.exe, x_q, timeout=timeout), "engine": "host"}
    else:
        res = _run_firmware(b, x_q, engine, profile)
    y = res["output"]
    if y.size != math.prod(b.output_shape):
        raise McucError(f"the build printed {y.size} output values; its mcuc.json says "
                        f"{math.prod(b.output_shape)}; rebuild with `mcuc build`")
    scores = b.output_qp.dequantize(y)
    return RunResult(y, scores, int(np.argmax(scores)), res.get("instructions"),
                     res["engine"], res.get("cycles"), res.get("profile"))


def _run_firmware(b: Build, x_q: np.ndarray, engine: str | None, profile: bool) -> dict:
    """Run the board's firmware.elf in an emulator or on the board; returns output,
    engine, and what was counted (instructions or cycles, per step with `profile`)."""
    from mcuc import console, firmware
    from mcuc.boards import load_board

    board = load_board(b.board)
    engine = engine or board.default_engine
    if engine is None:
        raise McucError(f"board '{board.name}' has no emulator here; flash it with "
                        "`mcuc flash` and read its console")
    row = np.asarray(x_q, dtype=np.int8).reshape(1, -1)
    port = console.port_of(engine)
    if port is not None:
        if profile and b.meta.get("profile") is not True:
            raise McucError("--profile on a board reads the DWT cycles a `mcuc build "
                            "--profile` firmware prints; rebuild with --profile")
        res = console.run_board(b, row, port)
        out = {"output": res["outputs"][0], "engine": f"serial:{port}",
               "cycles": res["cycles"]}
        if profile:
            out["profile"] = make_profile(b.path, "cycles", out["engine"],
                                          res["cycles_per_step"], res["cycles"],
                                          _steps(b))
        return out
    if engine not in board.emulators:
        raise McucError(f"engine '{one_line(engine, 60)}' does not run board '{board.name}' "
                        f"(it has: {', '.join(board.emulators) or 'none'}, serial:PORT)")
    if profile and engine == "renode":
        raise McucError("--profile counts instructions in the Unicorn engine (or QEMU's "
                        "builds through it); Renode does not count them")
    elf = b.elf
    if engine in ("qemu", "unicorn"):
        out = {"engine": engine}
        if engine == "qemu":
            from mcuc.sim.qemu import run_qemu_full

            qemu = run_qemu_full(elf, row, machine=board.qemu.get("machine", "mps2-an500"))
            out["output"] = qemu.outputs[0]
        if not firmware.unicorn_available():
            if engine == "unicorn" or profile:
                raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not available")
            return out
        # The same ELF, counted by the Unicorn engine (for QEMU builds: a second run).
        res = firmware.run_unicorn(elf, row, semihosted=board.semihosting, chip=board.chip)
        out.setdefault("output", res["outputs"][0])
        out["instructions"] = res["instructions"]
        if profile:
            out["profile"] = make_profile(b.path, "instructions", "unicorn",
                                          res["instructions_per_step"], res["instructions"],
                                          _steps(b))
        return out
    if engine == "renode":
        import tempfile

        from mcuc.sim.renode import require_renode, run_renode

        require_renode()
        with tempfile.TemporaryDirectory(prefix="mcuc-renode-") as tmp:
            patched = firmware.patch_samples(elf, row, Path(tmp) / firmware.ELF_NAME)
            res = firmware.parse_protocol(run_renode(patched, board))
        if res["status"] != 0 or not res["outputs"]:
            raise McucError(f"firmware in Renode reported MCUC_STATUS {res['status']}")
        return {"output": res["outputs"][0], "engine": engine}
    raise McucError(f"unknown engine '{one_line(engine, 60)}'")


def _steps(b: Build) -> int | None:
    """The number of steps, from the build's <name>.h (digest-checked), or None."""
    import re

    text = b.model_files["header"].read_text(encoding="utf-8", errors="replace")
    m = re.search(rf"^#define {b.name.upper()}_NUM_STEPS (\d{{1,6}})$", text, flags=re.M)
    return int(m.group(1)) if m else None
