"""The Unicorn Cortex-M7 engine, continued from test_unicorn.py (whose build() makes the
programs): semihosting (against QEMU), VFP, faults and symbol patching."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
from mcuc.sim.unicorn_m7 import run_elf
from test_unicorn import GCC, QEMU, build

pytestmark = pytest.mark.skipif(GCC is None, reason="needs arm-none-eabi-gcc")


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


def _qemu_agrees(elf: Path, cwd: Path, data: bytes, r) -> None:
    """QEMU, given the same input.bin, prints what Unicorn printed and exits the same way
    (skipped, after the Unicorn-only checks, where QEMU is not installed)."""
    if QEMU is None:
        pytest.skip("qemu-system-arm not installed: Unicorn-only check done")
    (cwd / "input.bin").write_bytes(data)
    out, rc = _qemu(elf, cwd)
    assert out == r.stdout and rc == r.exit_code


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
    _qemu_agrees(elf, tmp_path, data, r)


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
    _qemu_agrees(elf, tmp_path, data, r)


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
