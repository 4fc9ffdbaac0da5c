"""The Unicorn Cortex-M7 engine: peripherals and exact instruction counts; semihosting,
VFP, faults and symbol patching are in test_unicorn_engine.py, which builds with build()."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mcuc.sim.unicorn_m7 import UnicornM7, run_elf

GCC = shutil.which("arm-none-eabi-gcc")
QEMU = shutil.which("qemu-system-arm")
pytestmark = pytest.mark.skipif(GCC is None, reason="needs arm-none-eabi-gcc")

CFLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-O2",
          "-ffp-contract=off", "-fno-math-errno", "-g0", "-Wall", "-Werror"]

LAYOUTS = {  # (flash origin, RAM origin, RAM length)
    "stm32f746": (0x0800_0000, 0x2000_0000, 320 * 1024),
    "mps2": (0x0000_0000, 0x2000_0000, 256 * 1024),  # QEMU mps2-an500: code SSRAM at 0
}

LINKER = """
MEMORY {{ FLASH (rx) : ORIGIN = {flash:#x}, LENGTH = 1024K
         RAM (rwx) : ORIGIN = {ram:#x}, LENGTH = {ramlen:#x} }}
_estack = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS {{
  .isr_vector : {{ KEEP(*(.isr_vector)) }} > FLASH
  .text : {{ *(.text*) *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  _sidata = LOADADDR(.data);
  .data : {{ _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM {data_at}
  .bss (NOLOAD) : {{ _sbss = .; __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4);
                    _ebss = .; __bss_end__ = .; }} > RAM
  end = .; __end__ = .;
}}
"""

STARTUP = r"""
#include <stdint.h>
extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void Default_Handler(void) { for (;;) {} }
__attribute__((noreturn)) void Reset_Handler(void) {
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;          /* CPACR: FPU full access */
  __asm volatile("dsb\n isb");
  uint32_t *s = &_sidata, *d = &_sdata;
  while (d < &_edata) *d++ = *s++;
  for (d = &_sbss; d < &_ebss;) *d++ = 0;
  main();
  for (;;) {}
}
__attribute__((section(".isr_vector"), used)) const void *const vectors[16] = {
  &_estack, Reset_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
  Default_Handler};
"""

SEMIHOST = r"""
__attribute__((unused)) static inline int sh(int op, const void *arg) {
  register int r0 __asm("r0") = op;
  register const void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
__attribute__((unused)) static void sh_puts(const char *s) { sh(0x04, s); }
__attribute__((unused)) static void sh_exit(int code) {
  uint32_t b[2] = {0x20026, (uint32_t)code};   /* SYS_EXIT_EXTENDED, ApplicationExit */
  sh(0x20, b);
}
__attribute__((unused)) static void utoa10(uint32_t v, char *out) {
  char t[12]; int n = 0;
  do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) *out++ = t[--n];
  *out = 0;
}
"""


def build(tmp: Path, name: str, src: str, layout: str = "stm32f746", startup: bool = True,
          extra: list[str] | None = None) -> Path:
    """Compile one C file; with ``startup`` our vector table + startup copies .data from
    flash, else (newlib rdimon crt0, which copies nothing) .data is loaded straight to RAM."""
    flash, ram, ramlen = LAYOUTS[layout]
    ld = tmp / f"{layout}-{int(startup)}.ld"
    ld.write_text(LINKER.format(flash=flash, ram=ram, ramlen=ramlen,
                                data_at="AT > FLASH" if startup else ""))
    c = tmp / f"{name}.c"
    c.write_text((STARTUP if startup else "#include <stdint.h>\n") + SEMIHOST + src)
    elf = tmp / f"{name}.elf"
    cmd = [GCC, *CFLAGS, *(extra or ["-nostartfiles"]), "-T", str(ld), str(c), "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return elf


# ----------------------------------------------------------------------------- (1) STM32F7 I/O
CLOCK_INIT = r"""
#define REG(a) (*(volatile uint32_t *)(a))
#define RCC_CR REG(0x40023800)
#define RCC_PLLCFGR REG(0x40023804)
#define RCC_CFGR REG(0x40023808)
#define RCC_AHB1ENR REG(0x40023830)
#define RCC_APB1ENR REG(0x40023840)
#define RCC_APB2ENR REG(0x40023844)
#define PWR_CR1 REG(0x40007000)
#define PWR_CSR1 REG(0x40007004)
#define FLASH_ACR REG(0x40023C00)
#define GPIOA_MODER REG(0x40020000)
#define GPIOA_AFRH REG(0x40020024)
#define USART1_CR1 REG(0x40011000)
#define USART1_BRR REG(0x4001100C)
#define USART1_ISR REG(0x4001101C)
#define USART1_TDR REG(0x40011028)
#define DEMCR REG(0xE000EDFC)
#define DWT_CTRL REG(0xE0001000)
#define DWT_CYCCNT REG(0xE0001004)
#define MYSTERY REG(0x40016C00)

static void uart_puts(const char *s) {
  while (*s) { while (!(USART1_ISR & (1u << 7))) {} USART1_TDR = (uint8_t)*s++; }
  while (!(USART1_ISR & (1u << 6))) {}
}
int main(void) {
  RCC_APB1ENR |= 1u << 28;                       /* PWREN */
  PWR_CR1 = (PWR_CR1 & ~(3u << 14)) | (3u << 14);  /* VOS scale 1 */
  RCC_CR |= 1u << 16;                            /* HSEON */
  while (!(RCC_CR & (1u << 17))) {}
  RCC_PLLCFGR = (1u << 22) | (25u << 0) | (432u << 6) | (0u << 16) | (9u << 24);
  RCC_CR |= 1u << 24;                            /* PLLON */
  while (!(RCC_CR & (1u << 25))) {}
  PWR_CR1 |= 1u << 16;                           /* ODEN */
  while (!(PWR_CSR1 & (1u << 16))) {}
  PWR_CR1 |= 1u << 17;                           /* ODSWEN */
  while (!(PWR_CSR1 & (1u << 17))) {}
  while (!(PWR_CSR1 & (1u << 14))) {}            /* VOSRDY */
  FLASH_ACR = (FLASH_ACR & ~0xFu) | 7u;          /* 7 wait states */
  if ((FLASH_ACR & 0xFu) != 7u) for (;;) {}
  RCC_CFGR = (RCC_CFGR & ~3u) | 2u;              /* SW = PLL */
  while ((RCC_CFGR & (3u << 2)) != (2u << 2)) {}
  RCC_AHB1ENR |= 1u; RCC_APB2ENR |= 1u << 4;     /* GPIOA, USART1 clocks */
  GPIOA_MODER = (GPIOA_MODER & ~(3u << 18)) | (2u << 18);
  GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << 4)) | (7u << 4);
  USART1_BRR = 108000000u / 115200u;
  USART1_CR1 = (1u << 3) | (1u << 0);            /* TE | UE */
  while (!(USART1_ISR & (1u << 21))) {}          /* TEACK */
  MYSTERY = 0x1234u;
  if (MYSTERY != 0x1234u) for (;;) {}
  DEMCR |= 1u << 24; DWT_CYCCNT = 0; DWT_CTRL |= 1u;
  uint32_t t0 = DWT_CYCCNT;
  uart_puts("hello\n");
  char buf[16]; utoa10(DWT_CYCCNT - t0 > 0 ? 1234 : 0, buf);
  uart_puts("MCUC_STACK "); uart_puts(buf); uart_puts("\n");
  uart_puts("MCUC_DONE\n");
  for (;;) {}
}
"""


def test_stm32_clock_init_and_usart(tmp_path):
    elf = build(tmp_path, "clock", CLOCK_INIT)
    emu = UnicornM7(elf)
    r = emu.run()
    assert r.stdout == "hello\nMCUC_STACK 1234\nMCUC_DONE\n"
    assert r.stopped_by == "done-line" and r.exit_code is None
    assert r.stack_bytes == 1234
    assert r.instructions == r.total_instructions > 100
    rcc = emu.bus.device("RCC")
    assert rcc.regs[0x04] == (1 << 22) | 25 | (432 << 6) | (9 << 24)
    assert rcc.read(0x08) & 0xF == 0b1010
    assert emu.bus.device("FLASH").read(0) & 0xF == 7
    assert emu.bus.device("USART1").read(0x0C) == 108000000 // 115200
    assert emu.bus.unmodelled == {0x40016C00: "write"}
    # without a stop line the `b .` idle loop ends the run
    r2 = run_elf(elf, stop_on="")
    assert r2.stopped_by == "idle" and r2.stdout == r.stdout
    assert r2.total_instructions > r.total_instructions
    # and a budget stops it too
    r3 = run_elf(elf, max_instructions=200)
    assert r3.stopped_by == "max-instructions" and 200 <= r3.total_instructions < 260


# ----------------------------------------------------------------------------- (2)(3) counting
def asm_program(events: list) -> tuple[str, dict]:
    """Straight-line Thumb-2 from ('marker', v) and ('loop', n) / ('it_loop', n) events, with
    the instruction count each marker store lands on computed by construction."""
    lines, count, expect = [], 0, []
    for kind, v in events:
        if kind == "marker":
            if v == 0xFFFFFFFF:
                lines.append("mov.w r4, #-1")
            elif v == 0xFFFFFFFE:
                lines.append("mvn.w r4, #1")
            else:
                lines.append(f"movs r4, #{v}")
            lines.append("str r4, [r5]")
            count += 2
            expect.append((v, count))
        elif kind == "loop":
            lines += [f"movw r0, #{v}", "1: subs r0, r0, #1", "bne 1b"]
            count += 1 + 2 * v
        elif kind == "it_loop":  # 7 instructions per iteration, one IT-skipped per iteration
            lines += [f"movw r0, #{v}", "1: adds r1, r1, #1", "tst r0, #1", "ite eq",
                      "addeq r2, r2, #1", "addne r3, r3, #1", "subs r0, r0, #1", "bne 1b"]
            count += 1 + 7 * v
        elif kind == "semihost_writec":  # a BKPT in the middle of straight-line code
            lines += ["movs r0, #3", "mov r1, r9", "bkpt 0xab", "adds r2, r2, #1",
                      "vmov s0, r2", "vadd.f32 s0, s0, s0"]
            count += 6
    asm = "\n".join(lines)
    # replay the marker protocol on the constructed counts
    inf, steps, stack, start, first = None, {}, [], None, True
    for v, c in expect:
        if v == 0xFFFFFFFF and first:
            start = c
        elif v == 0xFFFFFFFE:
            if first and start is not None:
                inf, first = c - start, False
        elif v == 0:
            s, b = stack.pop()
            if first:
                steps[s] = steps.get(s, 0) + c - b
        else:
            stack.append((v - 1, c))
    return asm, {"inference": inf, "steps": steps}


def counting_source(asm: str) -> str:
    body = "\n".join(f'"{line}\\n"' for line in asm.splitlines())
    return r"""
volatile uint32_t mcuc_prof_marker;
static const char star = '*';
uint32_t cyc[2];
int main(void) {
  *(volatile uint32_t *)0xE000EDFC |= 1u << 24;
  *(volatile uint32_t *)0xE0001000 |= 1u;
  __asm volatile(
    "ldr r5, =mcuc_prof_marker\n"
    "mov r9, %0\n"
    "ldr r10, =0xE0001004\n"
    "ldr r8, [r10]\n"
    """ + body + r"""
    "ldr r11, [r10]\n"
    "ldr r0, =cyc\n"
    "str r8, [r0]\n"
    "str r11, [r0, #4]\n"
    : : "r"(&star) : "r0", "r1", "r2", "r3", "r4", "r5", "r8", "r9", "r10", "r11", "s0",
      "memory", "cc");
  char buf[16]; utoa10(cyc[1] - cyc[0], buf);
  sh_puts("cyc "); sh_puts(buf); sh_puts("\n");
  sh_exit(0);
  return 0;
}
"""


def test_exact_count_known_loop(tmp_path):
    events = [("marker", 0xFFFFFFFF), ("it_loop", 1000), ("semihost_writec", 0),
              ("loop", 500), ("marker", 0xFFFFFFFE)]
    asm, want = asm_program(events)
    assert want["inference"] == 1 + 7 * 1000 + 6 + 1 + 2 * 500 + 2 == 8010
    elf = build(tmp_path, "loop", counting_source(asm))
    block = run_elf(elf)
    code = run_elf(elf, count_mode="code")
    assert run_elf(elf, count_mode="block-python") == block
    assert block.instructions == code.instructions == want["inference"]
    assert block.total_instructions == code.total_instructions
    assert block.stdout == code.stdout
    # CYCCNT = instructions retired before the reading load: the whole asm block in between
    n_asm = 2 + 8010
    assert block.stdout == f"*cyc {n_asm + 1}\n"
    assert block.exit_code == 0 and block.stopped_by == "exit"


def test_marker_protocol_nested_steps(tmp_path):
    events = [("marker", 0xFFFFFFFF),
              ("marker", 1), ("loop", 100),
              ("marker", 3), ("loop", 50), ("marker", 0),    # step 2 nested in step 0
              ("loop", 20), ("marker", 0),
              ("loop", 7),                                   # between steps
              ("marker", 2), ("it_loop", 30), ("marker", 0),
              ("marker", 0xFFFFFFFE),
              ("marker", 0xFFFFFFFF),                        # a second inference: ignored
              ("marker", 1), ("loop", 999), ("marker", 0),
              ("marker", 0xFFFFFFFE)]
    asm, want = asm_program(events)
    elf = build(tmp_path, "steps", counting_source(asm))
    block = run_elf(elf)
    code = run_elf(elf, count_mode="code")
    assert run_elf(elf, count_mode="block-python") == block
    assert block.instructions == code.instructions == want["inference"]
    assert block.instructions_per_step == code.instructions_per_step == want["steps"]
    assert set(block.instructions_per_step) == {0, 1, 2}
    top = block.instructions_per_step[0] + block.instructions_per_step[1]
    assert top <= block.instructions
    assert block.instructions_per_step[2] < block.instructions_per_step[0]
    assert block.total_instructions == code.total_instructions
    # profile=False: no marker hook, the window is the whole run
    nop = run_elf(elf, profile=False)
    assert nop.instructions == nop.total_instructions == block.total_instructions
    assert nop.instructions_per_step == {}


C_KERNEL = r"""
volatile uint32_t mcuc_prof_marker;
int8_t a[64 * 64], b[64 * 64];
int32_t c[64 * 64];
float f[64];
static void matmul(int n) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      int32_t acc = 0;
      for (int k = 0; k < n; k++) acc += a[i * n + k] * b[k * n + j];
      c[i * n + j] = acc > 127 ? 127 : (acc < -128 ? -128 : acc);
    }
}
int main(void) {
  for (int i = 0; i < 64 * 64; i++) { a[i] = (int8_t)(i * 7); b[i] = (int8_t)(i * 13 + 1); }
  for (int r = 0; r < REPS; r++) {
    mcuc_prof_marker = 0xFFFFFFFFu;
    mcuc_prof_marker = 1; matmul(N);
    mcuc_prof_marker = 0;
    mcuc_prof_marker = 2;
    for (int i = 0; i < 64; i++) f[i] = (float)c[i] * 0.5f + (i & 1 ? c[i + 1] : -1.0f);
    mcuc_prof_marker = 0;
    mcuc_prof_marker = 0xFFFFFFFEu;
  }
  uint32_t h = 0;
  for (int i = 0; i < 64 * 64; i++) h = h * 31u + (uint32_t)c[i];
  char buf[16]; utoa10(h, buf); sh_puts(buf); sh_puts("\n");
  sh_exit(0);
  return 0;
}
"""


def test_block_count_equals_single_step_on_compiled_c(tmp_path):
    elf = build(tmp_path, "kern", C_KERNEL, extra=["-nostartfiles", "-DN=12", "-DREPS=2"])
    block = run_elf(elf)
    code = run_elf(elf, count_mode="code")
    assert run_elf(elf, count_mode="block-python") == block
    assert (block.total_instructions, block.instructions, block.instructions_per_step) == \
        (code.total_instructions, code.instructions, code.instructions_per_step)
    assert block.stdout == code.stdout and block.exit_code == 0


def test_speed(tmp_path):
    elf = build(tmp_path, "speed", C_KERNEL, extra=["-nostartfiles", "-DN=64", "-DREPS=3"])
    rates = {}
    for mode in ("block", "block-python"):
        t = time.perf_counter()
        r = run_elf(elf, count_mode=mode)
        dt = time.perf_counter() - t
        rates[mode] = r.total_instructions / dt
        print(f"\nunicorn_m7 [{mode}]: {r.total_instructions} instructions in {dt:.2f} s = "
              f"{rates[mode] / 1e6:.1f} M instr/s (inference {r.instructions})")
        assert r.exit_code == 0 and r.instructions > 1_000_000
    assert min(rates.values()) > 2e6
