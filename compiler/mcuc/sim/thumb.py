"""The Thumb-2 decoding the Unicorn engine needs: where each instruction of a translation block
starts (to count them), and which FPU instructions the chip would refuse."""

from __future__ import annotations

from collections.abc import Callable

import capstone


def is_thumb32(halfword: int) -> bool:
    """Whether a Thumb instruction starting with ``halfword`` is 32 bits long."""
    return (halfword >> 11) in (0b11101, 0b11110, 0b11111)


class BlockDecoder:
    """Instruction offsets of code blocks, decoded with capstone once per (address, size)."""

    def __init__(self, read: Callable[[int, int], bytes]):
        self.read = read
        self._cs = capstone.Cs(capstone.CS_ARCH_ARM,
                               capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self._offsets: dict[int, list[int]] = {}

    def offsets(self, address: int, size: int) -> list[int]:
        key = address | (size << 32)
        offs = self._offsets.get(key)
        if offs is None:
            code = self.read(address, size)
            offs, pos = [], 0
            for insn in self._cs.disasm(code, address):
                if insn.address - address != pos:
                    break
                offs.append(pos)
                pos += insn.size
            while pos < size:  # capstone stopped early (undefined encoding): length rule
                offs.append(pos)
                pos += 4 if is_thumb32(code[pos] | code[pos + 1] << 8) else 2
            self._offsets[key] = offs
        return offs


def fpu_fault(code: bytes, offs: list[int], enabled: bool, fpu_double: bool,
              chip: str) -> tuple[int, str] | None:
    """The first FPU instruction (coprocessor 10/11) in ``code`` the chip would fault on, as
    (offset, reason): any while CPACR disables CP10/CP11 (``enabled`` False), or a
    double-precision data-processing one (coprocessor 11) on a single-precision FPU, which
    Unicorn's Cortex-M7 (double precision) would run. Not caught: VCVT.F64.F32 (coprocessor 10)."""
    if enabled and fpu_double:
        return None
    for o in offs:
        hw1, hw2 = (int.from_bytes(code[o + i:o + i + 2], "little") for i in (0, 2))
        if hw1 & 0xEC00 != 0xEC00 or (hw2 >> 9) & 7 != 5:
            continue
        if not enabled:
            return o, "FPU instruction while CPACR disables CP10/CP11 (NOCP UsageFault)"
        if hw1 & 0xEF00 == 0xEE00 and hw2 & 0x0F10 == 0x0B00:
            return o, (f"double-precision FPU instruction; the {chip} FPU is single precision "
                       "(UNDEFINSTR UsageFault)")
    return None
