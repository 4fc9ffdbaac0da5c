"""The Unicorn Cortex-M7 engine: peripherals, semihosting, exact instruction counts, faults."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
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


# ----------------------------------------------------------------------------- (4) semihosting
SEMIHOST_PROG = r"""
static char buf[64];
int main(void) {
  sh_puts("semihost hello\n");
  uint32_t open_args[3] = {(uint32_t)"input.bin", 1, 9};
  int h = sh(0x01, open_args);
  if (h < 0) { sh_puts("open failed\n"); sh_exit(9); }
  uint32_t hh[1] = {(uint32_t)h};
  int len = sh(0x0C, hh);
  uint32_t rd[3] = {(uint32_t)h, (uint32_t)buf, 63};
  int left = sh(0x06, rd);
  buf[63 - left] = 0;
  char num[16];
  utoa10((uint32_t)len, num); sh_puts("len "); sh_puts(num); sh_puts("\n");
  sh_puts("data "); sh_puts(buf); sh_puts("\n");
  uint32_t sk[2] = {(uint32_t)h, 7};
  sh(0x0A, sk);
  rd[2] = 5; left = sh(0x06, rd); buf[5 - left] = 0;
  sh_puts("seek "); sh_puts(buf); sh_puts("\n");
  sh(0x02, hh);
  uint32_t tt[3] = {(uint32_t)":tt", 4, 3};
  int out = sh(0x01, tt);
  uint32_t wr[3] = {(uint32_t)out, (uint32_t)"via write\n", 10};
  sh(0x05, wr);
  sh(0x03, "!"); sh(0x03, "\n");
  sh_exit(3);
  return 0;
}
"""


def _qemu(elf: Path, cwd: Path) -> tuple[str, int]:
    proc = subprocess.run(
        [QEMU, "-M", "mps2-an500", "-nographic", "-monitor", "none", "-serial", "null",
         "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return proc.stdout.decode(), proc.returncode


def test_semihosting_and_qemu_agree(tmp_path):
    elf = build(tmp_path, "semi", SEMIHOST_PROG, layout="mps2")
    data = b"abcdef-hello-semihosting\n"
    r = run_elf(elf, semihost_files={"input.bin": data})
    want = ("semihost hello\nlen 25\ndata abcdef-hello-semihosting\n\nseek hello\n"
            "via write\n!\n")
    assert r.stdout == want
    assert r.exit_code == 3 and r.stopped_by == "exit"
    missing = run_elf(elf)
    assert missing.stdout.endswith("open failed\n") and missing.exit_code == 9
    if QEMU is None:
        pytest.skip("qemu-system-arm not installed: Unicorn-only check done")
    (tmp_path / "input.bin").write_bytes(data)
    out, rc = _qemu(elf, tmp_path)
    assert out == r.stdout and rc == r.exit_code


RDIMON_PROG = r"""
#include <stdio.h>
#include <stdlib.h>
void _mainCRTStartup(void);
extern uint32_t _estack;
__attribute__((noreturn)) void Reset_Handler(void) {
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;          /* CPACR: FPU full access */
  __asm volatile("dsb\n isb");
  _mainCRTStartup();
  for (;;) {}
}
__attribute__((section(".isr_vector"), used)) const void *const vectors[2] = {
  &_estack, Reset_Handler};
int main(void) {
  printf("printf %d %s\n", 42, "ok");
  FILE *f = fopen("input.bin", "rb");
  char line[32] = {0};
  if (!f || !fgets(line, sizeof line, f)) { puts("no file"); return 5; }
  fclose(f);
  printf("read %s", line);
  exit(3);
}
"""


def test_newlib_rdimon_program_matches_qemu(tmp_path):
    elf = build(tmp_path, "rdimon", RDIMON_PROG, layout="mps2", startup=False,
                extra=["--specs=rdimon.specs"])
    data = b"line one\nline two\n"
    r = run_elf(elf, semihost_files={"input.bin": data})
    assert r.stdout == "printf 42 ok\nread line one\n"
    assert r.exit_code == 3
    # newlib's printf/stdio: plenty of IT blocks and semihosting traps mid-program
    code = run_elf(elf, semihost_files={"input.bin": data}, count_mode="code")
    assert code.total_instructions == r.total_instructions
    if QEMU is None:
        pytest.skip("qemu-system-arm not installed")
    (tmp_path / "input.bin").write_bytes(data)
    out, rc = _qemu(elf, tmp_path)
    assert out == r.stdout and rc == r.exit_code


# ----------------------------------------------------------------------------- (5) VFP
FLOAT_PROG = r"""
#include <math.h>
float xs[16] = {0.5f, -1.25f, 3.0f, 2.75f, -0.125f, 9.5f, 1e-3f, 7.0f,
                -2.5f, 0.333f, 4.25f, -8.0f, 1.5f, 0.0625f, 6.0f, -3.75f};
float ws[16] = {1.5f, 0.25f, -0.75f, 2.0f, 3.5f, -1.0f, 100.0f, 0.125f,
                0.5f, 3.0f, -0.5f, 0.25f, 1.0f, -16.0f, 0.2f, 1.1f};
