"""The one ELF reader and patcher of the target layer: symbols, section sizes, and a copy
of a firmware with its <name>_samples (the inputs baked into flash) replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.boards import Board
from mcuc.sim.elfimage import ElfImage
from mcuc.text import one_line, path_line

ELF_NAME = "firmware.elf"   # the build's firmware, in its directory


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


def symbol(elf: Path, name: str) -> tuple[int, int]:
    """(address, size) of a global symbol."""
    syms = ElfImage(elf).symbols
    if name not in syms:
        raise McucError(f"{path_line(elf)} has no symbol {one_line(name, 60)}")
    addr, size = syms[name]
    return int(addr), int(size)


def sample_models(elf: Path | ElfImage) -> list[str]:
    """The models whose inputs a flash-input firmware bakes in: the names of its
    `<name>_sample_count` constants (main.c), in address order."""
    img = elf if isinstance(elf, ElfImage) else ElfImage(elf)
    found = sorted((int(addr), name[: -len("_sample_count")])
                   for name, (addr, _size) in img.symbols.items()
                   if name.endswith("_sample_count"))
    return [name for _, name in found]


def patch_samples(elf: Path, inputs: np.ndarray | dict[str, np.ndarray], dest: Path) -> Path:
    """Copy elf to dest with inputs written over the start of `<name>_samples` and
    `<name>_sample_count` set to their number (both in the flash image), so that an emulator
    runs the real firmware on exactly these inputs. `inputs` is one array (a firmware of one
    model) or {name: array}; models not named there run no input. The ELF is read once."""
    img = ElfImage(elf)
    names = sample_models(img)
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
            if f"{name}_samples" not in img.symbols:
                raise McucError(f"{path_line(elf)} has no symbol {name}_samples")
            _, size = img.symbols[f"{name}_samples"]
            if len(data) > size:
                raise McucError(f"{n} inputs do not fit {name}_samples ({size} B); "
                                "rebuild with more --samples")
            values[f"{name}_samples"] = data
        values[f"{name}_sample_count"] = int(n).to_bytes(4, "little")
    unknown = set(inputs) - set(names)
    if unknown:
        raise McucError(f"{path_line(elf)} has no model {one_line(sorted(unknown)[0], 40)}")
    dest.write_bytes(img.patched(values))
    return dest


def patch_elf(elf: Path, values: dict[str, bytes], dest: Path) -> Path:
    """Copy elf to dest with each symbol's initial bytes replaced in its load segment."""
    dest.write_bytes(ElfImage(elf).patched(values))
    return dest
