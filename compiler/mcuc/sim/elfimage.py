"""What the emulator needs from a Cortex-M firmware ELF: load segments, symbols, the vector
table (initial SP + reset PC) and the memory to map."""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

from mcuc import McucError

PAGE = 0x1000
VECTOR_SECTIONS = (".isr_vector", ".vectors", ".vector_table", ".isr_vectors")


class ElfImage:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            fh = open(self.path, "rb")
        except OSError as e:
            raise McucError(f"cannot read firmware {self.path}: {e.strerror}") from None
        with fh:
            elf = ELFFile(fh)
            if elf["e_machine"] != "EM_ARM":
                raise McucError(f"{self.path} is not an ARM ELF")
            # (vaddr, paddr, filesz, memsz, file bytes)
            loads = [seg for seg in elf.iter_segments()
                     if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]]
            self.segments: list[tuple[int, int, int, int, bytes]] = [
                (seg["p_vaddr"], seg["p_paddr"], seg["p_filesz"], seg["p_memsz"], seg.data())
                for seg in loads]
            self.offsets = [int(seg["p_offset"]) for seg in loads]   # in the file
            self.sections = {sec.name: sec["sh_addr"] for sec in elf.iter_sections()
                             if sec["sh_flags"] & 2}  # SHF_ALLOC
            self.symbols: dict[str, tuple[int, int]] = {}  # name -> (address, size)
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                for s in symtab.iter_symbols():
                    if s.name and s["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC", "STT_NOTYPE"):
                        self.symbols.setdefault(s.name, (s["st_value"], s["st_size"]))
        if not self.segments:
            raise McucError(f"{self.path} has no loadable segments")
        # the vector table: a section named like one, else the lowest load address
        vt = next((self.lma(self.sections[n]) for n in VECTOR_SECTIONS if n in self.sections),
                  None)
        if vt is None:
            vt = min(paddr for _v, paddr, filesz, _m, _d in self.segments if filesz >= 8)
        seg = next((s for s in self.segments if s[1] <= vt < s[1] + s[2] - 7), None)
        if seg is None:
            raise McucError(f"{self.path}: no vector table at 0x{vt:08x}")
        self.initial_sp, self.entry = struct.unpack("<II", seg[4][vt - seg[1]:vt - seg[1] + 8])
        if not self.entry & 1:
            raise McucError(f"{self.path}: reset vector 0x{self.entry:08x} is not a Thumb "
                            "address")

    def patched(self, values: dict[str, bytes]) -> bytes:
        """The file's bytes with each symbol's initial bytes replaced where its segment's
        file image holds them, so that what is loaded (and what startup code copies to
        RAM) is the new value: the one ELF patcher (target/elf.patch_samples uses it)."""
        blob = bytearray(self.path.read_bytes())
        for name, data in values.items():
            if name not in self.symbols:
                raise McucError(f"{self.path.name} has no symbol {name}")
            addr, size = self.symbols[name]
            if len(data) > size:
                raise McucError(f"{len(data)} bytes do not fit {name} ({size} B)")
            for (vaddr, _p, filesz, _m, _d), off in zip(self.segments, self.offsets,
                                                        strict=True):
                if vaddr <= addr and addr + len(data) <= vaddr + filesz:
                    blob[off + addr - vaddr:off + addr - vaddr + len(data)] = data
                    break
            else:
                raise McucError(f"{name} of {self.path.name} is not initialised data (in no "
                                "loaded segment's file image)")
        return bytes(blob)

    def lma(self, vaddr: int) -> int:
        """Load address of a virtual address inside a segment's file image."""
        for v, p, filesz, _m, _d in self.segments:
            if v <= vaddr < v + filesz:
                return vaddr - v + p
        return vaddr

    def memory(self, memory_regions: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
        """[lo, hi) page ranges to map as RAM: every segment at its VMA and LMA, plus
        ``memory_regions`` ((base, size) pairs) or, by default, RAM from the end of the data
        segment below the initial SP up to the SP (heap and stack)."""
        ranges = []
        for vaddr, paddr, filesz, memsz, _data in self.segments:
            ranges.append((vaddr, vaddr + memsz))
            if filesz:
                ranges.append((paddr, paddr + filesz))
        if memory_regions:
            ranges += [(b, b + s) for b, s in memory_regions]
        else:
            sp = self.initial_sp
            below = [v + m for v, _p, _f, m, _d in self.segments
                     if v + m <= sp and sp - (v + m) < 0x0100_0000]
            ranges.append((max(below) if below else sp - 0x1_0000, sp))
        return merge_pages(ranges)


def merge_pages(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi) ranges widened to whole pages, overlapping or touching ones merged."""
    out: list[list[int]] = []
    for lo, hi in sorted((lo & ~(PAGE - 1), (hi + PAGE - 1) & ~(PAGE - 1)) for lo, hi in ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]
