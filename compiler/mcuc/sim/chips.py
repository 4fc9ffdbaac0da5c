"""The chips the Unicorn engine can stand in for: CPU model, core identity and peripherals.

A board names its chip in board.toml (``[unicorn] chip = "stm32f427"``); a board without one
gets a bare core of its ``core`` (no vendor peripherals: every access to them is logged as
unmodelled). Each entry is data: the Unicorn CPU model (a Cortex-M4 runs the F427 firmware, so an
instruction only the M7 has faults as it would on the chip), the CPUID/MVFR0/cache geometry the
system control space reports, whether the FPU does double precision, the board's crystal, and the
peripheral blocks at their reference-manual addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcuc import McucError
from mcuc.sim.armv7m_periph import CoreId, Peripheral
from mcuc.sim.stm32_periph import (
    GPIO,
    USART,
    PwrF4F7,
    PwrH7,
    RccF4F7,
    RccH7,
    UsartF4,
)

Tx = Callable[[bytes], None]
# The same addresses on the F4, F7 and H7 (RM0090, RM0385, RM0433).
UARTS = (("USART1", 0x4001_1000), ("USART6", 0x4001_1400), ("USART2", 0x4000_4400),
         ("USART3", 0x4000_4800), ("UART4", 0x4000_4C00), ("UART5", 0x4000_5000),
         ("UART7", 0x4000_7800), ("UART8", 0x4000_7C00))

# CCSIDR values (ARMv7-M B4.8.3): WT|WB|RA|WA, NumSets-1 << 13, Associativity-1 << 3, 32-byte
# lines (LineSize 1).
def _ccsidr(kib: int, ways: int, policy: int) -> int:
    sets = kib * 1024 // (ways * 32)
    return (policy << 28) | ((sets - 1) << 13) | ((ways - 1) << 3) | 1


@dataclass(frozen=True)
class Chip:
    name: str
    cpu: str                      # "cortex-m4" | "cortex-m7": the Unicorn CPU model
    cpuid: int                    # SCB.CPUID
    fpu_double: bool              # MVFR0 and the check on double-precision instructions
    cache_kib: tuple[int, int]    # (data, instruction) L1 sizes; (0, 0): no caches (M4)
    hse_hz: int = 0               # the board's external clock; 0: none (HSE never ready)
    family: str = ""              # "f4" | "f7" | "h7" | "" (bare core)
    # Tightly coupled RAMs, (base, size): mapped as RAM whatever the ELF loads there (the
    # startup copies the ITCM code in; a DTCM arena is NOLOAD). Same as the boards' board.toml.
    tcm: tuple[tuple[int, int], ...] = ()
    # Memory-mapped external flash windows, (base, size): mapped whatever the ELF loads there
    # (the F746G-DISCO's QSPI flash at 0x90000000). Same as the boards' [memory] qspi.
    xip: tuple[tuple[int, int], ...] = ()

    @property
    def ccsidr(self) -> tuple[int, int]:
        """(data, instruction) CCSIDR; Cortex-M7 L1: 4-way D, 2-way I, 32-byte lines."""
        d, i = self.cache_kib
        return (_ccsidr(d, 4, 0xF) if d else 0, _ccsidr(i, 2, 0x7) if i else 0)

    @property
    def core_id(self) -> CoreId:
        return CoreId(self.cpuid, 0x1011_0221 if self.fpu_double else 0x1011_0021, self.ccsidr)


CHIPS: dict[str, Chip] = {c.name: c for c in (
    # STM32F746G-DISCO: Cortex-M7 r0p1, 4 KiB + 4 KiB L1, SP FPU, 25 MHz crystal (RM0385).
    # ITCM RAM 16 KiB at 0, DTCM RAM 64 KiB at 0x20000000 (RM0385 2.2.2).
    Chip("stm32f746", "cortex-m7", 0x410F_C271, False, (4, 4), 25_000_000, "f7",
         tcm=((0x0000_0000, 0x4000), (0x2000_0000, 0x1_0000)),
         xip=((0x9000_0000, 0x100_0000),)),
    # STM32F427: Cortex-M4 r0p1, no caches, SP FPU; the board init assumes no crystal (RM0090).
    Chip("stm32f427", "cortex-m4", 0x410F_C241, False, (0, 0), 0, "f4"),
    # STM32H743 rev V: Cortex-M7 r1p1, 16 KiB + 16 KiB L1, DP FPU; init runs from HSI (RM0433).
    # ITCM-RAM 64 KiB at 0, DTCM-RAM 128 KiB at 0x20000000 (RM0433 2.4).
    Chip("stm32h743", "cortex-m7", 0x411F_C271, True, (16, 16), 0, "h7",
         tcm=((0x0000_0000, 0x1_0000), (0x2000_0000, 0x2_0000))),
    # Bare cores (QEMU's mps2-an500 and anything without vendor peripherals).
    Chip("cortex-m7", "cortex-m7", 0x410F_C271, False, (4, 4)),
    Chip("cortex-m4", "cortex-m4", 0x410F_C241, False, (0, 0)),
)}


def get_chip(name: str) -> Chip:
    if name not in CHIPS:
        raise McucError(f"the Unicorn engine has no model of chip '{name}' (it has: "
                        f"{', '.join(CHIPS)})")
    return CHIPS[name]


def vendor_devices(chip: Chip, tx: Tx) -> list[Peripheral]:
    """The chip's RCC, PWR, FLASH, SYSCFG, GPIO and USART blocks at their RM addresses."""
    if not chip.family:
        return []
    if chip.family == "h7":
        rcc: RccF4F7 | RccH7 = RccH7("RCC", 0x5802_4400, chip.hse_hz)
        devs: list[Peripheral] = [rcc, PwrH7("PWR", 0x5802_4800),
                                  _flash("FLASH", 0x5200_2000, 0x0000_0037),
                                  Peripheral("SYSCFG", 0x5800_0400)]
        gpio_base, usart = 0x5802_0000, USART
    else:
        rcc = RccF4F7("RCC", 0x4002_3800, chip.hse_hz)
        devs = [rcc, PwrF4F7("PWR", 0x4000_7000), _flash("FLASH", 0x4002_3C00, 0),
                Peripheral("SYSCFG", 0x4001_3800)]
        gpio_base, usart = 0x4002_0000, (UsartF4 if chip.family == "f4" else USART)
    for i, port in enumerate("ABCDEFGHIJK"):
        devs.append(GPIO(f"GPIO{port}", gpio_base + 0x400 * i))
    # Kernel clock: PCLK2, right for USART1/6 (APB2) with the kernel clock selection (F7
    # DCKCFGR2, H7 D2CCIP2R) at its reset value; the APB1 UARTs, unused by mcuc, report it too.
    for name, base in UARTS:
        devs.append(usart(name, base, tx, lambda: rcc.clocks()["pclk2_hz"]))
    return devs


def _flash(name: str, base: int, acr_reset: int) -> Peripheral:
    """Flash interface: ACR reads back what was written (LATENCY takes at once)."""
    dev = Peripheral(name, base)
    dev.regs[0x00] = acr_reset
    return dev


def summary(chip: Chip, device: Callable[[str], Peripheral]) -> dict:
    """What the firmware's init left the chip at: clocks, flash wait states, over-drive, and the
    console USART1's baud rate(s); {} for a bare core."""
    if not chip.family:
        return {}
    out = dict(device("RCC").clocks())  # type: ignore[attr-defined]
    out["flash_latency"] = device("FLASH").read(0) & 0xF
    if chip.family == "h7":
        vos = (device("PWR").read(0x18) >> 14) & 3
        out["vos0"] = vos == 3 and bool(device("SYSCFG").read(0x2C) & 1)
    else:
        out["overdrive"] = device("PWR").overdrive()  # type: ignore[attr-defined]
    uart = device("USART1")
    out["uart_bauds"] = sorted(uart.bauds)  # type: ignore[attr-defined]
    out["uart_dropped"] = uart.dropped  # type: ignore[attr-defined]
    return out
