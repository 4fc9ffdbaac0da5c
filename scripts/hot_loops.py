"""Estimated Cortex-M7 cycles of a firmware's hottest loops (for bench_kernels.py).

Why: the Unicorn engine counts retired instructions exactly, but a Cortex-M7 dual-issues
some pairs and stalls on others, and published engines report cycles. Per kernel
function, the basic block that retires the most instructions (its inner loop) is found
by running the firmware in the engine with a block hook, disassembled, and handed to
llvm-mca's Cortex-M7 model (`-mtriple=thumbv7em-none-eabi -mcpu=cortex-m7`), which
estimates the cycles of one iteration in steady state. It is a model of the pipeline,
not a measurement: no flash wait states, cache misses or branch mispredictions.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# MACs per instruction, for the blocks' MACs per iteration
MAC_OPS = {"smlad": 2, "smladx": 2, "smlabb": 1, "smlatt": 1, "smlabt": 1, "smlatb": 1,
           "mla": 1, "smulbb": 1, "smuad": 2}
LOOP_LABEL = ".Lhot"


@dataclass
class HotLoop:
    function: str
    instructions: int        # per iteration, the closing branch included
    macs: int                # per iteration (SMLAD = 2)
    iterations: int          # over the firmware's run
    share: float             # of the function's retired instructions
    cycles: float | None     # llvm-mca estimate per iteration; None without llvm-mca
    function_total: int      # the function's retired instructions over the run


def _profile(elf: Path, chip: str) -> tuple[Counter, list[tuple[int, int, str]]]:
    """Executions per (block address, size), and the function symbols."""
    from unicorn import UC_HOOK_BLOCK

    from mcuc.sim.unicorn_m7 import UnicornM7

    emu = UnicornM7(elf, profile=True, chip=chip)
    counts: Counter = Counter()

    def on_block(uc, address: int, size: int, _data: object) -> None:
        counts[(address, size)] += 1

    emu.uc.hook_add(UC_HOOK_BLOCK, on_block)
    emu.run()
    syms = sorted((a & ~1, a + s, n) for n, (a, s) in emu.symbols.items()
                  if s > 0 and not n.startswith("$"))
    return counts, syms


def _disassemble(elf: Path, start: int, end: int) -> list[tuple[int, str, int | None]]:
    """(address, instruction, branch target or None) in [start, end), the instruction as
    llvm-mca input (branches jump to LOOP_LABEL)."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", f"--start-address={start}",
                          f"--stop-address={end}", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    lines = []
    in_it = 0  # instructions left in an IT block: their condition suffix is dropped
    for row in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{4}\s?){1,2}\s+(\S+)\s*([^@;<]*)", row)
        if not m:
            continue
        addr, mnem, ops = int(m.group(1), 16), m.group(2).split(".")[0], m.group(3).strip()
        if re.fullmatch(r"it[te]{0,3}", mnem):
            # llvm-mca 14 rejects IT; the M7 folds it, and the block's instructions are
            # modelled unconditionally (an approximation, said in bench/kernels.md)
            in_it = len(mnem) - 1
            lines.append((addr, "", None))
            continue
        if in_it:
            mnem, in_it = mnem[:-2], in_it - 1
        target = None
        if re.fullmatch(r"b(?:[a-z]{2})?", mnem) or mnem in ("cbz", "cbnz"):
            t = re.search(r"([0-9a-f]+)\s*$", ops)
            target = int(t.group(1), 16) if t else None
            ops = LOOP_LABEL if mnem[0] == "b" else ops.split(",")[0] + ", " + LOOP_LABEL
        lines.append((addr, f"{mnem} {ops}".strip(), target))
    return lines


def _mca_cycles(asm: list[str]) -> float | None:
    if shutil.which("llvm-mca") is None:
        return None
    text = f"{LOOP_LABEL}:\n" + "\n".join(a for a in asm if a) + "\n"
    res = subprocess.run(["llvm-mca", "-mtriple=thumbv7em-none-eabi", "-mcpu=cortex-m7",
                          "-iterations=200"], input=text, capture_output=True, text=True)
    m = re.search(r"Total Cycles:\s+(\d+)", res.stdout)
    return int(m.group(1)) / 200 if res.returncode == 0 and m else None


def _loop_of(blocks: dict[tuple[int, int], int], code: list[tuple[int, str, int | None]]
             ) -> tuple[int, list[str]]:
    """(executions, asm) of the loop around the hottest block: from its closing backward
    branch's target to that branch (the engine may cut one loop body into blocks that
    run different numbers of times); the block alone if it does not close a loop."""
    addrs = [a for a, _, _ in code]

    def span(start: int, end: int) -> list[tuple[int, str, int | None]]:
        return code[bisect.bisect_left(addrs, start):bisect.bisect_left(addrs, end)]

    (start, size), n = max(blocks.items(),
                           key=lambda kv: kv[1] * len(span(kv[0][0], sum(kv[0]))))
    body = span(start, start + size)
    last_addr, _, target = body[-1]
    if target is not None and addrs[0] <= target <= start:
        body = span(target, last_addr + 1)
    return n, [t for _, t, _ in body]


def hot_loops(elf: Path, chip: str, top: int = 8,
              functions: dict[str, int] | None = None) -> tuple[int, list[HotLoop]]:
    """(retired instructions, the hottest loop of each of the `top` functions that retire
    the most instructions), over the firmware's whole run (see the module doc); every
    function's retired instructions go into `functions` when it is given."""
    counts, syms = _profile(elf, chip)
    starts = [s[0] for s in syms]
    per_fn: dict[tuple[int, int, str], dict[tuple[int, int], int]] = {}
    for (addr, size), n in counts.items():
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < syms[i][1]:
            per_fn.setdefault(syms[i], {})[(addr, size)] = n
    found = []
    for sym, blocks in per_fn.items():
        code = _disassemble(elf, sym[0], sym[1])
        addrs = [a for a, _, _ in code]
        total = sum(n * (bisect.bisect_left(addrs, a + s) - bisect.bisect_left(addrs, a))
                    for (a, s), n in blocks.items())
        found.append((total, sym[2], blocks, code))
        if functions is not None:
            functions[sym[2]] = total
    found.sort(key=lambda f: f[0], reverse=True)
    loops = []
    for total, fn, blocks, code in found[:top]:
        n, asm = _loop_of(blocks, code)
        macs = sum(MAC_OPS.get(line.split()[0], 0) for line in asm if line)
        loops.append(HotLoop(fn, len(asm), macs, n, n * len(asm) / total,
                             _mca_cycles(asm), total))
    return sum(f[0] for f in found), loops
