"""Firmware for MCU boards: render the driver, linker script and Makefile, cross-build,
and measure the result (fit from the ELF, stack and instructions in an emulator)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import McucError, subproc, tcm
from mcuc.boards import Board
from mcuc.codegen.modelname import check_name, model_files
from mcuc.codegen.names import c_comment
from mcuc.codegen.templates import environment
from mcuc.target.elf import ELF_NAME, elf_sizes
from mcuc.target.fit import Fit, confirm_fit
from mcuc.target.unicorn import run_unicorn, unicorn_available
from mcuc.text import one_line, path_line

MAKE_TIMEOUT_S = 900.0


def _c_rows(samples: np.ndarray) -> list[str]:
    rows = []
    for s in samples:
        flat = [str(int(v)) for v in s.reshape(-1)]
        lines = [", ".join(flat[i:i + 20]) for i in range(0, len(flat), 20)]
        rows.append("        " + ",\n        ".join(lines))
    return rows


def check_profile(board: Board) -> None:
    """`--profile` prints DWT cycles: the board needs a cycle counter."""
    if not board.has_dwt:
        raise McucError(f"--profile needs a cycle counter; board {board.name} has none "
                        "(`mcuc run --profile` counts instructions in an emulator without it)")


@dataclass(frozen=True)
class FwModel:
    """One model of a firmware: its checked name (the prefix of its files and symbols), model
    text for comments, the inputs baked into flash, and where its weights go (a region of
    Board.weight_regions)."""
    name: str
    samples_q: np.ndarray | None = None
    model_name: str = ""
    weights_region: str = "flash"


LINKER_JSON = "linker.json"   # the models the linker script places, for cross_build


def render_firmware(board: Board, out: Path, models: list[FwModel],
                    profile: bool = False) -> None:
    """Write main.c, Makefile, linker.ld, mcuc_prof.h, <name>_samples.{c,h} per model and
    board/ into out.

    The model sources (<name>.c, <name>_weights.c, runtime/) come from codegen.render (or
    from earlier builds, link_models) first; this adds what turns them into a bootable
    image for `board` that runs every model in turn. `profile` makes the firmware time
    every step with the DWT and print MCUC_STEP lines (check_profile; one model only).
    """
    if profile:
        check_profile(board)
    env = environment()
    _check_models(board, models)
    board_dir = out / "board"
    if board_dir.exists():
        shutil.rmtree(board_dir)
    board_dir.mkdir(parents=True)
    for src in board.source_paths():
        shutil.copy2(src, board_dir / src.name)
    has_samples = not board.semihosting
    if board.semihosting and len(models) != 1:
        raise McucError(f"board {board.name} reads its inputs from one semihosting file: "
                        "it runs one model per firmware")
    if profile and len(models) != 1:
        raise McucError("--profile times the steps of one model per firmware")
    # Model text goes only into main.c's comment, escaped; never into the Makefile.
    mctx = [_model_context(m) for m in models]
    ctx = {"board": board, "models": mctx, "defines": board.defines(),
           "has_samples": has_samples, "profile": profile,
           "board_sources": [f"board/{Path(s).name}" for s in board.sources]}
    files = {"main.c": "main_firmware.c.j2", "Makefile": "Makefile.arm.j2",
             "mcuc_prof.h": "mcuc_prof.h.j2"}
    for name, tpl in files.items():
        (out / name).write_text(env.get_template(tpl).render(**ctx))
    if has_samples:
        for m, mc in zip(models, mctx, strict=True):
            if m.samples_q is None or len(m.samples_q) == 0:
                raise McucError(f"board {board.name} bakes inputs into flash: need >= 1 "
                                f"sample for model {m.name}")
            sctx = {**mc, "n_samples": len(m.samples_q),
                    "samples": _c_rows(np.asarray(m.samples_q, dtype=np.int8))}
            for suffix, tpl in (("_samples.c", "samples.c.j2"), ("_samples.h", "samples.h.j2")):
                (out / f"{m.name}{suffix}").write_text(env.get_template(tpl).render(**sctx))
    (out / LINKER_JSON).write_text(json.dumps(
        {"models": [{"name": m.name, "weights_region": m.weights_region} for m in models]}))
    render_linker(board, out, tcm.Placement())


def _check_models(board: Board, models: list[FwModel]) -> None:
    """Names are checked identifiers, distinct; regions are the board's."""
    if not models:
        raise McucError("a firmware needs at least one model")
    names = [check_name(m.name) for m in models]
    if len(set(names)) != len(names):
        raise McucError(f"two models of one firmware share a name ({', '.join(names)}); "
                        "build them with different --name")
    for m in models:
        if m.weights_region not in board.weight_regions():
            raise McucError(f"board {board.name} cannot place weights in "
                            f"{one_line(repr(m.weights_region), 40)} (it has: "
                            f"{', '.join(board.weight_regions())})")


def _model_context(m: FwModel) -> dict:
    return {"p": m.name, "P": m.name.upper(), "files": model_files(m.name),
            "model_name": c_comment(m.model_name or m.name),
            "weights_region": m.weights_region.upper()}


