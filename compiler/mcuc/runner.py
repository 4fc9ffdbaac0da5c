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


def run_built(out_dir: Path | str, x: np.ndarray) -> RunResult:
    out_dir = Path(out_dir)
    meta = load_meta(out_dir)
    in_qp = QParams(**meta["input"])
    out_qp = QParams(**meta["output"])
    x_q = prepare_input(x, tuple(meta["input_shape"]), in_qp)
    board = meta["board"]
    if board == "host":
        from mcuc.sim.host import run_host

        exe = out_dir / meta["exe"]
        if not exe.is_file():
            raise McucError(f"{exe} is missing; rebuild with `mcuc build`")
        y = run_host(exe, x_q)
    else:
        raise McucError(f"running builds for board '{board}' is not supported yet")
    scores = out_qp.dequantize(y)
    return RunResult(y, scores, int(np.argmax(scores)))
