"""Firmware for MCU boards: render the driver and linker script, cross-build, check fit.

The fit check runs twice. Before rendering anything, an estimate from the memory plan
and the weights (plus a code estimate) stops a model that cannot fit with one line that
names the culprit (arena, weights, code, stack) and the overshoot in bytes - rendering
megabytes of C for a model that will never link is a waste, and a raw linker error is
not an answer. After the link, the ELF's section sizes are the truth: they go into the
report, and if the linker still refused, its overflow figure becomes the same one line.
"""

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
from mcuc.sim.protocol import parse_protocol
from mcuc.text import one_line, path_line

# Code estimate: runtime kernels + startup + system + driver, plus each step's call and
# kernel parameter struct, at -O2. Fitted on eight linked STM32F746 ELFs (15-63 steps):
# about 9.0 KB + 158 B per step; rounded up so the estimate stays an upper bound (the
# search's fit test checks the linked ELF never exceeds it). The base was raised from
# 10 to 11 KB when the portable kernels grew to 9,900 B of .text (the default model's
# portable build had come within 22 B of the old estimate). The ARMv7E-M kernel variants
# (board [cpu] dsp) add their own code beside the portable loops they fall back to:
# 19,584 B of .text (all runtime_c objects at -O2 for Cortex-M7, with minus without
# -DMCUC_ARM_DSP; the linker keeps at most that); rounded up. It was 15,888 B (16 KB
# allowance) before the linear loops took eight inputs per step (+~2 KB), the residual
# add's add_exact (+~600 B) and LayerNorm's ln_row10 and 16-byte statistics (+~1,100 B).
CODE_BASE_BYTES = 11 * 1024
CODE_DSP_EXTRA_BYTES = 20 * 1024
CODE_PER_STEP_BYTES = 160
# A board with ITCM (mcuc.tcm): the kernels copied there keep their load image in flash (so
# the code estimate stands), plus ld's 8-byte long-branch veneers for calls between flash and
# ITCM (in both directions) and .itcm_text's alignment. The default model has 19 veneers
# (152 B) on the stm32f746; allowance 1 KB.
CODE_TCM_EXTRA_BYTES = 1024
# --profile (main.c's step hooks and MCUC_STEP lines): two small functions and a call pair per
# step instead of two stores; allowance per build and per step. Data: one counter per step.
CODE_PROFILE_BYTES = 256
CODE_PROFILE_PER_STEP_BYTES = 16
# .data/.bss besides the arena: board state, the output line buffer, the input buffer.
DATA_BASE_BYTES = 512
ELF_NAME = "firmware.elf"
MAKE_TIMEOUT_S = 900.0
# The Unicorn run stops here (a firmware that never prints MCUC_DONE); the default model
# takes about 25 million instructions per inference, 100 million with the portable kernels
# (README).
MAX_INSTRUCTIONS = 2_000_000_000


@dataclass(frozen=True)
class Fit:
    """What one image needs of a board, in bytes (estimates before link)."""
    arena: int
    stack: int
    data: int
    weights: int
    code: int
    samples: int
    sram_limit: int
    flash_limit: int
    # The arena goes to the board's DTCM region (mcuc.tcm.arena_in_dtcm). The check still
    # counts it in `sram`, against the RAM size: DTCM gives speed, not capacity, here (an
    # upper bound; a search's --sram budget keeps meaning the model's whole RAM).
    arena_in_dtcm: bool = False
    # Weights placed in the board's external flash (weights_region "qspi"): they count there,
    # against qspi_limit, and not in `flash`.
    weights_external: bool = False
    qspi_limit: int = 0

    @property
    def sram(self) -> int:
        return self.arena + self.stack + self.data

    @property
    def flash(self) -> int:
        return (0 if self.weights_external else self.weights) + self.code + self.samples

    def problems(self) -> list[str]:
        """One phrase per memory that overflows, naming its largest consumer."""
        out = []
        if self.sram > self.sram_limit:
            parts = {"arena": self.arena, "stack": self.stack, "data": self.data}
            out.append(_phrase("SRAM", parts, self.sram, self.sram_limit))
        if self.flash > self.flash_limit:
            parts = {"weights": 0 if self.weights_external else self.weights,
                     "code": self.code, "samples": self.samples}
            out.append(_phrase("flash", parts, self.flash, self.flash_limit))
        if self.weights_external and self.weights > self.qspi_limit:
            out.append(f"weights {self.weights:,} B do not fit in {self.qspi_limit:,} B of "
                       f"QSPI flash (over by {self.weights - self.qspi_limit:,} bytes)")
        return out


