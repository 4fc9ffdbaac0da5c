"""Library output (issue 25 item 2): `mcuc export` / `mcuc build --lib`.

The exported folder is built the way a user would build it: a CMake project configured
with arm-none-eabi-gcc through the export's toolchain file, adding two exported models with
add_subdirectory and linking them into an application (mcuc's own firmware driver for one
of them, standing in for the user's main). The application's ELF runs in the Unicorn
engine and must print the model's numpy integer reference bit for bit; the shared runtime
target must hold each kernel once. PlatformIO and Zephyr cannot be run here (no network
for their toolchains): their files are checked for structure and for naming real files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.library import EXPORT_META, export_library, kernel_sources
from mcuc.paths import runtime_dir
from mcuc.pipeline import build
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import quantize, reference

from helpers import cli_error_line, compile_random, input_shape, random_inputs, random_model

TOOLS = ("cmake", "ninja", "arm-none-eabi-gcc")
needs_tools = pytest.mark.skipif(
    not unicorn_available() or any(shutil.which(t) is None for t in TOOLS),
    reason="needs the Unicorn engine, cmake, ninja and arm-none-eabi-gcc")
SEEDS = {"kws": 4, "vww": 5}


def _build(seed: int, out: Path, name: str, board: str = "stm32f746") -> tuple:
    cfg, c = compile_random(seed)
    build(random_model(cfg, seed), board, random_inputs(cfg, 16, seed), out,
          input_shape=input_shape(cfg), samples=2, name=name)
    return cfg, c


def _run(cmd: list, cwd: Path) -> str:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _app_cmake(fw: Path, libs: dict[str, Path], run: str) -> str:
    """A user's project: the board driver of build `fw` (startup, clock, UART, main.c that
    calls `<run>_run` on the samples in flash) plus the exported libraries."""
    b = load_board("stm32f746")
    board_src = " ".join(f"{fw}/board/{Path(s).name}" for s in b.sources)
    subdirs = "\n".join(f"add_subdirectory({d} {n})" for n, d in libs.items())
    defs = " ".join(d for d in b.defines() if not d.startswith("-DMCUC_ARM_DSP"))
    return f"""cmake_minimum_required(VERSION 3.13)
