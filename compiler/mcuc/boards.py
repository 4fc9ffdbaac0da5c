"""Boards are data: boards/<name>/board.toml describes one target.

The host board is a plain process; every other board is a Cortex-M MCU whose TOML
names the core and FPU (gcc flags), its flash and RAM regions (the linker script is
rendered from them), its tightly coupled memories if it has any ([memory] itcm/dtcm: the
hot kernels run from ITCM, the arena lives in DTCM), the stack reserve, the startup/system
sources, how inputs arrive (flash samples or a semihosting file), and its emulators (with
the chip the Unicorn engine models), flasher and Renode platform.
Keeping all of that here means adding a board needs no Python change.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from mcuc import McucError
from mcuc.paths import boards_dir


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    cc: str
    sram_bytes: int
    flash_bytes: int
    clock_hz: int
    emulators: tuple[str, ...]
    path: Path
    extra: dict = field(default_factory=dict, compare=False)
    # MCU boards only (defaults describe the host):
    mcpu: str = ""
    fpu: str = ""
    float_abi: str = ""
    has_dwt: bool = False
    dsp: bool = False  # ARMv7E-M DSP extension: the optimized kernel variants (MCUC_ARM_DSP)
    flash_origin: int = 0
    ram_origin: int = 0
    stack_bytes: int = 0
    sources: tuple[str, ...] = ()
    irq_count: int = 0
    output: str = "stdout"
    inputs: str = "file"
    exit: str = "process"
    flasher: dict = field(default_factory=dict, compare=False)
    renode: dict = field(default_factory=dict, compare=False)
    qemu: dict = field(default_factory=dict, compare=False)
    chip: str = ""  # what the Unicorn engine models ([unicorn] chip; default: the bare core)
    # Tightly coupled memories ([memory] itcm / dtcm; size 0: the board has none).
    itcm_origin: int = 0
    itcm_bytes: int = 0
    dtcm_origin: int = 0
    dtcm_bytes: int = 0
    # External memory-mapped flash ([memory] qspi; size 0: none): a region a build may place
    # its weights in (`weights_region="qspi"`). The firmware does not set up the controller:
    # on a board the application maps it (memory-mapped mode) before the first inference.
    qspi_origin: int = 0
    qspi_bytes: int = 0

    def weight_regions(self) -> tuple[str, ...]:
        """Where this board can place a model's weights: its flash, and "qspi" if it has one."""
        return ("flash", "qspi") if self.qspi_bytes else ("flash",)

    @property
    def is_mcu(self) -> bool:
        """True for cross-built boards (everything except the host)."""
        return self.core != "host"

    @property
    def semihosting(self) -> bool:
        return self.inputs == "semihost-file"

    @property
    def dtcm_in_ram(self) -> bool:
        """True when the DTCM is the start of the RAM region (STM32F7): no region of its own,
        the bottom of RAM (stack, .data, .bss, arena) is in it as far as it reaches."""
        return bool(self.dtcm_bytes) and self.dtcm_origin == self.ram_origin

    @property
    def arena_dtcm_bytes(self) -> int:
        """Size of the DTCM region the linker script places the arena in when it fits; 0 where
        the board has no DTCM apart from its RAM region."""
        return 0 if self.dtcm_in_ram else self.dtcm_bytes

    @property
    def default_engine(self) -> str | None:
        return self.emulators[0] if self.emulators else None

    def defines(self) -> list[str]:
        """-D flags that tell the shared C sources what this board can do."""
        out = [f"-DMCUC_IRQ_COUNT={self.irq_count}"]
        if self.has_dwt:
            out.append("-DMCUC_BOARD_HAS_CYCLES")
        if self.semihosting:
            out.append("-DMCUC_INPUTS_FROM_FILE")
        if self.dsp:
            out.append("-DMCUC_ARM_DSP")
        if self.itcm_bytes:
            out.append("-DMCUC_BOARD_HAS_ITCM")
        return out

    def with_kernels(self, kernels: str) -> Board:
        """This board with the kernel variants `kernels` selects: "optimized" (the core's
        own, e.g. ARMv7E-M DSP) or "portable" (the C reference on every core)."""
        if kernels not in KERNELS:
            raise McucError(f"--kernels must be one of {', '.join(KERNELS)}, not "
                            f"{kernels!r}")
        return self if kernels == "optimized" else replace(self, dsp=False)

    def source_paths(self) -> list[Path]:
        """Board C sources, plus every header of boards/common (they include each other)."""
        files = [(self.path / s).resolve() for s in self.sources]
        files += sorted((self.path.parent / "common").glob("*.h"))
        return files


KERNELS = ("optimized", "portable")

_TOP = {"name", "description", "core", "cc", "sram_bytes", "flash_bytes", "clock_hz",
        "emulators", "cpu", "memory", "firmware", "flasher", "renode", "qemu", "unicorn"}


def list_boards() -> list[str]:
    return sorted(p.parent.name for p in boards_dir().glob("*/board.toml"))


