"""Several models in one firmware, from the builds that made them.

A build's model files (`<name>.h`, `<name>.c`, `<name>_weights.{h,c}`) are self-contained
and every symbol, macro, section and include guard in them carries the model's name, so the
files of different models sit side by side in one folder and link into one image. This
copies them out of their (checked) builds, copies the runtime kernels once (compiled once,
shared by all models), and renders one driver (it runs each model in turn on inputs baked
into flash and prints `MCUC_MODEL <name>` before that model's outputs) and one linker
script (each model's `.<name>_weights` in its region, `.<name>_arena` in RAM or DTCM).
Each model keeps its own static arena; models run one after another, so an application
that wants them to share one buffer calls `<name>_run_with_arena` with it instead.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.builddir import check_out, staging
from mcuc.buildmeta import load_build
from mcuc.codegen.modelname import model_files
from mcuc.paths import runtime_dir
from mcuc.text import path_line


@dataclass(frozen=True)
class LinkedModel:
    """One model of link_models: a build directory and the int8 inputs [n, input size] to
    bake into flash for it."""
    build: Path | str
    inputs: np.ndarray
    weights_region: str = "flash"


def link_models(board: str, models: list[LinkedModel], out_dir: Path | str) -> dict:
    """Cross-build one firmware for `board` that holds every model of `models` (each from
    its own `mcuc build`, for any board: the model C does not depend on it); returns the
    ELF's path and section sizes. The build directory is written atomically (builddir)."""
    from mcuc.target.elf import ELF_NAME, elf_sizes
    from mcuc.target.firmware import FwModel, cross_build, render_firmware
    from mcuc.target.fit import confirm_fit

    b = load_board(board)
    if not b.is_mcu or b.semihosting:
        raise McucError(f"board {b.name}: several models need an MCU board whose inputs are "
                        "baked into flash")
    fw_models = []
    sources: list[tuple[Path, str]] = []
    for m in models:
        bm = load_build(m.build)   # digests checked: the files are the ones built
        for role, rel in model_files(bm.name).items():
            if rel not in bm.meta["files"]:
                raise McucError(f"{path_line(bm.path)} has no recorded {role} ({rel}); "
                                "rebuild it with `mcuc build`")
            sources.append((bm.path / rel, rel))
        x = np.asarray(m.inputs)
        size = int(np.prod(bm.input_shape))
        if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != size or len(x) < 1:
            raise McucError(f"inputs for model {bm.name} must be int8 [n >= 1, {size}], not "
                            f"{x.dtype} {list(x.shape)}")
        fw_models.append(FwModel(bm.name, x, bm.name, m.weights_region))
    out = check_out(out_dir)
    with staging(out) as tmp:
        for src, rel in sources:
            shutil.copyfile(src, tmp / rel)
        shutil.copytree(runtime_dir(), tmp / "runtime",
                        ignore=shutil.ignore_patterns("*.o", "*.so"))
        render_firmware(b, tmp, fw_models)   # checks names distinct, regions
        elf = cross_build(tmp, b)
        sizes = elf_sizes(elf, b)
        confirm_fit(b, sizes)
        _write_meta(tmp, b.name, fw_models)
    return {"elf": out / ELF_NAME, "models": [m.name for m in fw_models], **sizes}


def _write_meta(out: Path, board: str, models: list) -> None:
    """mcuc.json of a multi-model firmware: what it holds and the digests of its files.
    `mcuc run` does not take it (one line: it names no single model); run its ELF with
    mcuc.target.unicorn.run_unicorn(elf, {name: inputs})."""
    from mcuc import __version__
    from mcuc.buildmeta import FORMAT, sha256

    names = ["firmware.elf"] + [rel for m in models for rel in model_files(m.name).values()]
    meta = {"format": FORMAT, "mcuc": __version__, "board": board,
            "models": [m.name for m in models], "elf": "firmware.elf",
            "files": {n: sha256(out / n) for n in names}}
    (out / "mcuc.json").write_text(json.dumps(meta, indent=2) + "\n")