def _phrase(memory: str, parts: dict[str, int], need: int, limit: int) -> str:
    culprit = max(parts, key=lambda k: parts[k])
    rest = ", ".join(f"{k} {v:,}" for k, v in parts.items() if k != culprit)
    return (f"{culprit} {parts[culprit]:,} B does not fit in {limit:,} B of {memory} "
            f"(with {rest}: {need:,} B, over by {need - limit:,} bytes)")


def estimate(board: Board, arena_bytes: int, weights_bytes: int, n_steps: int,
             input_size: int, output_size: int, n_samples: int, profile: bool = False,
             weights_region: str = "flash") -> Fit:
    data = DATA_BASE_BYTES + 5 * output_size + (input_size if board.semihosting else 0)
    samples = 0 if board.semihosting else n_samples * input_size
    code = _code_bytes(board, n_steps)
    if profile:
        data += 4 * n_steps
        code += CODE_PROFILE_BYTES + CODE_PROFILE_PER_STEP_BYTES * n_steps
    return Fit(arena=arena_bytes, stack=board.stack_bytes, data=data, weights=weights_bytes,
               code=code, samples=samples,
               sram_limit=board.sram_bytes, flash_limit=board.flash_bytes,
               arena_in_dtcm=tcm.arena_in_dtcm(board, arena_bytes),
               weights_external=weights_region == "qspi", qspi_limit=board.qspi_bytes)


def _code_bytes(board: Board, n_steps: int) -> int:
    extra = CODE_DSP_EXTRA_BYTES if board.dsp else 0
    extra += CODE_TCM_EXTRA_BYTES if board.itcm_bytes else 0
    return CODE_BASE_BYTES + extra + CODE_PER_STEP_BYTES * n_steps


def check_fit(board: Board, fit: Fit) -> None:
    """Raise the one-line 'does not fit' error when the estimate overflows a memory."""
    problems = fit.problems()
    if problems:
        raise McucError(f"model does not fit {board.name}: " + "; ".join(problems))


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


def elf_sizes(elf: Path, board: Board) -> dict[str, int]:
    """Section sizes from the ELF, grouped by memory (flash: vectors, text, rodata, the
    models' .<name>_weights and the images of .itcm_text and .data; RAM: stack reserve,
    data, bss, the models' .<name>_arena, wherever they are; ITCM: the hot kernels; DTCM:
    what lies in a DTCM region of its own; QSPI: weights placed in external flash)."""
    from elftools.elf.elffile import ELFFile

    sec: dict[str, int] = {}
    in_flash = in_ram = code = in_itcm = in_dtcm = in_qspi = 0
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        for s in ef.iter_sections():
            if not s["sh_flags"] & 0x2 or s["sh_size"] == 0:   # SHF_ALLOC
                continue
            name, size, addr = s.name, int(s["sh_size"]), int(s["sh_addr"])
            sec[name] = size
            if board.flash_origin <= addr < board.flash_origin + board.flash_bytes:
                in_flash += size
                if name != ".rodata" and not name.endswith("_weights"):
                    code += size   # vectors, text, exidx
            elif board.ram_origin <= addr < board.ram_origin + board.sram_bytes:
                in_ram += size
                if s["sh_type"] != "SHT_NOBITS":  # .data also occupies flash (its image)
                    in_flash += size
            elif board.itcm_origin <= addr < board.itcm_origin + board.itcm_bytes:
                in_itcm += size
                in_flash += size   # its load image
                code += size
            elif board.dtcm_origin <= addr < board.dtcm_origin + board.arena_dtcm_bytes:
                in_dtcm += size
                in_ram += size
                if s["sh_type"] != "SHT_NOBITS":
                    in_flash += size
            elif board.qspi_origin <= addr < board.qspi_origin + board.qspi_bytes:
                in_qspi += size
    return {
        "flash_bytes": in_flash, "ram_bytes": in_ram,
        "itcm_bytes": in_itcm, "dtcm_bytes": in_dtcm, "qspi_bytes": in_qspi,
        "text_bytes": code,
        "rodata_bytes": sec.get(".rodata", 0), "data_bytes": sec.get(".data", 0),
        "weights_section_bytes": sum(v for k, v in sec.items() if k.endswith("_weights")),
        "bss_bytes": sec.get(".bss", 0),
        "arena_section_bytes": sum(v for k, v in sec.items() if k.endswith("_arena")),
        "stack_reserve_bytes": sec.get(".stack", 0),
    }


