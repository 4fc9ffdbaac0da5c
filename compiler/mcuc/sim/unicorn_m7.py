"""Run a Cortex-M4/M7 firmware ELF to completion under Unicorn and count its instructions exactly.

The chip (:mod:`mcuc.sim.chips`) picks Unicorn's CPU model (Cortex-M4 or M7) and the register
models. Memory: the ELF's PT_LOAD segments (file bytes at their load address, LMA; the
firmware's startup copies .data and the ITCM code), RAM from the lowest data segment up to
the initial stack pointer, the chip's tightly coupled RAMs (ITCM, DTCM) and external flash
windows (QSPI: :mod:`mcuc.sim.chips`),
the Cortex-M system region 0xE0000000-0xE00FFFFF and the peripheral window
0x40000000-0x5FFFFFFF, both served by the register models in :mod:`mcuc.sim.armv7m_periph`
and :mod:`mcuc.sim.stm32_periph`. I/O: USART data register writes and ARM semihosting
(:mod:`mcuc.sim.semihost`) go to ``stdout``.

Instruction counting: a UC_HOOK_BLOCK callback (:mod:`mcuc.sim.blockcount`, native C when a
host C compiler is available) adds the number of Thumb instructions in the translation block,
decoded once with capstone and cached by (address, size). A translation block is straight-line
code that runs to its end unless the CPU faults (then we stop with an error anyway):
exception-raising instructions (BKPT semihosting, SVC, WFI) end their block, and stops requested
from hooks take effect at the next block boundary. Instructions in an IT block whose condition
fails are counted: they are architecturally executed (as NOPs). Counts at a point inside a
block (the profiling marker stores, DWT_CYCCNT/SysTick accesses) are made exact with the PC that
Unicorn syncs for memory hooks. Unicorn 2.1 stops syncing it once PC is written from a hook
(unicorn PR #2181), so semihosting returns by restarting emu_start after the BKPT instead.
``count_mode="code"`` counts with a per-instruction hook instead: the reference the tests compare
against (UC_HOOK_CODE does not fire for condition-failed IT instructions, so that counter adds
them when it sees their IT instruction).

Marker protocol: the firmware's ``volatile uint32_t mcuc_prof_marker`` is written 0xFFFFFFFF right
before an inference, ``i+1`` when step i starts, 0 when the innermost open step ends, and
0xFFFFFFFE right after the inference. A window's count is the number of instructions executed
after the opening store up to and including the closing store.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from unicorn import (
    UC_ARCH_ARM,
    UC_ERR_EXCEPTION,
    UC_ERR_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MODE_MCLASS,
    UC_MODE_THUMB,
    Uc,
    UcError,
)
from unicorn import arm_const as A

from mcuc import McucError
from mcuc.sim.armv7m_periph import Bus
from mcuc.sim.blockcount import CodeCounter, block_counter
from mcuc.sim.chips import get_chip, summary, vendor_devices
from mcuc.sim.elfimage import ElfImage, merge_pages
from mcuc.sim.semihost import Semihost
from mcuc.sim.thumb import BlockDecoder, fpu_fault

log = logging.getLogger("mcuc.sim")

PERIPH_BASE, PERIPH_SIZE = 0x4000_0000, 0x2000_0000
SYSTEM_BASE, SYSTEM_SIZE = 0xE000_0000, 0x0010_0000
MARKER_SYMBOL = "mcuc_prof_marker"
TIMED_REGISTERS = ((0xE000_1004, 0xE000_1007), (0xE000_E010, 0xE000_E01F))  # CYCCNT, SysTick
BEGIN_INFERENCE, END_INFERENCE = 0xFFFF_FFFF, 0xFFFF_FFFE
_EXCP_NAMES = {1: "undefined instruction", 2: "SVC (no exception model)", 3: "prefetch abort",
               4: "data abort", 7: "breakpoint", 8: "exception return (no exception model)",
               17: "coprocessor (FPU) access fault", 18: "invalid state (ARM-mode branch?)",
               19: "stack overflow", 22: "unaligned access"}
_UC_ERRORS = {UC_ERR_INSN_INVALID: "undefined instruction",
              UC_ERR_EXCEPTION: "unhandled CPU exception"}


@dataclass
class EmuResult:
    stdout: str                       # USART TX bytes + semihosting console
    exit_code: int | None             # semihosting exit status; None if stopped otherwise
    instructions: int                 # first inference window (marker protocol), else total
    total_instructions: int           # whole run
    instructions_per_step: dict[int, int] = field(default_factory=dict)
    stack_bytes: int | None = None    # from a 'MCUC_STACK <n>' line
    stopped_by: str = "exit"          # exit | done-line | max-instructions | fault | idle
    chip_state: dict = field(default_factory=dict)  # clocks, baud... (mcuc.sim.chips.summary)


def _open_cpu(cpu: str) -> Uc:
    """A Unicorn engine running ``cpu`` ("cortex-m4" / "cortex-m7"). UC_MODE_MCLASS would make
    Unicorn 2 build a Cortex-M33 whatever model is set (its cpu_arm_init), so the model is set on
    a plain Thumb engine: the M-profile comes with the model. An old Unicorn without CPU models
    gets its default M-class CPU (logged)."""
    model = getattr(A, "UC_CPU_ARM_" + cpu.upper().replace("-", "_"), None)
    if model is not None:
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
        try:
            uc.ctl_set_cpu_model(model)
            return uc
        except (AttributeError, UcError):
            pass
    log.info("Unicorn has no %s model; using its default M-profile CPU (a Cortex-M33 in "
             "Unicorn 2)", cpu)
    return Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)


class UnicornM7:
    """One emulation of one ELF on one chip (Cortex-M4 or M7: the name is historical); see
    :func:`run_elf`."""

    def __init__(self, elf_path, memory_regions=None, semihost_files=None,
                 max_instructions=2_000_000_000, profile=True, stop_on="MCUC_DONE",
                 count_mode="block", chip="stm32f746"):
        if count_mode not in ("block", "block-python", "code"):
            raise ValueError(f"count_mode must be 'block', 'block-python' or 'code', "
                             f"not {count_mode!r}")
        self.elf_path = Path(elf_path)
        self.max_instructions = int(max_instructions)
        self.stop_on = stop_on.encode() if stop_on else b""
        self.count_mode = count_mode
        self.out = bytearray()
        self._checked = 0             # stdout bytes already scanned for the stop line
        self.stop_reason: str | None = None
        self.fault: str | None = None
        # instruction counting state (block mode: see mcuc.sim.blockcount)
        self._decoder = BlockDecoder(self._read_mem)
        # marker protocol state
        self._inf_start: int | None = None
        self._inference: int | None = None
        self._steps: dict[int, int] = {}
        self._open_steps: list[tuple[int, int]] = []

        self.image = img = ElfImage(elf_path)
        self.segments, self.symbols = img.segments, img.symbols
        self.initial_sp, self.entry = img.initial_sp, img.entry
        self.chip = get_chip(chip)
        self.ranges = merge_pages(img.memory(memory_regions) + [
            (base, base + size) for base, size in self.chip.tcm + self.chip.xip])
        for lo, hi in self.ranges:
            if lo < PERIPH_BASE + PERIPH_SIZE and hi > PERIPH_BASE or hi > SYSTEM_BASE:
                raise McucError(f"memory region 0x{lo:08x}-0x{hi:08x} overlaps the peripheral "
                                "or system window")
        self.uc = _open_cpu(self.chip.cpu)
        self._map_memory()
        self._mmio_now = 0
        self.bus = Bus(self._emit, lambda: self._mmio_now, self.chip.core_id,
                       vendor_devices(self.chip, self._emit))
        self._scs = self.bus.device("SCS")
        self.semihost = Semihost(self._read_mem, self.uc.mem_write, self._emit, self.now,
                                 files=dict(semihost_files or {}),
                                 heapinfo=(0, 0, self.initial_sp, 0))
        self._install_hooks(profile)

    # ---------------------------------------------------------------- ELF + memory
    def _map_memory(self):
        for lo, hi in self.ranges:
            self.uc.mem_map(lo, hi - lo)
        for _vaddr, paddr, filesz, _memsz, data in self.segments:
            if filesz:
                self.uc.mem_write(paddr, data[:filesz])
        self.uc.mmio_map(PERIPH_BASE, PERIPH_SIZE, self._mmio_read, PERIPH_BASE,
                         self._mmio_write, PERIPH_BASE)
        self.uc.mmio_map(SYSTEM_BASE, SYSTEM_SIZE, self._mmio_read, SYSTEM_BASE,
                         self._mmio_write, SYSTEM_BASE)

    def _read_mem(self, addr: int, n: int) -> bytes:
        return bytes(self.uc.mem_read(addr, n))

    # ---------------------------------------------------------------- hooks
    def _install_hooks(self, profile: bool):
        uc = self.uc
        if self.count_mode != "code":
            self._blocks = block_counter(self._decode_block, self.max_instructions,
                                         native=self.count_mode == "block")
            self._blocks.register(uc)
        else:
            self._code = CodeCounter(self._read_mem, self.max_instructions, self._on_idle)
            self._code.register(uc)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED
                    | UC_HOOK_MEM_FETCH_UNMAPPED, self._on_unmapped)
        # Registers that read the clock: a memory hook (Unicorn syncs PC for those, not for
        # MMIO callbacks) snapshots the exact count just before the MMIO callback runs.
        for lo, hi in TIMED_REGISTERS:
            uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._snapshot_clock,
                        begin=lo, end=hi)
        if profile and MARKER_SYMBOL in self.symbols:
            addr = self.symbols[MARKER_SYMBOL][0]
            uc.hook_add(UC_HOOK_MEM_WRITE, self._on_marker, begin=addr, end=addr + 3)

    def _decode_block(self, address: int, size: int) -> int:
        """Instruction count of a translation block, on its first execution (the counters
        cache it). Also where idle loops and FPU instructions the chip refuses are caught."""
        try:
            offs = self._instr_offsets(address, size)
            code = bytes(self.uc.mem_read(address, size))
            enabled = bool(self._scs.regs.get(0xD88, 0) & (0xF << 20))
            bad = fpu_fault(code, offs, enabled, self.chip.fpu_double, self.chip.name)
            if bad is not None:
                self._stop_fault(f"firmware fault at pc=0x{address + bad[0]:08x}: {bad[1]}")
            if code == b"\xfe\xe7":  # `b .`: nothing can interrupt it here
                self.stop_reason = self.stop_reason or "idle"
                self.uc.emu_stop()
            return len(offs)
        except Exception as e:  # never let an exception escape into the ctypes callback
            self._stop_fault(f"firmware fault at pc=0x{address:08x}: cannot decode the block "
                             f"({e})")
            return 1

    def _instr_offsets(self, address: int, size: int) -> list[int]:
        return self._decoder.offsets(address, size)

    def now(self, include_current: bool = False) -> int:
        """Instructions retired before the current one (PC precise inside memory callbacks)."""
        if self.count_mode == "code":
            return self._code.cur - (0 if include_current else 1)
        total, last = self._blocks.total, self._blocks.last
        if not last:
            return total
        address, size = last & 0xFFFF_FFFF, last >> 32
        pc = self.uc.reg_read(A.UC_ARM_REG_PC)
        offs = self._instr_offsets(address, size)
        if not address <= pc < address + size:
            return total
        done = sum(1 for o in offs if o < pc - address)
        return total - len(offs) + done + (1 if include_current else 0)

    @property
    def total(self) -> int:
        return self._code.total if self.count_mode == "code" else self._blocks.total

    def _snapshot_clock(self, uc, access, address, size, value, _ud):
        self._mmio_now = self.now()

    def _on_idle(self):
        self.stop_reason = self.stop_reason or "idle"

    def _on_marker(self, uc, access, address, size, value, _ud):
        count = self.now(include_current=True)
        value &= 0xFFFF_FFFF
        first = self._inference is None
        if value == BEGIN_INFERENCE:
            if first:
                self._inf_start = count
        elif value == END_INFERENCE:
            if first and self._inf_start is not None:
                self._inference = count - self._inf_start
            self._open_steps.clear()
        elif value == 0:
            if self._open_steps:
                step, begin = self._open_steps.pop()
                if first and self._inf_start is not None:
                    self._steps[step] = self._steps.get(step, 0) + count - begin
        else:
            self._open_steps.append((value - 1, count))

    def _mmio_read(self, uc, offset, size, base):
        return self.bus.read(base + offset, size)

    def _mmio_write(self, uc, offset, size, value, base):
        self.bus.write(base + offset, size, value)

    def _emit(self, data: bytes):
        self.out += data
        if self.stop_on and b"\n" in data:
            end = self.out.rfind(b"\n") + 1
            lines = self.out[self._checked:end]
            self._checked = end
            if self.stop_on in lines:
                self.stop_reason = self.stop_reason or "done-line"
                self.uc.emu_stop()

    def _stop_fault(self, msg: str):
        if self.fault is None:
            self.fault = msg
        self.stop_reason = "fault"
        self.uc.emu_stop()

    def _on_intr(self, uc, intno, _ud):
        pc = uc.reg_read(A.UC_ARM_REG_PC)
        if intno == 7:
            try:
                insn = struct.unpack("<H", uc.mem_read(pc, 2))[0]
            except UcError:
                insn = 0
            if insn == 0xBEAB:
                op, arg = uc.reg_read(A.UC_ARM_REG_R0), uc.reg_read(A.UC_ARM_REG_R1)
                try:
                    r0 = self.semihost.call(op, arg)
                except (UcError, ValueError, struct.error) as e:
                    self._stop_fault(f"firmware fault at pc=0x{pc:08x}: semihosting call 0x{op:x}"
                                     f" with a bad argument block at 0x{arg:08x} ({e})")
                    return
                uc.reg_write(A.UC_ARM_REG_R0, r0 & 0xFFFF_FFFF)
                # Resume after the BKPT from run(): writing PC inside a hook leaves Unicorn
                # 2.1 not syncing PC for later memory callbacks (unicorn PR #2181).
                if self.semihost.exit_code is not None:
                    self.stop_reason = "exit"
                else:
                    self._resume = pc + 2
                uc.emu_stop()
                return
            self._stop_fault(f"firmware fault at pc=0x{pc:08x}: breakpoint "
                             f"BKPT #0x{insn & 0xFF:02x}")
            return
        kind = _EXCP_NAMES.get(intno, f"CPU exception {intno}")
        self._stop_fault(f"firmware fault at pc=0x{pc:08x}: {kind}")

    def _on_unmapped(self, uc, access, address, size, value, _ud):
        kind = {19: "read", 20: "write", 21: "instruction fetch"}.get(access, f"access {access}")
        pc = uc.reg_read(A.UC_ARM_REG_PC)
        self._stop_fault(f"firmware fault at pc=0x{pc:08x}: unmapped {kind} at address "
                         f"0x{address:08x}")
        return False

    # ---------------------------------------------------------------- run
    def run(self) -> EmuResult:
        self.uc.reg_write(A.UC_ARM_REG_SP, self.initial_sp)
        self.uc.reg_write(A.UC_ARM_REG_MSP, self.initial_sp)
        self._resume: int | None = self.entry
        while True:
            pc, self._resume = self._resume, None
            try:
                self.uc.emu_start(pc | 1, 0xFFFF_FFFF)
            except UcError as e:
                if self.fault is None:
                    cur = self.uc.reg_read(A.UC_ARM_REG_PC)
                    kind = _UC_ERRORS.get(e.errno, str(e))
                    self.fault = f"firmware fault at pc=0x{cur:08x}: {kind}"
                self.stop_reason = "fault"
            if self.stop_reason is None and self.total >= self.max_instructions:
                self.stop_reason = "max-instructions"
            if self.stop_reason is not None:
                break
            if self._resume is not None:  # returning from a semihosting call
                continue
            # emu_start returned by itself: the core halted (WFI/WFE with nothing to wake it)
            self.stop_reason = "idle"
            break
        if self.stop_reason == "fault":
            raise McucError(self.fault.splitlines()[0])
        text = self.out.decode("utf-8", "replace")
        m = re.findall(r"^MCUC_STACK (\d+)", text, flags=re.M)
        total = self.total
        return EmuResult(
            stdout=text,
            exit_code=self.semihost.exit_code,
            instructions=self._inference if self._inference is not None else total,
            total_instructions=total,
            instructions_per_step=dict(sorted(self._steps.items())),
            stack_bytes=int(m[0]) if m else None,
            stopped_by=self.stop_reason,
            chip_state=summary(self.chip, self.bus.device),
        )


def run_elf(elf_path, memory_regions: list[tuple[int, int]] | None = None,
            semihost_files: dict[str, bytes] | None = None,
            max_instructions: int = 2_000_000_000, profile: bool = True,
            stop_on: str = "MCUC_DONE", *, count_mode: str = "block",
            chip: str = "stm32f746") -> EmuResult:
    """Run a Cortex-M4/M7 firmware ELF on the model of ``chip`` (:mod:`mcuc.sim.chips`: CPU
    model and peripherals) until it exits (semihosting), prints the ``stop_on`` line, idles
    (``b .`` / WFI), faults (:class:`mcuc.McucError`, one line) or exceeds ``max_instructions``
    (stops at the first block boundary at or past the limit).

    ``memory_regions`` ((base, size) pairs) replace the default RAM guess; the ELF's segments
    are always mapped (to run it on other inputs, patch a copy first:
    mcuc.target.elf.patch_elf). ``profile`` enables the ``mcuc_prof_marker`` hook (per-inference and
    per-step counts); total counting is always on (it costs little). ``count_mode``: "block"
    (native block hook, Python if no C compiler), "block-python", or "code" (per-instruction
    hook; slow, the reference for tests).

    DWT_CYCCNT reads the number of instructions retired before the reading instruction (one
    instruction = one cycle; a stand-in for cycles, not a timing model). No interrupts or
    exceptions are delivered: a firmware that waits for one idles and is stopped as "idle".
    """
    emu = UnicornM7(elf_path, memory_regions, semihost_files, max_instructions,
                    profile, stop_on, count_mode, chip)
    return emu.run()
