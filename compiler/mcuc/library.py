"""Library output: a build's model as a folder the user's own firmware project takes in.

`mcuc build` makes a complete firmware of its own (startup, clock, UART). A product has
its own, so `export_library` writes what the product needs and nothing else: the model's
C and header (`<name>.c`, `<name>.h`, `<name>_weights.{c,h}`), the runtime kernels the
model calls (the variant the board's core runs, chosen by its -D flags), and the glue
for four build systems: a CMake static library target, a PlatformIO `library.json`, a
Zephyr module and, for STM32CubeIDE, a README with the steps. No startup, clock or HAL
code is inside. A toolchain file for arm-none-eabi-gcc comes along for CMake users who
have none.

Two exported models may sit in one project: their symbols carry their names, and the
runtime kernels are one shared target (`mcuc_runtime`) that each export adds its kernels
to once, so no kernel is compiled twice.

The build directory is untrusted: the model's files are copied only when their digests
match the build's mcuc.json (buildmeta), the runtime comes from this mcuc's own copy,
and nothing from the model file reaches CMake, JSON or YAML except the checked name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from mcuc import McucError, __version__
from mcuc.boards import Board, load_board
from mcuc.builddir import META, staging
from mcuc.buildmeta import Build, load_build, sha256
from mcuc.codegen.templates import environment
from mcuc.paths import runtime_dir
from mcuc.text import path_line

EXPORT_META = "mcuc-export.json"
# Board -D flags that select kernel code; the others (IRQ count, console) are firmware's.
KERNEL_DEFINES = ("MCUC_ARM_DSP",)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def kernel_sources(model_c: Path, src: Path) -> list[str]:
    """Stems of the runtime files `model_c` needs, following calls between kernels
    (tokenwise calls linear, layernorm, ...): a file is needed when needed code names one
    of its `mcuc_<stem>_...` functions, and with it the parts of that kernel split over
    files of its own (linear_dsp.c: kernel_parts). Comments are ignored."""
    stems = sorted(p.stem for p in src.glob("*.c"))
    texts = {s: _COMMENT.sub("", (src / f"{s}.c").read_text()) for s in stems}
    need: list[str] = []
    todo = [_COMMENT.sub("", model_c.read_text())]
    while todo:
        text = todo.pop()
        for s in stems:
            if s not in need and re.search(rf"\bmcuc_{s}_\w+\s*\(", text):
                for part in (s, *kernel_parts(s, stems)):
                    need.append(part)
                    todo.append(texts[part])
    return sorted(need)


def kernel_parts(stem: str, names: list[str]) -> list[str]:
    """The names among `names` (file stems or names) of kernel `stem`'s other files:
    <stem>_<part> (linear_dsp.c, linear_internal.h), which only its own files use."""
    return [n for n in names if n.startswith(f"{stem}_")]


def core_flags(board: Board) -> list[str]:
    """gcc flags for the board's core (empty for the host)."""
    if not board.is_mcu:
        return []
    return [f"-mcpu={board.mcpu}", "-mthumb", f"-mfpu={board.fpu}",
            f"-mfloat-abi={board.float_abi}"]


def _checked_model_files(b: Build) -> dict[str, Path]:
    """The model's files; load_build has checked each against its digest in mcuc.json,
    so one the build does not list is refused rather than copied unchecked."""
    listed = b.meta.get("files", {})
    for path in b.model_files.values():
        if path.name not in listed or not path.is_file():
            raise McucError(f"{path_line(path)} is missing or not recorded in the build's "
                            "mcuc.json; build again")
    return b.model_files


def export_library(build_dir: Path | str, dest: Path | str | None = None) -> Path:
    """Write the library folder for the build at `build_dir` to `dest` (default:
    `<build_dir>/lib`), replacing an earlier export there atomically; returns its path."""
    b = load_build(build_dir)
    if b.meta.get("mcuc") != __version__:
        raise McucError(f"{path_line(b.path)} was built by mcuc {b.meta.get('mcuc')!r}, this "
                        f"is {__version__}; build again before exporting")
    board = load_board(b.board)
    model = _checked_model_files(b)
    rt = runtime_dir()
    kernels = kernel_sources(model["source"], rt / "src")
    defines = [d[2:] for d in board.defines() if d[2:] in KERNEL_DEFINES]
    ctx = {"p": b.name, "P": b.name.upper(), "board": board, "version": __version__,
           "files": {k: v.name for k, v in model.items()}, "kernels": kernels,
           "defines": defines, "core_flags": core_flags(board), "optimize": _optimize(b)}
    out = Path(os.path.abspath(dest if dest is not None else b.path / "lib"))
    if out == b.path or out in b.path.parents or os.path.lexists(out / META):
        raise McucError(f"refusing to export into {path_line(out)}: it is or holds an mcuc "
                        "build; name a new directory with --out")
    env = environment()
    with staging(out, last=EXPORT_META, made_by="mcuc export") as tmp:
        for path in model.values():
            shutil.copyfile(path, tmp / path.name)
        inc = tmp / "mcuc" / "include" / "mcuc"
        inc.mkdir(parents=True)
        for h in sorted((rt / "include" / "mcuc").glob("*.h")):
            shutil.copyfile(h, inc / h.name)
        (tmp / "mcuc" / "src").mkdir()
        headers = sorted(h.name for h in (rt / "src").glob("*.h"))
        for k in kernels:
            shutil.copyfile(rt / "src" / f"{k}.c", tmp / "mcuc" / "src" / f"{k}.c")
            for h in kernel_parts(k, headers):
                shutil.copyfile(rt / "src" / h, tmp / "mcuc" / "src" / h)
        for rel, tpl in _TEMPLATES.items():
            target = tmp / rel.format(p=b.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(env.get_template(tpl).render(**ctx))
        record = {"mcuc": __version__, "name": b.name, "board": board.name,
                  "kernels": kernels, "defines": defines,
                  "files": {p.relative_to(tmp).as_posix(): sha256(p)
                            for p in sorted(tmp.rglob("*")) if p.is_file()
                            and p.name not in (".mcuc-build",)}}
        (tmp / EXPORT_META).write_text(json.dumps(record, indent=2) + "\n")
    return out


def _optimize(b: Build) -> str:
    ref = b.meta.get("reference")
    opt = ref.get("optimize") if isinstance(ref, dict) else None
    return opt if opt in ("size", "speed") else "size"


# Output file (relative, {p} = the model's name) -> template.
_TEMPLATES = {
    "CMakeLists.txt": "lib/CMakeLists.txt.j2",
    "cmake/arm-none-eabi.cmake": "lib/arm-none-eabi.cmake.j2",
    "library.json": "lib/library.json.j2",
    "zephyr/module.yml": "lib/module.yml.j2",
    "zephyr/CMakeLists.txt": "lib/zephyr_CMakeLists.txt.j2",
    "zephyr/Kconfig": "lib/Kconfig.j2",
    "README.md": "lib/README.md.j2",
}
