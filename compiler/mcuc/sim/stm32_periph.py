"""Register models of the STM32 peripherals mcuc's board init touches: RCC, PWR, GPIO, USART.

Three families, from their reference manuals: STM32F4 (RM0090: F427), STM32F7 (RM0385: F746)
and STM32H7 (RM0433: H743). Ready flags follow their enable bits (an oscillator that is on is
ready, a PLL whose input is ready locks, the clock switch takes a ready source), so clock init
code runs its real sequence and its polls terminate; a PLL fed from an oscillator that is off or
absent (``hse_hz`` 0: no crystal on the board) never locks, and a switch to a source that is not
ready does not happen, as on silicon. No timing is modelled: flags are ready at once.

The RCC models also compute the clock tree the firmware set up (:meth:`RccF4F7.clocks`,
:meth:`RccH7.clocks`): system, CPU and APB2 clocks from the PLL and prescaler fields, so a test
can check that the init reaches the board's clock and that the console's BRR gives its baud rate.
Each USART transmits only while enabled (UE and TE) and records the baud rate of what it sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mcuc.sim.armv7m_periph import Peripheral

log = logging.getLogger("mcuc.sim")

MHZ = 1_000_000
_AHB_DIV = {8: 2, 9: 4, 10: 8, 11: 16, 12: 64, 13: 128, 14: 256, 15: 512}  # HPRE, D1CPRE
_APB_DIV = {4: 2, 5: 4, 6: 8, 7: 16}                                     # PPREx, D2PPREx


def _field(value: int, lsb: int, width: int) -> int:
    return (value >> lsb) & ((1 << width) - 1)


class RccF4F7(Peripheral):
    """RCC @0x40023800 of the F4/F7 (same layout for what is modelled): HSI (16 MHz) and HSE
    ready follow HSION/HSEON (HSE only when the board has one), the main PLL locks when on and its
    source is ready, CFGR.SWS takes CFGR.SW when that source is ready."""

    HSI_HZ = 16 * MHZ
    reset = {0x00: 0x0000_0083, 0x04: 0x2400_3010, 0x74: 0x0E00_0000}
    mirrors = (
        (0x00, 26, 1, 0x00, 27),  # PLLI2SON -> PLLI2SRDY
        (0x00, 28, 1, 0x00, 29),  # PLLSAION -> PLLSAIRDY (F42x/F7)
        (0x70, 0, 1, 0x70, 1),    # BDCR.LSEON -> LSERDY
        (0x74, 0, 1, 0x74, 1),    # CSR.LSION -> LSIRDY
    )

    def __init__(self, name: str, base: int, hse_hz: int):
        super().__init__(name, base)
        self.hse_hz = hse_hz
        self.sws = 0

    def _ready(self, src: str) -> bool:
        cr = self.regs.get(0x00, 0)
        if src == "hsi":
            return bool(cr & 1)
        if src == "hse":
            return bool(cr & (1 << 16)) and self.hse_hz > 0
        pll_src = "hse" if self.regs.get(0x04, 0) & (1 << 22) else "hsi"
        return bool(cr & (1 << 24)) and self._ready(pll_src)

    def read(self, off: int) -> int:
        v = super().read(off)
        if off == 0x00:
            v &= ~((1 << 1) | (1 << 17) | (1 << 25))
            v |= (self._ready("hsi") << 1) | (self._ready("hse") << 17) | (self._ready("pll") << 25)
        elif off == 0x08:
            v = (v & ~(3 << 2)) | (self.sws << 2)
        return v

    def write(self, off: int, value: int, size: int) -> None:
        super().write(off, value, size)
        if off == 0x08:
            sw = value & 3
            if sw < 3 and self._ready(("hsi", "hse", "pll")[sw]):
                self.sws = sw

    def clocks(self) -> dict:
        """Frequencies (Hz) the registers select now, plus what is out of the RM's limits."""
        pllcfgr, cfgr, problems = self.regs.get(0x04, 0), self.regs.get(0x08, 0), []
        src = self.hse_hz if pllcfgr & (1 << 22) else self.HSI_HZ
        m, n = _field(pllcfgr, 0, 6), _field(pllcfgr, 6, 9)
        p = 2 * (_field(pllcfgr, 16, 2) + 1)
        pll = src * n // (m * p) if m else 0
        if self.sws == 2:
            if not 2 <= m or not 1 * MHZ <= src / m <= 2 * MHZ:
                problems.append(f"PLL input {src / max(m, 1) / MHZ:g} MHz not in 1-2 MHz")
            if not 100 * MHZ <= src * n / max(m, 1) <= 432 * MHZ:
                problems.append(f"VCO {src * n / max(m, 1) / MHZ:g} MHz not in 100-432 MHz")
        sysclk = (self.HSI_HZ, self.hse_hz, pll, 0)[self.sws]
        hclk = sysclk // _AHB_DIV.get(_field(cfgr, 4, 4), 1)
        return {"sysclk_hz": sysclk, "cpu_hz": hclk, "hclk_hz": hclk,
                "pclk2_hz": hclk // _APB_DIV.get(_field(cfgr, 13, 3), 1), "problems": problems}


class RccH7(Peripheral):
    """RCC @0x58024400 of the H7 (RM0433): HSI 64 MHz (/HSIDIV), CSI 4 MHz and HSE ready follow
    their ON bits, PLL1 locks when on and its PLLCKSELR source is ready, CFGR.SWS (3 bits) takes
    SW when that source is ready. PLL2/3 ready follow their ON bits."""

    CSI_HZ = 4 * MHZ
    reset = {0x00: 0x0000_0025, 0x28: 0x0202_0200, 0x2C: 0x01FF_0000, 0x30: 0x0101_0280}
    mirrors = ((0x00, 12, 1, 0x00, 13),   # HSI48ON -> HSI48RDY
               (0x00, 26, 1, 0x00, 27),   # PLL2ON -> PLL2RDY
               (0x00, 28, 1, 0x00, 29))   # PLL3ON -> PLL3RDY
    always_set = {0x00: (1 << 5) | (1 << 14) | (1 << 15)}  # HSIDIVF, D1CKRDY, D2CKRDY

    def __init__(self, name: str, base: int, hse_hz: int):
        super().__init__(name, base)
        self.hse_hz = hse_hz
        self.sws = 0

    def _source_hz(self, src: int) -> int:
        """0 HSI, 1 CSI, 2 HSE (as SW and PLLSRC number them)."""
        hsi = 64 * MHZ >> _field(self.regs.get(0x00, 0), 3, 2)
        return (hsi, self.CSI_HZ, self.hse_hz, 0)[src]

    def _ready(self, src: int) -> bool:
        cr = self.regs.get(0x00, 0)
        if src == 3:  # PLL1
            return bool(cr & (1 << 24)) and self._ready(self.regs.get(0x28, 0) & 3)
        on = (cr & 1, cr & (1 << 7), cr & (1 << 16) and self.hse_hz > 0, 0)[src]
        return bool(on)

    def read(self, off: int) -> int:
        v = super().read(off)
        if off == 0x00:
            v &= ~((1 << 2) | (1 << 8) | (1 << 17) | (1 << 25))
            v |= ((self._ready(0) << 2) | (self._ready(1) << 8) | (self._ready(2) << 17)
                  | (self._ready(3) << 25))
        elif off == 0x10:
            v = (v & ~(7 << 3)) | (self.sws << 3)
        return v

    def write(self, off: int, value: int, size: int) -> None:
        super().write(off, value, size)
        if off == 0x10 and (value & 7) <= 3 and self._ready(value & 7):
            self.sws = value & 7

    def clocks(self) -> dict:
        """Frequencies (Hz) the registers select now, plus what is out of the RM's limits."""
        r, problems = self.regs, []
        src = self._source_hz(r.get(0x28, 0) & 3)
        m = _field(r.get(0x28, 0), 4, 6)
        divr = r.get(0x30, 0)
        n, p = _field(divr, 0, 9) + 1, _field(divr, 9, 7) + 1
        pll = src * n // (m * p) if m else 0
        if self.sws == 3:
            ref = src / max(m, 1)
            if not m or not 1 * MHZ <= ref <= 16 * MHZ:
                problems.append(f"PLL1 input {ref / MHZ:g} MHz not in 1-16 MHz")
            if not 150 * MHZ <= ref * n <= 960 * MHZ:
                problems.append(f"PLL1 VCO {ref * n / MHZ:g} MHz not in 150-960 MHz")
            if p > 1 and p % 2:
                problems.append(f"PLL1 DIVP {p} is odd")
        sysclk = (self._source_hz(0), self.CSI_HZ, self.hse_hz, pll)[self.sws]
        d1 = r.get(0x18, 0)
        cpu = sysclk // _AHB_DIV.get(_field(d1, 8, 4), 1)
        hclk = cpu // _AHB_DIV.get(_field(d1, 0, 4), 1)
        pclk2 = hclk // _APB_DIV.get(_field(r.get(0x1C, 0), 8, 3), 1)
        return {"sysclk_hz": sysclk, "cpu_hz": cpu, "hclk_hz": hclk, "pclk2_hz": pclk2,
                "problems": problems}


class PwrF4F7(Peripheral):
    """PWR @0x40007000 of the F4/F7: CSR(1).ODRDY/ODSWRDY follow CR(1).ODEN/ODSWEN (over-drive,
    needed above 168 MHz on the F427 and 180 MHz on the F746); VOSRDY always set."""

    reset = {0x00: 0x0000_C000}
    mirrors = ((0x00, 16, 1, 0x04, 16), (0x00, 17, 1, 0x04, 17))
    always_set = {0x04: 1 << 14}

    def overdrive(self) -> bool:
        return bool(self.read(0x04) & (1 << 17))


class PwrH7(Peripheral):
    """PWR @0x58024800 of the H7: CSR1.ACTVOSRDY and D3CR.VOSRDY always set, CSR1.ACTVOS
    follows D3CR.VOS. Reset: LDO on with SCUEN (CR3), VOS3 (D3CR)."""

    reset = {0x00: 0xF000_C000, 0x04: 0x0000_4000, 0x0C: 0x0000_0006, 0x18: 0x0000_4000}
    mirrors = ((0x18, 14, 2, 0x04, 14),)
    always_set = {0x04: 1 << 13, 0x18: 1 << 13}


class GPIO(Peripheral):
    """GPIOx: store/readback; BSRR sets/resets ODR bits; IDR reads ODR (outputs loop back)."""

    def read(self, off: int) -> int:
        if off == 0x10:
            return self.regs.get(0x14, 0) & 0xFFFF
        return super().read(off)

    def write(self, off: int, value: int, size: int) -> None:
        if off == 0x18:  # BSRR
            odr = self.regs.get(0x14, 0)
            self.regs[0x14] = (odr | (value & 0xFFFF)) & ~(value >> 16) & 0xFFFF
            return
        super().write(off, value, size)


class USART(Peripheral):
    """USARTx, F7/H7 layout (CR1 0x00, BRR 0x0C, ISR 0x1C, TDR 0x28; H7 adds PRESC 0x2C):
    ISR.TXE/TC always set, TEACK/REACK follow CR1.TE/RE. A TDR write while CR1.UE and TE are set
    sends its low byte to ``tx``; otherwise the byte is lost, as on silicon."""

    DATA, BRR, CR1, ENABLE = 0x28, 0x0C, 0x00, (1 << 0) | (1 << 3)
    reset = {0x1C: 0x0000_00C0}
    always_set = {0x1C: (1 << 7) | (1 << 6)}
    mirrors = ((0x00, 3, 1, 0x1C, 21), (0x00, 2, 1, 0x1C, 22))
    _PRESC = (1, 2, 4, 6, 8, 10, 12, 16, 32, 64, 128, 256)

    def __init__(self, name: str, base: int, tx: Callable[[bytes], None],
                 kernel_hz: Callable[[], int]):
        super().__init__(name, base)
        self.tx, self.kernel_hz = tx, kernel_hz
        self.bauds: set[int] = set()   # baud rates the sent bytes went out at
        self.dropped = 0               # bytes written while the USART was disabled

    def baud(self) -> int:
        """Baud rate from the kernel clock and BRR (oversampling by 16), 0 if BRR is 0."""
        presc = self._PRESC[min(self.regs.get(0x2C, 0) & 0xF, 11)]
        brr = self.regs.get(self.BRR, 0) & 0xFFFF
        return round(self.kernel_hz() / presc / brr) if brr else 0

    def write(self, off: int, value: int, size: int) -> None:
        if off == self.DATA:
            if self.regs.get(self.CR1, 0) & self.ENABLE == self.ENABLE:
                self.bauds.add(self.baud())
                self.tx(bytes([value & 0xFF]))
            else:
                if not self.dropped:
                    log.info("%s: byte written while the USART is disabled (lost)", self.name)
                self.dropped += 1
        super().write(off, value, size)


class UsartF4(USART):
    """USARTx, F4 layout (SR 0x00, DR 0x04, BRR 0x08, CR1 0x0C; UE is CR1 bit 13): SR.TXE/TC
    always set. BRR is the divider as mantissa.fraction/16, so baud = clock / BRR."""

    DATA, BRR, CR1, ENABLE = 0x04, 0x08, 0x0C, (1 << 13) | (1 << 3)
    reset = {0x00: 0x0000_00C0}
    always_set = {0x00: (1 << 7) | (1 << 6)}
    mirrors = ()

    def baud(self) -> int:
        brr = self.regs.get(self.BRR, 0) & 0xFFFF
        return round(self.kernel_hz() / brr) if brr else 0