project(app C)
{subdirs}
add_executable(app.elf {fw}/main.c {fw}/{run}_samples.c {board_src})
target_include_directories(app.elf PRIVATE {fw} {fw}/board)
target_compile_options(app.elf PRIVATE -O2 {defs} -include {fw}/mcuc_prof.h)
set_target_properties(app.elf PROPERTIES C_STANDARD 99)
target_link_libraries(app.elf PRIVATE {' '.join(libs)} c gcc)
target_link_options(app.elf PRIVATE -nostartfiles -Wl,--gc-sections -T{fw}/linker.ld)
"""


@needs_tools
def test_cmake_library_links_into_an_application_and_runs_bit_exact(tmp_path) -> None:
    refs, libs = {}, {}
    for name, seed in SEEDS.items():
        cfg, c = _build(seed, tmp_path / name, name)
        xq = quantize(c, random_inputs(cfg, 2, seed + 100))
        refs[name] = (c, xq)
        libs[name] = export_library(tmp_path / name, tmp_path / f"{name}_lib")
    app = tmp_path / "app"
    app.mkdir()
    (app / "CMakeLists.txt").write_text(_app_cmake(tmp_path / "kws", libs, "kws"))
    toolchain = libs["kws"] / "cmake" / "arm-none-eabi.cmake"
    out = _run(["cmake", "-G", "Ninja", "-S", app, "-B", app / "b",
                f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"], app)
    print(out)
    print(_run(["cmake", "--build", app / "b"], app))
    # the runtime target holds each kernel once: the union of both models' kernels
    members = _run(["arm-none-eabi-ar", "t", app / "b" / "kws" / "libmcuc_runtime.a"], app)
    objs = sorted(m for m in members.split() if m)
    want = sorted(set(kernel_sources(libs["kws"] / "kws.c", runtime_dir() / "src"))
                  | set(kernel_sources(libs["vww"] / "vww.c", runtime_dir() / "src")))
    assert [Path(Path(o).stem).stem for o in objs] == want
    c, xq = refs["kws"]
    res = run_unicorn(app / "b" / "app.elf", xq)
    print(res.get("stdout", ""))
    assert len(res["outputs"]) == len(xq)
    for got, ref in zip(res["outputs"], reference(c, xq), strict=True):
        np.testing.assert_array_equal(got, ref.reshape(-1))


def test_export_contents(tmp_path) -> None:
    _build(SEEDS["kws"], tmp_path / "b", "kws")
    lib = export_library(tmp_path / "b")
    assert lib == tmp_path / "b" / "lib"
    files = {p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file()}
    assert {"kws.h", "kws.c", "kws_weights.c", "kws_weights.h", "CMakeLists.txt",
            "cmake/arm-none-eabi.cmake", "library.json", "zephyr/module.yml",
            "zephyr/CMakeLists.txt", "zephyr/Kconfig", "README.md", EXPORT_META} <= files
    # no firmware code: no startup, clock, UART, driver or samples
    assert not [f for f in files if f.startswith("board/") or f in ("main.c", "linker.ld")
                or "samples" in f or "startup" in f]
    kernels = json.loads((lib / EXPORT_META).read_text())["kernels"]
    src = sorted(f[len("mcuc/src/"):] for f in files if f.startswith("mcuc/src/"))
    assert [f[:-2] for f in src if f.endswith(".c")] == kernels
    assert "linear" in kernels and "conv2d" not in kernels   # what the model calls, only
    # a kernel split over files comes whole: linear_dsp.c and the private linear_internal.h
    assert "linear_dsp" in kernels and "linear_internal.h" in src
    assert {f for f in src if f.endswith(".h")} == {
        h.name for h in (runtime_dir() / "src").glob("*.h")
        if any(h.name.startswith(f"{k}_") for k in kernels)}
    assert (lib / "kws.c").read_bytes() == (tmp_path / "b" / "kws.c").read_bytes()
    pio = json.loads((lib / "library.json").read_text())
    assert pio["name"] == "kws" and "-DMCUC_ARM_DSP" in pio["build"]["flags"]
    for pattern in pio["build"]["srcFilter"][1:]:
        assert (lib / pattern[2:-1]).is_file(), pattern
    mod = [ln for ln in (lib / "zephyr" / "module.yml").read_text().splitlines()
           if ln.strip() and not ln.startswith("#")]
    assert mod == ["name: kws", "build:", "  cmake: zephyr", "  kconfig: zephyr/Kconfig"]
    assert "config KWS\n" in (lib / "zephyr" / "Kconfig").read_text()
    readme = (lib / "README.md").read_text()
    assert "kws_run(" in readme and ".kws_weights" in readme and "STM32CubeIDE" in readme


def test_export_refuses_tampered_or_wrong_places(tmp_path) -> None:
    _build(SEEDS["kws"], tmp_path / "b", "kws", board="host")
    with pytest.raises(McucError, match="is or holds an mcuc build"):
        export_library(tmp_path / "b", tmp_path / "b")
    with pytest.raises(McucError, match="is or holds an mcuc build"):
        export_library(tmp_path / "b", tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("user data")
    with pytest.raises(McucError, match="not empty"):
        export_library(tmp_path / "b", tmp_path / "other")
    assert (tmp_path / "other" / "mine.txt").read_text() == "user data"
    # a second export replaces the first as a whole
    lib = export_library(tmp_path / "b", tmp_path / "lib")
    (lib / "stale.c").write_text("int stale;")
    export_library(tmp_path / "b", tmp_path / "lib")
    assert not (lib / "stale.c").exists()
    with (tmp_path / "b" / "kws_weights.c").open("a") as f:
        f.write("/* changed */\n")
    with pytest.raises(McucError, match="changed after it was built"):
        export_library(tmp_path / "b", tmp_path / "lib2")
    assert not (tmp_path / "lib2").exists()


def test_cli_export_is_one_line_on_error(tmp_path, capsys) -> None:
    cli_error_line(capsys, ["export", str(tmp_path / "nothing-here")])


def test_host_export_has_no_core_flags(tmp_path) -> None:
    _build(SEEDS["vww"], tmp_path / "h", "vww", board="host")
    lib = export_library(tmp_path / "h")
    cm = (lib / "CMakeLists.txt").read_text()
    assert 'set(VWW_CORE_FLAGS "" CACHE' in cm and "MCUC_ARM_DSP" not in cm
    if shutil.which("cmake") and shutil.which("ninja"):   # a host build of the library
        _run(["cmake", "-G", "Ninja", "-S", lib, "-B", tmp_path / "hb"], tmp_path)
        _run(["cmake", "--build", tmp_path / "hb"], tmp_path)
        assert (tmp_path / "hb" / "libvww.a").is_file()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