def confirm_fit(board: Board, sizes: dict[str, int]) -> None:
    """The ELF is the final word: a linked image must sit inside the board's memories."""
    over = []
    if sizes["flash_bytes"] > board.flash_bytes:
        over.append(f"flash over by {sizes['flash_bytes'] - board.flash_bytes:,} bytes")
    if sizes["ram_bytes"] > board.sram_bytes:
        over.append(f"SRAM over by {sizes['ram_bytes'] - board.sram_bytes:,} bytes")
    for mem, limit in (("itcm", board.itcm_bytes), ("dtcm", board.arena_dtcm_bytes),
                       ("qspi", board.qspi_bytes)):
        if sizes.get(f"{mem}_bytes", 0) > limit:
            over.append(f"{mem.upper()} over by {sizes[f'{mem}_bytes'] - limit:,} bytes")
    if over:
        raise McucError(f"model does not fit {board.name} (ELF): {'; '.join(over)}")


def symbol(elf: Path, name: str) -> tuple[int, int]:
    """(address, size) of a global symbol."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        tab = ELFFile(f).get_section_by_name(".symtab")
        syms = tab.get_symbol_by_name(name) if tab is not None else None
        if not syms:
            raise McucError(f"{elf} has no symbol {name}")
        return int(syms[0]["st_value"]), int(syms[0]["st_size"])


def sample_models(elf: Path) -> list[str]:
    """The models whose inputs a flash-input firmware bakes in: the names of its
    `<name>_sample_count` constants (main.c), in address order."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        tab = ELFFile(f).get_section_by_name(".symtab")
        found = sorted((int(sym["st_value"]), sym.name[: -len("_sample_count")])
                       for sym in (tab.iter_symbols() if tab is not None else ())
                       if sym.name.endswith("_sample_count"))
    return [name for _, name in found]


def patch_samples(elf: Path, inputs: np.ndarray | dict[str, np.ndarray], dest: Path) -> Path:
    """Copy elf to dest with inputs written over the start of `<name>_samples` and
    `<name>_sample_count` set to their number (both in the flash image), so that an emulator
    runs the real firmware on exactly these inputs. `inputs` is one array (a firmware of one
    model) or {name: array}; models not named there run no input."""
    names = sample_models(elf)
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise McucError(f"{path_line(elf)} runs {len(names)} models; give inputs by name")
        inputs = {names[0]: inputs}
    values: dict[str, bytes] = {}
    for name in names:
        x = inputs.get(name)
        n = 0 if x is None else (x.shape[0] if np.ndim(x) > 1 else 1)
        if x is not None:
            data = np.ascontiguousarray(x, dtype=np.int8).tobytes()
            _, size = symbol(elf, f"{name}_samples")
            if len(data) > size:
                raise McucError(f"{n} inputs do not fit {name}_samples ({size} B); "
                                "rebuild with more --samples")
            values[f"{name}_samples"] = data
        values[f"{name}_sample_count"] = int(n).to_bytes(4, "little")
    unknown = set(inputs) - set(names)
    if unknown:
        raise McucError(f"{path_line(elf)} has no model {one_line(sorted(unknown)[0], 40)}")
    return patch_elf(elf, values, dest)