def _linked_models(board: Board, out: Path) -> list[FwModel]:
    """The models render_firmware wrote into out/linker.json, checked again (a build
    directory is untrusted)."""
    try:
        data = json.loads((out / LINKER_JSON).read_text())
        models = [FwModel(str(m["name"]), weights_region=str(m["weights_region"]))
                  for m in data["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise McucError(f"{path_line(out / LINKER_JSON)} is missing or corrupt; rebuild "
                        "with `mcuc build`") from None
    _check_models(board, models)
    return models


def render_linker(board: Board, out: Path, placement: tcm.Placement,
                  models: list[FwModel] | None = None) -> None:
    """linker.ld for `board`, with `placement`'s kernels in ITCM and arenas in DTCM (nothing
    in the TCMs until cross_build has chosen from the objects), and each model's weights
    section in its region."""
    models = _linked_models(board, out) if models is None else models
    text = environment().get_template("linker_cortexm.ld.j2").render(
        board=board, itcm_sections=placement.itcm_sections,
        dtcm_arenas=placement.dtcm_arenas, models=[_model_context(m) for m in models])
    (out / "linker.ld").write_text(text)


_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


_REGION = {"FLASH": "flash", "RAM": "SRAM", "ITCM": "ITCM", "DTCM": "DTCM",
           "QSPI": "QSPI flash"}


def cross_build(out: Path, board: Board, fit: Fit | None = None, jobs: int = 2,
                timeout: float = MAKE_TIMEOUT_S) -> Path:
    """Run make in out; returns the ELF. Linker overflows become the one-line error."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None:
        raise McucError("building for MCU boards needs make and arm-none-eabi-gcc "
                        "(apt-get install make gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    (out / ELF_NAME).unlink(missing_ok=True)
    if board.itcm_bytes or board.arena_dtcm_bytes:   # objects first, then choose (mcuc.tcm)
        _make(out, board, fit, jobs, timeout, "objs")
        models = _linked_models(board, out)
        placement = tcm.choose(board, sorted((out / "obj").rglob("*.o")),
                               [m.name for m in models])
        render_linker(board, out, placement, models)
    _make(out, board, fit, jobs, timeout, "all")
    return out / ELF_NAME


def _make(out: Path, board: Board, fit: Fit | None, jobs: int, timeout: float,
          target: str) -> None:
    proc = subproc.run(["make", "-s", "-C", str(out), f"-j{jobs}", target],
                       f"the cross build for {board.name} (make)", timeout)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        overflows = _OVERFLOW.findall(text)
        if overflows:
            what = "; ".join(f"{_REGION.get(r.upper(), r)} over by {int(n):,} bytes"
                             for r, n in overflows)
            hint = (f" (estimate: arena {fit.arena:,} B, weights {fit.weights:,} B, "
                    f"code ~{fit.code:,} B, stack {fit.stack:,} B)") if fit else ""
            raise McucError(f"model does not fit {board.name} (linker): {what}{hint}")
        first = next((ln for ln in text.splitlines() if "error" in ln.lower()),
                     text.strip().splitlines()[-1] if text.strip() else "unknown error")
        raise McucError(f"cross build for {board.name} failed: {first.strip()[:300]}")


def render_mcu(board: Board, out: Path, model_name: str, samples_q: np.ndarray,
               profile: bool = False, name: str = "model",
               weights_region: str = "flash") -> None:
    """Everything board-specific beside the model sources of the model `name`: firmware,
    Renode files."""
    from mcuc.sim import renode

    render_firmware(board, out, [FwModel(name, samples_q, model_name, weights_region)],
                    profile)
    renode.write_files(out, board)


def build_and_measure(board: Board, out: Path, fit: Fit | None, samples_q: np.ndarray,
                      emulate: bool = True) -> dict:
    """Cross-build, confirm the fit from the ELF and, where an emulator for the board is
    at hand, run one inference to measure the stack (and instructions)."""
    elf = cross_build(out, board, fit)
    info: dict = elf_sizes(elf, board)
    confirm_fit(board, info)
    info.update(stack_bytes=None, instructions=None, emulator=None)
    if not emulate:
        return info
    if board.semihosting and "qemu" in board.emulators:
        from mcuc.sim.qemu import run_qemu_full

        res = run_qemu_full(elf, samples_q[:1], machine=board.qemu.get("machine", "mps2-an500"))
        info.update(stack_bytes=res.stack_bytes, emulator="qemu")
        if unicorn_available():   # QEMU cannot count instructions; the Unicorn engine can
            counted = run_unicorn(elf, samples_q[:1], semihosted=True, chip=board.chip)
            info.update(instructions=counted["instructions"],
                        instructions_per_step=counted["instructions_per_step"],
                        emulator="qemu+unicorn")
    elif "unicorn" in board.emulators and unicorn_available():
        res = run_unicorn(elf, samples_q[:1], chip=board.chip)
        info.update(stack_bytes=res["stack_bytes"], instructions=res["instructions"],
                    instructions_per_step=res["instructions_per_step"], emulator="unicorn")
    return info
