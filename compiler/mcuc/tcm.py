"""Tightly coupled memory: which hot kernels run from ITCM, whether the arena lives in DTCM.

A board declares its TCMs in board.toml (``[memory] itcm``/``dtcm``). The choice is made from
the compiled objects, before the link, so that it is exact rather than hoped for:

- ITCM: the runtime kernels named in :data:`ITCM_FUNCTIONS`, in that priority order, each
  taken when it still fits (greedy; ``-ffunction-sections`` gives every function its own
  ``.text.<name>`` input section, with suffixes such as ``.isra.0`` for gcc's clones). A call
  between ITCM (0x00000000) and flash (0x08000000) is out of a Thumb BL's +-16 MB reach, so
  ld adds an 8-byte long-branch veneer in the caller's output section for each callee out of
  reach; every call relocation of a chosen section is counted as one such veneer (an upper
  bound: ld shares a veneer between calls to one callee), so the chosen set plus its veneers
  always fits and the link never overflows the ITCM. What does not fit stays in .text.
- DTCM: each model's arena (the ``.<name>_arena`` section, in the order the firmware lists the
  models) goes to a DTCM region of its own when the board has one apart from its RAM (STM32H7)
  and it still fits there, rounded up to 8 bytes; otherwise it stays in RAM. Where the
  DTCM opens the RAM region (STM32F7) the layout does not change: the stack, .data, .bss and
  the arena already start at the bottom of RAM, which is DTCM as far as it reaches.

The linker script (templates/linker_cortexm.ld.j2) is rendered again with the choice; the
map file (firmware.map) shows it, and the fit estimate (mcuc.target.fit.estimate) counts the
ITCM image in flash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcuc.boards import Board

# Hot kernels, hottest first (by their share of the default model's instructions): the linear
# core (its dispatcher, the plans a ViT runs: short epilogue with k % 16 == 0, int8 or widened
# weights) and its dot products, attention (QK^T, softmax: the pair path's, then the row
# path's, AV), the token-wise block with its fused LayerNorm, then the linear plans with a
# table in their epilogue (hot too, but the F746's 16 KB ITCM then has no room left for the
# token-wise block: those go where the room allows), then the element-wise and
# standalone kernels, then the patch embedding (once per inference), then the linear plans
# other layers take. Names of both kernel variants; a
# name without a section in the build is skipped.
ITCM_FUNCTIONS: tuple[str, ...] = (
    "mcuc_linear_planned_s8", "mcuc_lin_short16", "mcuc_lin_wide_short16",
    "mcuc_att_dot_pair", "dot1", "mcuc_attention_s8", "softmax_pairs", "mcuc_att_softmax_dsp",
    "mcuc_att_pv_rows2", "mcuc_att_pv_dsp2", "pv_dsp",
    "mcuc_tokenwise_s8", "ln_rows16", "ln_row16",
    "mcuc_lin_short16_lut", "mcuc_lin_wide_short16_lut", "mcuc_linear_lut_planned_s8",
    "mcuc_lut_s8", "mcuc_add_s8", "add_tab", "mcuc_layernorm_s8", "ln_near", "mcuc_ln_exact",
    "ln_rest16", "ln_fast",
    "mcuc_linear_s8", "mcuc_requantize", "mcuc_softmax_s8", "mcuc_matmul_s8",
    "mcuc_patch_embed_s8", "mcuc_pe_wide16", "fill_patch", "mcuc_pe_large_fast", "dot_rows2",
    "dot_rows1", "mcuc_pe_large_any", "out_any",
    "mcuc_lin_short", "mcuc_lin_wide_short", "mcuc_lin_general", "mcuc_lin_wide_general",
    "mcuc_lin_row1",
)
VENEER_BYTES = 8          # Thumb-2 long branch: ldr.w pc, [pc, #-0]; .word target
SECTION_ALIGN = 8         # .itcm_text's own alignment at its start and end
# R_ARM_THM_CALL (BL) and R_ARM_THM_JUMP24 (B.W tail call): the relocations that need a veneer
# when caller and callee are too far apart.
_CALL_RELOCS = (10, 30)


@dataclass(frozen=True)
class Placement:
    """What the linker script puts in the TCMs."""
    itcm_sections: tuple[str, ...] = ()   # input section names for .itcm_text, in order
    itcm_bound: int = 0                   # their bytes plus veneers and padding (upper bound)
    dtcm_arenas: tuple[str, ...] = ()     # model names whose .<name>_arena is in DTCM

    @property
    def arena_in_dtcm(self) -> bool:
        return bool(self.dtcm_arenas)


def arena_in_dtcm(board: Board, arena_bytes: int) -> bool:
    """True when the board has a DTCM region of its own and the arena fits it."""
    return bool(board.arena_dtcm_bytes) and _align(arena_bytes, 8) <= board.arena_dtcm_bytes


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _text_sections(objects: list[Path]) -> dict[str, list[tuple[int, int, int]]]:
    """Every '.text.*' input section of the objects by name: (size, alignment, calls) per
    object that has one."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    out: dict[str, list[tuple[int, int, int]]] = {}
    for obj in objects:
        with open(obj, "rb") as f:
            elf = ELFFile(f)
            calls: dict[int, int] = {}
            for sec in elf.iter_sections():
                if isinstance(sec, RelocationSection):
                    n = sum(1 for r in sec.iter_relocations()
                            if r["r_info_type"] in _CALL_RELOCS)
                    calls[int(sec["sh_info"])] = n
            for i, sec in enumerate(elf.iter_sections()):
                if sec.name.startswith(".text.") and sec["sh_size"]:
                    out.setdefault(sec.name, []).append(
                        (int(sec["sh_size"]), max(1, int(sec["sh_addralign"])),
                         calls.get(i, 0)))
    return out


