"""Every STM32 board's real firmware in the Unicorn engine: the stm32f427 on a Cortex-M4 model,
the stm32h743 and stm32f746 on a Cortex-M7 model, each with its own chip's register models.

A small random ViT is cross-built per board and its outputs must equal the integer reference
bit for bit; the board init must reach the board's clock through the modelled PLL, with the
reference manual's flash wait states and over-drive, and the console must run at 115200 baud.
An instruction only the M7's FPU has faults on the M4 model, and a double-precision one faults
on the single-precision chips.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.sim import stm32_periph
from mcuc.sim.chips import get_chip, summary, vendor_devices
from mcuc.sim.unicorn_m7 import run_elf
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import build_firmware, quantize, reference
from test_unicorn import build

from helpers import compile_random, input_shape, random_inputs, random_model

pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs arm-none-eabi-gcc"),
    pytest.mark.skipif(not unicorn_available(), reason="mcuc.sim.unicorn_m7 not available"),
]

# Wait states at the board's clock (RM0090 table 11 at 2.7-3.6 V, RM0385 table 7 at 2.7-3.6 V,
# RM0433 table 17 at VOS0 for a 240 MHz AXI clock).
FLASH_WS = {"stm32f427": 5, "stm32f746": 7, "stm32h743": 4}


@pytest.mark.parametrize("board", ["stm32f427", "stm32h743", "stm32f746"])
def test_board_firmware_in_unicorn_equals_reference(board: str, tmp_path) -> None:
    b = load_board(board)
    assert "unicorn" in b.emulators and b.chip == board
    cfg, c = compile_random(9)
    xq = quantize(c, random_inputs(cfg, 2, 9009))
    build_firmware(c, board, tmp_path, np.zeros_like(xq))
    res = run_unicorn(tmp_path / "firmware.elf", xq, chip=b.chip)  # patched over <name>_samples
    for g, r in zip(res["outputs"], reference(c, xq), strict=True):
        np.testing.assert_array_equal(g, r, err_msg=f"{board}: config {cfg}")
    assert len(res["outputs"]) == 2
    assert res["instructions"] > 0 and res["dwt_instructions"] > 0
    assert len(res["instructions_per_step"]) == len(c.schedule.steps)
    st = res["chip_state"]
    assert st["cpu_hz"] == b.clock_hz and st["problems"] == []
    assert st["flash_latency"] == FLASH_WS[board]
    assert st.get("overdrive", st.get("vos0")) is True
    assert len(st["uart_bauds"]) == 1 and abs(st["uart_bauds"][0] / 115_200 - 1) < 0.01
    assert st["uart_dropped"] == 0


def test_mcuc_build_and_run_on_the_m4(tmp_path, capsys) -> None:
    """The CLI path on the stm32f427: the build report counts one inference and `mcuc run`
    runs the ELF in Unicorn's Cortex-M4 and prints the reference's output."""
    from mcuc.cli import main
    from mcuc.pipeline import build

    cfg, c = compile_random(10)
    report = build(random_model(cfg, 10), "stm32f427", random_inputs(cfg, 16, 10),
                   tmp_path / "f4", input_shape=input_shape(cfg), samples=1)
    assert report["firmware"]["emulator"] == "unicorn" and report["instructions"] > 0
    assert 0 < report["stack_bytes"] <= load_board("stm32f427").stack_bytes
    x = random_inputs(cfg, 1, 1010)
    np.save(tmp_path / "x.npy", x[0])
    capsys.readouterr()
    assert main(["run", str(tmp_path / "f4"), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"] == "unicorn" and res["instructions"] > 0
    np.testing.assert_array_equal(np.array(res["output"], np.int8),
                                  reference(c, quantize(c, x))[0].reshape(-1))


FPV5_ONLY = r"""
volatile float a = 1.5f, b = 2.5f;
int main(void) {
  float r;
  __asm volatile("vmaxnm.f32 %0, %1, %2" : "=t"(r) : "t"(a), "t"(b));  /* FPv5 (M7) only */
  sh_puts(r == 2.5f ? "ok\n" : "bad\n");
  sh_exit(0);
  return 0;
}
"""

V8M_ONLY = r"""
volatile uint32_t v = 7;
int main(void) {
  register uint32_t r __asm("r0") = (uint32_t)&v;
  __asm volatile(".inst.w 0xe8d00faf" : "+r"(r) :: "memory");  /* lda r0, [r0] */
  sh_puts(r == 7 ? "ok\n" : "bad\n");
  sh_exit(0);
  return 0;
}
"""

DOUBLE = r"""
int main(void) {
  __asm volatile(".inst.w 0xee300b01" ::: "d0");   /* vadd.f64 d0, d0, d1 */
  sh_puts("ok\n");
  sh_exit(0);
  return 0;
}
"""


def test_m7_only_and_double_precision_instructions_fault(tmp_path) -> None:
    # The cores are really the M4 and M7 (Unicorn's M-class mode alone would be a Cortex-M33,
    # which runs this ARMv8-M load-acquire).
    lda = build(tmp_path, "lda", V8M_ONLY)
    for chip in ("stm32f746", "stm32f427", "stm32h743"):
        with pytest.raises(McucError, match="undefined instruction"):
            run_elf(lda, chip=chip)
    elf = build(tmp_path, "fpv5", FPV5_ONLY)
    assert run_elf(elf, chip="stm32f746").stdout == "ok\n"
    with pytest.raises(McucError, match=r"^firmware fault at pc=0x080[0-9a-f]{5}: undefined "
                                        r"instruction$"):
        run_elf(elf, chip="stm32f427")
    dp = build(tmp_path, "dp", DOUBLE)
    assert run_elf(dp, chip="stm32h743").stdout == "ok\n"
    for chip in ("stm32f746", "stm32f427"):
        with pytest.raises(McucError, match="double-precision FPU instruction|undefined"):
            run_elf(dp, chip=chip)
    with pytest.raises(McucError, match="double-precision FPU instruction; the stm32f746"):
        run_elf(dp, chip="stm32f746")


def _bus(chip: str):
    out = bytearray()
    devs = {d.name: d for d in vendor_devices(get_chip(chip), out.extend)}
    return devs, out


def test_pll_needs_a_ready_source_and_the_switch_a_locked_pll() -> None:
    devs, _ = _bus("stm32f427")
    rcc = devs["RCC"]
    rcc.write(0x04, (1 << 22) | 8 | (360 << 6), 4)      # PLL from HSE: the board has none
    rcc.write(0x00, rcc.read(0x00) | (1 << 16) | (1 << 24), 4)
    assert not rcc.read(0x00) & ((1 << 17) | (1 << 25))  # HSE never ready, PLL never locks
    rcc.write(0x08, 2, 4)
    assert rcc.read(0x08) >> 2 & 3 == 0                  # the switch stays on HSI
    assert rcc.clocks()["cpu_hz"] == 16_000_000
    rcc.write(0x04, 16 | (360 << 6), 4)                  # from HSI: locks, and switches
    assert rcc.read(0x00) & (1 << 25)
    rcc.write(0x08, 2, 4)
    assert rcc.read(0x08) >> 2 & 3 == 2 and rcc.clocks()["cpu_hz"] == 180_000_000
    rcc.write(0x04, 8 | (360 << 6), 4)                   # 2 MHz input, 720 MHz VCO
    assert rcc.clocks()["problems"] == ["VCO 720 MHz not in 100-432 MHz"]
    h7 = _bus("stm32h743")[0]["RCC"]
    assert h7.read(0x00) & 0b101 == 0b101 and h7.clocks()["cpu_hz"] == 64_000_000
    h7.write(0x10, 3, 4)                                 # PLL1 off: no switch
    assert h7.read(0x10) >> 3 & 7 == 0


@pytest.mark.parametrize("chip, layout", [("stm32f427", (0x04, 0x08, 0x0C, 1 << 13)),
                                           ("stm32h743", (0x28, 0x0C, 0x00, 1 << 0))])
def test_usart_sends_only_when_enabled(chip, layout) -> None:
    data, brr, cr1, ue = layout
    devs, out = _bus(chip)
    uart = devs["USART1"]
    assert isinstance(uart, stm32_periph.UsartF4) == (chip == "stm32f427")
    uart.write(brr, 139, 4)
    uart.write(data, ord("x"), 4)
    assert out == b"" and uart.dropped == 1
    uart.write(cr1, ue | (1 << 3), 4)
    uart.write(data, ord("y"), 4)
    assert out == b"y"
    hsi = 16_000_000 if chip == "stm32f427" else 64_000_000
    st = summary(get_chip(chip), devs.__getitem__)
    assert st["uart_bauds"] == [round(hsi / 139)] and st["cpu_hz"] == hsi
