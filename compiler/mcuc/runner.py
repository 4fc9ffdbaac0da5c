"""`mcuc run`: feed an input to a built model and read its output."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.buildmeta import Build, load_build
from mcuc.quant.qparams import prepare_input

RUN_TIMEOUT_S = 60.0


@dataclass
class RunResult:
    output: np.ndarray     # int8, flat
    scores: np.ndarray     # dequantized
    argmax: int
    instructions: int | None = None   # one inference, when an emulator counted them
    engine: str = "host"


def load_input(path: Path | str) -> np.ndarray:
    """A `.npy` input, its header checked before reading (mcuc/limits.py: size, dtype,
    no .npz or pickle)."""
    from mcuc.limits import MAX_INPUT_ELEMENTS, read_npy

    return read_npy(path, "input file", max_bytes=8 * MAX_INPUT_ELEMENTS)


def run_built(out_dir: Path | str, x: np.ndarray, engine: str | None = None,
              timeout: float = RUN_TIMEOUT_S, allow_nonfinite: bool = False) -> RunResult:
    """One inference of a build: the host program, or the firmware in an emulator.
    The build is checked first (buildmeta.load_build); `timeout` bounds the host program."""
    b = load_build(out_dir)
    x_q = prepare_input(x, b.input_shape, b.input_qp, allow_nonfinite)
    instructions = None
    if b.exe is not None:
        from mcuc.sim.host import run_host

        y = run_host(b.exe, x_q, timeout=timeout)
        engine = "host"
    else:
        y, instructions, engine = _run_firmware(b, x_q, engine)
    if y.size != math.prod(b.output_shape):
        raise McucError(f"the build printed {y.size} output values; its mcuc.json says "
                        f"{math.prod(b.output_shape)}; rebuild with `mcuc build`")
    scores = b.output_qp.dequantize(y)
    return RunResult(y, scores, int(np.argmax(scores)), instructions, engine)


def _run_firmware(b: Build, x_q: np.ndarray,
                  engine: str | None) -> tuple[np.ndarray, int | None, str]:
    """Run the board's firmware.elf in an emulator; returns (output, instructions, engine)."""
    from mcuc import firmware
    from mcuc.boards import load_board

    board = load_board(b.board)
    engine = engine or board.default_engine
    if engine is None:
        raise McucError(f"board '{board.name}' has no emulator here; flash it with "
                        "`mcuc flash` and read its console")
    if engine not in board.emulators:
        raise McucError(f"engine '{engine}' does not run board '{board.name}' "
                        f"(it has: {', '.join(board.emulators) or 'none'})")
    elf = b.elf
    row = np.asarray(x_q, dtype=np.int8).reshape(1, -1)
    if engine == "qemu":
        from mcuc.sim.qemu import run_qemu_full

        outputs = run_qemu_full(elf, row, machine=board.qemu.get("machine", "mps2-an500")).outputs
        instructions = None
        if firmware.unicorn_available():   # same ELF, counted by the Unicorn engine
            instructions = firmware.run_unicorn(elf, row, semihosted=True,
                                                chip=board.chip)["instructions"]
        return outputs[0], instructions, engine
    if engine == "unicorn":
        if not firmware.unicorn_available():
            raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not available")
        res = firmware.run_unicorn(elf, row, chip=board.chip)
        return res["outputs"][0], res["instructions"], engine
    if engine == "renode":
        import tempfile

        from mcuc.sim.renode import require_renode, run_renode

        require_renode()
        with tempfile.TemporaryDirectory(prefix="mcuc-renode-") as tmp:
            patched = firmware.patch_samples(elf, row, Path(tmp) / firmware.ELF_NAME)
            res = firmware.parse_protocol(run_renode(patched, board))
        if res["status"] != 0 or not res["outputs"]:
            raise McucError(f"firmware in Renode reported MCUC_STATUS {res['status']}")
        return res["outputs"][0], None, engine
    raise McucError(f"unknown engine '{engine}'")