int main(void) {
  float acc = 0.0f;
  for (int i = 0; i < 16; i++) acc = acc + xs[i] * ws[i];
  float r = sqrtf(acc * acc + 1.0f) / 3.0f;
  uint32_t bits[2]; __builtin_memcpy(&bits[0], &acc, 4); __builtin_memcpy(&bits[1], &r, 4);
  char b[16];
  utoa10(bits[0], b); sh_puts(b); sh_puts(" ");
  utoa10(bits[1], b); sh_puts(b); sh_puts(" ");
  utoa10((uint32_t)(int32_t)(r * 1000.0f), b); sh_puts(b); sh_puts("\n");
  sh_exit(0);
  return 0;
}
"""


def test_vfp_float(tmp_path):
    elf = build(tmp_path, "float", FLOAT_PROG)
    assert "vsqrt.f32" in subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)],
                                         capture_output=True, text=True).stdout
    r = run_elf(elf)
    f32 = np.float32
    xs = np.array([0.5, -1.25, 3.0, 2.75, -0.125, 9.5, 1e-3, 7.0, -2.5, 0.333, 4.25, -8.0,
                   1.5, 0.0625, 6.0, -3.75], dtype=f32)
    ws = np.array([1.5, 0.25, -0.75, 2.0, 3.5, -1.0, 100.0, 0.125, 0.5, 3.0, -0.5, 0.25,
                   1.0, -16.0, 0.2, 1.1], dtype=f32)
    acc = f32(0)
    for x, w in zip(xs, ws, strict=True):
        acc = f32(acc + f32(x * w))
    res = f32(np.sqrt(f32(f32(acc * acc) + f32(1))) / f32(3))
    bits = [struct.unpack("<I", struct.pack("<f", v))[0] for v in (acc, res)]
    assert r.stdout == f"{bits[0]} {bits[1]} {int(f32(res * f32(1000)))}\n"


# ----------------------------------------------------------------------------- (6) faults
def test_fault_is_one_line_error(tmp_path):
    elf = build(tmp_path, "fault", r"""
int main(void) {
  sh_puts("before\n");
  uint32_t v = *(volatile uint32_t *)0x60000000u;   /* FMC bank 1: nothing there */
  return (int)v;
}
""")
    with pytest.raises(McucError) as ei:
        run_elf(elf)
    msg = str(ei.value)
    assert "\n" not in msg and "unmapped read" in msg and "0x60000000" in msg
    assert "pc=0x080" in msg
    udf = build(tmp_path, "udf", r"""
int main(void) { __asm volatile("udf #7"); return 0; }
""")
    with pytest.raises(McucError, match=r"^firmware fault at pc=0x080[0-9a-f]{5}: undefined "
                                        r"instruction$"):
        run_elf(udf)


def test_fpu_used_without_cpacr_faults(tmp_path):
    elf = build(tmp_path, "nocp", r"""
extern uint32_t _estack;
int main(void);
__attribute__((noreturn)) void Reset(void) { main(); for (;;) {} }
__attribute__((section(".isr_vector"), used)) const void *const vectors[2] = {&_estack, Reset};
volatile float x = 1.5f;
int main(void) { x = x * 3.0f; return 0; }
""", startup=False)
    with pytest.raises(McucError, match=r"FPU instruction while CPACR disables CP10/CP11"):
        run_elf(elf)


def test_systick_polling_and_wfi_idle(tmp_path):
    elf = build(tmp_path, "systick", r"""
#define REG(a) (*(volatile uint32_t *)(a))
int main(void) {
  REG(0xE000E014) = 999; REG(0xE000E018) = 0; REG(0xE000E010) = 5;  /* 1000-tick period */
  for (int n = 0; n < 5;) if (REG(0xE000E010) & (1u << 16)) n++;
  REG(0x40011000) = (1u << 3) | 1u;                /* USART1 TE | UE */
  REG(0x40011028) = 'T'; REG(0x40011028) = '\n';
  for (;;) __asm volatile("wfi");
}
""")
    r = run_elf(elf)
    assert r.stdout == "T\n" and r.stopped_by == "idle"
    assert 5000 <= r.total_instructions < 5200  # five periods of 1000 instructions, then WFI


# ----------------------------------------------------------------------------- (7) patching
PATCH_PROG = r"""
const uint8_t mcuc_samples[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
uint8_t table[4] = {100, 0, 0, 0};
int main(void) {
  uint32_t s = 0;
  for (int i = 0; i < 16; i++) s += ((volatile const uint8_t *)mcuc_samples)[i];
  s += table[0];
  char b[16]; utoa10(s, b); sh_puts(b); sh_puts("\n");
  sh_exit(0);
  return 0;
}
"""


def test_patch_symbols(tmp_path):
    """The one ELF patcher (ElfImage.patched via target/elf.patch_elf): a const array in
    flash and initialised RAM data (copied by startup from its load image) both take the
    patched bytes."""
    from mcuc.target.elf import patch_elf

    elf = build(tmp_path, "patch", PATCH_PROG)
    assert run_elf(elf).stdout == f"{sum(range(1, 17)) + 100}\n"
    patched = patch_elf(elf, {"mcuc_samples": bytes([200] * 16), "table": b"\x07"},
                        tmp_path / "patched.elf")
    assert run_elf(patched).stdout == f"{200 * 16 + 7}\n"
    with pytest.raises(McucError, match="do not fit"):
        patch_elf(elf, {"mcuc_samples": bytes(17)}, tmp_path / "x.elf")
    with pytest.raises(McucError, match="no symbol"):
        patch_elf(elf, {"nope": b"\0"}, tmp_path / "x.elf")
