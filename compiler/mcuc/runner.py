"""`mcuc run`: feed an input to a built model and read its output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.quant.qparams import QParams, prepare_input


@dataclass
class RunResult:
    output: np.ndarray     # int8, flat
    scores: np.ndarray     # dequantized
    argmax: int
    instructions: int | None = None   # one inference, when an emulator counted them
    engine: str = "host"


def load_meta(out_dir: Path) -> dict:
    path = Path(out_dir) / "mcuc.json"
    if not path.is_file():
        raise McucError(f"{out_dir} is not an mcuc build directory (no mcuc.json); "
                        "run `mcuc build` first")
    return json.loads(path.read_text())


def load_input(path: Path | str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise McucError(f"input file not found: {p}")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise McucError(f"cannot read {p} as a .npy array: {e}") from None


def run_built(out_dir: Path | str, x: np.ndarray, engine: str | None = None) -> RunResult:
    """One inference of a build: the host program, or the firmware in an emulator."""
    out_dir = Path(out_dir)
    meta = load_meta(out_dir)
    in_qp = QParams(**meta["input"])
    out_qp = QParams(**meta["output"])
    x_q = prepare_input(x, tuple(meta["input_shape"]), in_qp)
    board = meta["board"]
    instructions = None
    if board == "host":
        from mcuc.sim.host import run_host

        exe = out_dir / meta["exe"]
        if not exe.is_file():
            raise McucError(f"{exe} is missing; rebuild with `mcuc build`")
        y = run_host(exe, x_q)
        engine = "host"
    else:
        y, instructions, engine = _run_firmware(out_dir, meta, x_q, engine)
    scores = out_qp.dequantize(y)
    return RunResult(y, scores, int(np.argmax(scores)), instructions, engine)


def _run_firmware(out_dir: Path, meta: dict, x_q: np.ndarray,
                  engine: str | None) -> tuple[np.ndarray, int | None, str]:
    """Run the board's firmware.elf in an emulator; returns (output, instructions, engine)."""
    from mcuc import firmware
    from mcuc.boards import load_board

    board = load_board(meta["board"])
    engine = engine or board.default_engine
    if engine is None:
        raise McucError(f"board '{board.name}' has no emulator here; flash it with "
                        "`mcuc flash` and read its console")
    if engine not in board.emulators:
        raise McucError(f"engine '{engine}' does not run board '{board.name}' "
                        f"(it has: {', '.join(board.emulators) or 'none'})")
    elf = out_dir / meta.get("elf", firmware.ELF_NAME)
    if not elf.is_file():
        raise McucError(f"{elf} is missing; rebuild with `mcuc build`")
    row = np.asarray(x_q, dtype=np.int8).reshape(1, -1)
    if engine == "qemu":
        from mcuc.sim.qemu import run_qemu_full

        outputs = run_qemu_full(elf, row, machine=board.qemu.get("machine", "mps2-an500")).outputs
        instructions = None
        if firmware.unicorn_available():   # same ELF, counted by the Unicorn engine
            instructions = firmware.run_unicorn(elf, row, semihosted=True)["instructions"]
        return outputs[0], instructions, engine
    if engine == "unicorn":
        if not firmware.unicorn_available():
            raise McucError("the Unicorn engine (mcuc.sim.unicorn_m7) is not available")
        res = firmware.run_unicorn(elf, row)
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