def patch_elf(elf: Path, values: dict[str, bytes], dest: Path) -> Path:
    """Copy elf to dest with each symbol's initial bytes replaced in its load segment."""
    from elftools.elf.elffile import ELFFile

    blob = bytearray(elf.read_bytes())
    with open(elf, "rb") as f:
        segs = [s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]
        for name, data in values.items():
            addr, size = symbol(elf, name)
            if len(data) > size:
                raise McucError(f"{len(data)} bytes do not fit {name} ({size} B)")
            for seg in segs:
                lo = int(seg["p_vaddr"])
                if lo <= addr and addr + size <= lo + int(seg["p_filesz"]):
                    off = int(seg["p_offset"]) + addr - lo
                    blob[off:off + len(data)] = data
                    break
            else:
                raise McucError(f"{name} of {elf} is not in a loadable segment")
    dest.write_bytes(bytes(blob))
    return dest


def render_mcu(board: Board, out: Path, model_name: str, samples_q: np.ndarray,
               profile: bool = False, name: str = "model",
               weights_region: str = "flash") -> None:
    """Everything board-specific beside the model sources of the model `name`: firmware,
    Renode files."""
    from mcuc.sim import renode

    render_firmware(board, out, [FwModel(name, samples_q, model_name, weights_region)],
                    profile)
    renode.write_files(out, board)


def unicorn_available() -> bool:
    try:
        from mcuc.sim import unicorn_m7
    except ImportError:
        return False
    return hasattr(unicorn_m7, "run_elf")


def run_unicorn(elf: Path, inputs: np.ndarray | dict[str, np.ndarray] | None = None,
                semihosted: bool = False,
                max_instructions: int = MAX_INSTRUCTIONS, chip: str = "stm32f746") -> dict:
    """Run the real ELF in the Unicorn engine on the model of ``chip`` (a board's ``chip``);
    returns the parsed protocol plus instruction counts and ``chip_state`` (the clocks and
    console baud rate the init set up). Inputs go over <name>_samples (flash boards; one
    array, or {name: array} for a firmware of several models, patch_samples) or into the
    semihosting file. res["by_model"] has each model's outputs.

    ``instructions`` / ``instructions_per_step``: the engine's exact count of the first
    inference (marker protocol). What the firmware's DWT printed (MCUC_CYCLES, and MCUC_STEP
    in a --profile build) comes back as ``dwt_instructions`` / ``dwt_instructions_per_step``
    (last inference): the engine's DWT counts retired instructions, not cycles."""
    import tempfile

    from mcuc.sim.unicorn_m7 import run_elf

    files = None
    with tempfile.TemporaryDirectory(prefix="mcuc-unicorn-") as tmp:
        path = elf
        if inputs is not None and semihosted:
            files = {"mcuc_inputs.bin": np.ascontiguousarray(inputs, np.int8).tobytes()}
        elif inputs is not None:
            path = patch_samples(elf, inputs, Path(tmp) / ELF_NAME)
        r = run_elf(str(path), semihost_files=files, profile=True,
                    max_instructions=max_instructions, chip=chip)
    if r.stopped_by == "max-instructions":
        raise McucError(f"firmware in Unicorn did not finish within {max_instructions:,} "
                        "instructions; stopped it")
    res = parse_protocol(r.stdout)
    if not res["done"] or res["status"] is None:
        tail = " | ".join(r.stdout.strip().splitlines()[-3:])
        raise McucError(f"firmware in Unicorn did not complete: {tail[:300]!r}")
    if res["status"] != 0:
        raise McucError(f"firmware in Unicorn reported MCUC_STATUS {res['status']}")
    res["instructions"] = int(r.instructions) if r.instructions else None
    res["dwt_instructions"] = res.pop("cycles")
    res["dwt_instructions_per_step"] = res.pop("cycles_per_step")
    res["chip_state"] = r.chip_state
    res["stdout"] = r.stdout
    res["instructions_per_step"] = {int(k): int(v) for k, v in
                                    (r.instructions_per_step or {}).items()}
    if r.stack_bytes is not None and res["stack_bytes"] is None:
        res["stack_bytes"] = int(r.stack_bytes)
    return res


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
