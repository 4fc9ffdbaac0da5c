"""Small register models of the ARMv7-M system region (ITM, DWT, SCS) and the bus that routes
MMIO accesses to them and to a chip's vendor peripherals (:mod:`mcuc.sim.stm32_periph`).

Each peripheral is a block of 32-bit registers. A register reads back what was last written
(or its reset value); the few behaviours firmware polls for are declared as data:

* ``mirrors``: ``(src_reg, src_lsb, width, dst_reg, dst_lsb)`` -- at read time the field at
  ``dst`` shows the field at ``src`` (e.g. PWR_CSR1.ODRDY follows PWR_CR1.ODEN, USART_ISR.TEACK
  follows USART_CR1.TE).
* ``always_set``: ``{reg: mask}`` -- bits that always read as 1 (USART_ISR.TXE/TC).

Accesses that hit no model are served by a plain store (last written value, else 0) and are
logged once per address on the ``mcuc.sim`` logger, so a firmware that waits on something
unmodelled is diagnosable (:attr:`Bus.unmodelled` lists them).

Time-dependent registers (DWT_CYCCNT, SysTick) use the emulator's retired-instruction count as
their clock: one instruction = one cycle. No exceptions/interrupts are delivered (SysTick only
counts down and sets COUNTFLAG, which polling code can use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("mcuc.sim")

Mirror = tuple[int, int, int, int, int]  # src_reg, src_lsb, width, dst_reg, dst_lsb


@dataclass(frozen=True)
class CoreId:
    """What the system control space tells about the core: CPUID, MVFR0 and the L1 caches'
    CCSIDR (data, instruction; 0 when the core has no caches, as the Cortex-M4)."""

    cpuid: int = 0x410F_C271        # Cortex-M7 r0p1 (STM32F74x)
    mvfr0: int = 0x1011_0021        # single-precision FPU
    ccsidr: tuple[int, int] = (0xF003_E019, 0x7007_E009)  # 4 KiB D (4-way), 4 KiB I (2-way)


class Peripheral:
    """A register block: store/readback plus declarative mirrors and always-set bits."""

    mirrors: tuple[Mirror, ...] = ()
    always_set: dict[int, int] = {}
    reset: dict[int, int] = {}

    def __init__(self, name: str, base: int, size: int = 0x400):
        self.name, self.base, self.size = name, base, size
        self.regs: dict[int, int] = dict(self.reset)

    def read(self, off: int) -> int:
        """Word-aligned read of register at offset ``off``."""
        v = self.regs.get(off, 0)
        for src, lsb, width, dst, dlsb in self.mirrors:
            if dst == off:
                mask = (1 << width) - 1
                field = (self.regs.get(src, 0) >> lsb) & mask
                v = (v & ~(mask << dlsb)) | (field << dlsb)
        return (v | self.always_set.get(off, 0)) & 0xFFFFFFFF

    def write(self, off: int, value: int, size: int) -> None:
        """Word-aligned write; ``value`` is already merged with the stored word for sub-word
        accesses."""
        self.regs[off] = value & 0xFFFFFFFF


class DWT(Peripheral):
    """DWT @0xE0001000. CYCCNT (0x04) is the emulator's retired-instruction count (instructions
    retired before the reading instruction), offset so that writes set it; it always runs."""

    reset = {0x00: 0x4000_0000}  # CTRL: 4 comparators, cycle counter present

    def __init__(self, name: str, base: int, clock: Callable[[], int]):
        super().__init__(name, base, 0x1000)
        self.clock = clock
        self.offset = 0

    def read(self, off: int) -> int:
        if off == 0x04:
            return (self.clock() + self.offset) & 0xFFFFFFFF
        return super().read(off)

    def write(self, off: int, value: int, size: int) -> None:
        if off == 0x04:
            self.offset = value - self.clock()
        super().write(off, value, size)


class ITM(Peripheral):
    """ITM @0xE0000000: stimulus ports always ready (read 1); port writes go to ``tx``."""

    def __init__(self, name: str, base: int, tx: Callable[[bytes], None]):
        super().__init__(name, base, 0x1000)
        self.tx = tx

    def read(self, off: int) -> int:
        return 1 if off < 0x80 else super().read(off)

    def write(self, off: int, value: int, size: int) -> None:
        if off < 0x80:
            self.tx((value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
        super().write(off, value, size)


class SCS(Peripheral):
    """System control space @0xE000E000 (SysTick, NVIC, SCB, MPU, FPU, CoreDebug).

    SysTick counts down one per retired instruction while CSR.ENABLE is set and sets COUNTFLAG on
    wrap (cleared by reading CSR); no exception is taken. CPUID, MVFR0 and the cache ID registers
    come from the :class:`CoreId`; SCB.CCSIDR answers per CSSELR so cache maintenance loops walk
    the chip's real geometry (a core without caches reads 0 there). CPACR is only stored: the
    engine checks it when it decodes FPU instructions.
    """

    CPUID, CCSIDR, CSSELR = 0xD00, 0xD80, 0xD84
    reset = {
        0xD00: 0x410F_C271,  # CPUID: Cortex-M7 r0p1 (STM32F74x)
        0xD14: 0x0000_0200,  # CCR.STKALIGN
        0xD78: 0x0900_0003,  # CLIDR: L1 I+D
        0xD7C: 0x8303_C003,  # CTR
        0xD90: 0x0000_0800,  # MPU_TYPE: 8 regions
        0xF34: 0xC000_0000,  # FPCCR
        0xF40: 0x1011_0021,  # MVFR0 (single precision)
        0x01C: 0x4000_0000,  # SysTick CALIB: NOREF
    }

    def __init__(self, name: str, base: int, clock: Callable[[], int], core: CoreId):
        super().__init__(name, base, 0x1000)
        self.clock, self.core = clock, core
        self.regs.update({self.CPUID: core.cpuid, 0xF40: core.mvfr0})
        if not any(core.ccsidr):
            self.regs.update({0xD78: 0, 0xD7C: 0})  # no CLIDR/CTR contents without caches
        self.st_start = 0     # clock when the counter was last (re)loaded
        self.st_seen = 0      # wraps already reported through COUNTFLAG

    def _systick(self) -> tuple[int, int]:
        """(current value, times it counted down to 0 since it was (re)started)."""
        reload = (self.regs.get(0x14, 0) & 0xFFFFFF) + 1
        start = self.regs.get(0x18, 0)
        if not self.regs.get(0x10, 0) & 1 or reload <= 1:
            return start, self.st_seen
        t = self.clock() - self.st_start
        if t <= start:
            return start - t, int(t == start and start > 0)
        u = t - start
        return (reload - u % reload) % reload, u // reload + (1 if start > 0 else 0)

    def read(self, off: int) -> int:
        if off == 0x10:  # SYST_CSR
            _, wraps = self._systick()
            flag = (1 << 16) if wraps > self.st_seen else 0
            self.st_seen = wraps
            return (self.regs.get(0x10, 0) & ~(1 << 16)) | flag
        if off == 0x18:  # SYST_CVR
            return self._systick()[0]
        if off == self.CCSIDR:
            return self.core.ccsidr[self.regs.get(self.CSSELR, 0) & 1]
        return super().read(off)

    def write(self, off: int, value: int, size: int) -> None:
        if off == 0x10:  # SYST_CSR: freeze/restart the counter
            cur, _ = self._systick()
            self.regs[0x18] = cur
            self.st_start, self.st_seen = self.clock(), 0
        elif off == 0x18:  # any write clears the counter
            value, self.st_start, self.st_seen = 0, self.clock(), 0
        elif off == self.CPUID:
            return
        super().write(off, value, size)


class Bus:
    """Routes MMIO accesses in the peripheral window and the system region to the models."""

    def __init__(self, tx: Callable[[bytes], None], clock: Callable[[], int],
                 core: CoreId = CoreId(), vendor: list[Peripheral] | tuple = ()):
        devs: list[Peripheral] = [
            ITM("ITM", 0xE000_0000, tx),
            DWT("DWT", 0xE000_1000, clock),
            SCS("SCS", 0xE000_E000, clock, core),
            *vendor,
        ]
        self.devices = devs
        self._by_kb: dict[int, Peripheral] = {}
        for d in devs:
            for kb in range(d.base >> 10, (d.base + d.size) >> 10):
                self._by_kb[kb] = d
        self.store: dict[int, int] = {}
        self.unmodelled: dict[int, str] = {}

    def device(self, name: str) -> Peripheral:
        return next(d for d in self.devices if d.name == name)

    def _word_read(self, addr: int) -> int:
        dev = self._by_kb.get(addr >> 10)
        if dev is not None:
            return dev.read(addr - dev.base)
        self._note(addr, "read")
        return self.store.get(addr, 0)

    def read(self, addr: int, size: int) -> int:
        shift = 8 * (addr & 3)
        word = self._word_read(addr & ~3)
        return (word >> shift) & ((1 << (8 * size)) - 1)

    def write(self, addr: int, size: int, value: int) -> None:
        waddr, shift = addr & ~3, 8 * (addr & 3)
        dev = self._by_kb.get(waddr >> 10)
        if size < 4:
            mask = ((1 << (8 * size)) - 1) << shift
            old = dev.regs.get(waddr - dev.base, 0) if dev else self.store.get(waddr, 0)
            value = (old & ~mask) | ((value << shift) & mask)
        if dev is not None:
            dev.write(waddr - dev.base, value, size)
        else:
            self._note(waddr, "write")
            self.store[waddr] = value & 0xFFFFFFFF

    def _note(self, addr: int, kind: str) -> None:
        if addr not in self.unmodelled:
            self.unmodelled[addr] = kind
            log.info("unmodelled peripheral %s at 0x%08x", kind, addr)