def _mcu_fields(data: dict, path: Path) -> dict:
    """The cross-build keys of an MCU board, checked so that a typo fails at load time."""
    cpu, mem, fw = data["cpu"], data["memory"], data["firmware"]
    flash, ram = mem["flash"], mem["ram"]
    if int(flash["size"]) != int(data["flash_bytes"]) or int(ram["size"]) != int(
            data["sram_bytes"]):
        raise McucError(f"{path}: memory.flash/ram sizes disagree with flash_bytes/sram_bytes")
    for src in fw["sources"]:
        if not (path.parent / src).is_file():
            raise McucError(f"{path}: firmware source {src} not found")
    if fw.get("inputs") not in ("flash", "semihost-file"):
        raise McucError(f"{path}: firmware.inputs must be 'flash' or 'semihost-file'")
    regions = {"flash": (int(flash["origin"]), int(flash["size"])),
               "ram": (int(ram["origin"]), int(ram["size"]))}
    itcm = _tcm(mem, "itcm", regions, path)
    if itcm[1]:
        regions["itcm"] = itcm
    dtcm = _tcm(mem, "dtcm", regions, path)
    if dtcm[1] and dtcm[0] != regions["ram"][0]:
        regions["dtcm"] = dtcm
    qspi = _tcm(mem, "qspi", regions, path)
    return dict(
        mcpu=cpu["mcpu"], fpu=cpu["fpu"], float_abi=cpu.get("float_abi", "hard"),
        has_dwt=bool(cpu.get("dwt", False)), dsp=cpu.get("dsp", False) is True,
        flash_origin=int(flash["origin"]),
        ram_origin=int(ram["origin"]), stack_bytes=int(mem.get("stack_bytes", 8192)),
        sources=tuple(fw["sources"]), irq_count=int(fw.get("irq_count", 32)),
        output=fw.get("output", "uart"), inputs=fw["inputs"], exit=fw.get("exit", "loop"),
        flasher=dict(data.get("flasher", {})), renode=dict(data.get("renode", {})),
        qemu=dict(data.get("qemu", {})),
        chip=str(data.get("unicorn", {}).get("chip", data["core"])),
        itcm_origin=itcm[0], itcm_bytes=itcm[1], dtcm_origin=dtcm[0], dtcm_bytes=dtcm[1],
        qspi_origin=qspi[0], qspi_bytes=qspi[1],
    )


def _tcm(mem: dict, key: str, regions: dict[str, tuple[int, int]],
         path: Path) -> tuple[int, int]:
    """(origin, size) of the optional [memory] itcm / dtcm / qspi entry; (0, 0) when absent. A TCM
    must be word aligned and lie apart from flash; an ITCM apart from RAM too, while a DTCM
    either lies apart from RAM or is RAM's first bytes (STM32F7: DTCM opens its SRAM)."""
    if key not in mem:
        return 0, 0
    entry = mem[key]
    if (not isinstance(entry, dict) or set(entry) != {"origin", "size"}
            or not all(type(v) is int for v in entry.values())):
        raise McucError(f"{path}: memory.{key} must be {{ origin = <int>, size = <int> }}")
    origin, size = entry["origin"], entry["size"]
    if origin < 0 or size <= 0 or origin % 4 or size % 4 or origin + size > 1 << 32:
        raise McucError(f"{path}: memory.{key} needs a word-aligned origin and a positive "
                        f"word-multiple size inside 4 GiB (got origin {origin:#x}, size {size})")
    ram_lo, ram_size = regions["ram"]
    inside_ram = key == "dtcm" and origin == ram_lo and size <= ram_size
    for name, (lo, n) in regions.items():
        if origin < lo + n and lo < origin + size and not (name == "ram" and inside_ram):
            raise McucError(f"{path}: memory.{key} overlaps memory.{name}"
                            + (" (a DTCM inside RAM must start at RAM's origin)"
                               if key == "dtcm" and name == "ram" else ""))
    return origin, size


_BOARD_NAME = re.compile(r"[a-z0-9_-]{1,64}")


def load_board(name: str) -> Board:
    """The board `name`, which must be one that `mcuc boards` lists (a plain name, never a
    path: a name from the command line or an mcuc.json cannot reach other directories)."""
    known = list_boards()
    if not isinstance(name, str) or not _BOARD_NAME.fullmatch(name) or name not in known:
        from mcuc.text import one_line

        shown = (f"'{one_line(name)}'" if isinstance(name, str)
                 else f"(a JSON {type(name).__name__}, not a name)")
        raise McucError(f"unknown board {shown} (known: {', '.join(known)})")
    path = boards_dir() / name / "board.toml"
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise McucError(f"{path}: invalid TOML: {e}") from None
    try:
        mcu = _mcu_fields(data, path) if data["core"] != "host" else {}
        return Board(
            name=data["name"], description=data.get("description", ""), core=data["core"],
            cc=data.get("cc", "gcc"), sram_bytes=int(data.get("sram_bytes", 0)),
            flash_bytes=int(data.get("flash_bytes", 0)), clock_hz=int(data.get("clock_hz", 0)),
            emulators=tuple(data.get("emulators", ())), path=path.parent,
            extra={k: v for k, v in data.items() if k not in _TOP}, **mcu,
        )
    except KeyError as e:
        raise McucError(f"{path}: missing key {e}") from None