def _matches(function: str, section: str) -> bool:
    return section == f".text.{function}" or section.startswith(f".text.{function}.")


def _arena_bytes(objects: list[Path], name: str) -> int:
    """Size of the '.<name>_arena' input sections (the model's static arena in <name>.c)."""
    from elftools.elf.elffile import ELFFile

    total = 0
    for obj in objects:
        with open(obj, "rb") as f:
            sec = ELFFile(f).get_section_by_name(f".{name}_arena")
            total += int(sec["sh_size"]) if sec is not None else 0
    return total


def dtcm_arenas(board: Board, objects: list[Path], names: list[str]) -> tuple[str, ...]:
    """The models whose arenas go to DTCM: in order, each that still fits (8-byte aligned)."""
    chosen: list[str] = []
    used = 0
    for name in names:
        need = _align(_arena_bytes(objects, name), 8)
        if board.arena_dtcm_bytes and need and used + need <= board.arena_dtcm_bytes:
            chosen.append(name)
            used += need
    return tuple(chosen)


def choose(board: Board, objects: list[Path], names: list[str]) -> Placement:
    """The placement for these compiled objects of the models `names` on `board` (see the
    module docstring)."""
    dtcm = dtcm_arenas(board, objects, names)
    if not board.itcm_bytes:
        return Placement(dtcm_arenas=dtcm)
    sections = _text_sections(objects)
    chosen: list[str] = []
    used = 0   # bytes from the ITCM origin, alignment padding included
    veneers = 0
    for fn in ITCM_FUNCTIONS:
        for name in sorted(s for s in sections if _matches(fn, s) and s not in chosen):
            end, calls = used, 0
            for size, align, n in sections[name]:
                end = _align(end, align) + size
                calls += n
            bound = _align(end, SECTION_ALIGN) + VENEER_BYTES * (veneers + calls)
            if bound <= board.itcm_bytes:
                chosen.append(name)
                used, veneers = end, veneers + calls
    bound = _align(used, SECTION_ALIGN) + VENEER_BYTES * veneers if chosen else 0
    return Placement(tuple(chosen), bound, dtcm)
