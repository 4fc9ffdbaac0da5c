"""Tightly coupled memory placement (mcuc.tcm, issue 23 item 6).

On the boards whose board.toml declares ITCM/DTCM (stm32f746, stm32h743) the default model's
hot kernels must run from ITCM addresses and its arena lie in DTCM, per the linked ELF and
the map file, and the firmware must still equal the integer reference bit for bit in the
Unicorn engine. A DTCM or ITCM too small for the arena or the kernels falls back to RAM /
flash, still bit-exact. Boards without TCM (stm32f427, qemu-m7) keep their layout.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError, tcm
from mcuc.boards import Board, load_board
from mcuc.pipeline import calibration_samples, compile_graph, load_graph
from mcuc.sim.elfimage import ElfImage
from mcuc.target.elf import elf_sizes
from mcuc.target.firmware import cross_build
from mcuc.target.fit import confirm_fit
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import build_firmware, quantize, reference

from helpers import compile_random

pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                       reason="needs arm-none-eabi-gcc"),
]

# The hottest kernels of the default model (DSP variants): on every TCM board in ITCM.
HOT = ("mcuc_linear_planned_s8", "mcuc_att_dot_pair", "mcuc_attention_s8", "mcuc_tokenwise_s8")
TCM_BOARDS = ("stm32f746", "stm32h743")


def _in(addr: int, origin: int, size: int) -> bool:
    return origin <= addr < origin + size


@pytest.fixture(scope="module")
def default_model():
    graph = load_graph(None)
    return compile_graph(graph, calibration_samples(graph, "fashion-mnist"))


@pytest.fixture(scope="module")
def built(default_model, tmp_path_factory) -> dict[str, Path]:
    """The default model's firmware for each board with TCM (and the stm32f427), built once."""
    c = default_model
    xq = quantize(c, np.zeros((2, *c.schedule.input_shape[1:]), np.float32))  # 2 slots
    out = {}
    for board in (*TCM_BOARDS, "stm32f427"):
        d = tmp_path_factory.mktemp(board)
        build_firmware(c, board, d, xq)
        out[board] = d
    return out


def _inputs(c, n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(23)
    shape = (n, *c.schedule.input_shape[1:])
    return quantize(c, rng.uniform(0.0, 1.0, shape).astype(np.float32))


@pytest.mark.parametrize("board", TCM_BOARDS)
def test_hot_kernels_in_itcm_and_arena_in_dtcm(board: str, built, default_model) -> None:
    b = load_board(board)
    assert b.itcm_bytes and b.dtcm_bytes
    out = built[board]
    img = ElfImage(out / "firmware.elf")
    for fn in HOT:
        addr, size = img.symbols[fn]
        assert _in(addr, b.itcm_origin, b.itcm_bytes) and size > 0, (board, fn, hex(addr))
        assert addr + size <= b.itcm_origin + b.itcm_bytes
    # the code runs at its ITCM address but is loaded from flash
    vma = img.sections[".itcm_text"]
    assert vma == b.itcm_origin and _in(img.lma(vma), b.flash_origin, b.flash_bytes)
    addr, size = img.symbols["model_arena"]   # the model's static arena (built as "model")
    assert size == default_model.plan.arena_bytes
    assert _in(addr, b.dtcm_origin, b.dtcm_bytes) and addr + size <= b.dtcm_origin + b.dtcm_bytes
    sizes = elf_sizes(out / "firmware.elf", b)
    assert 0 < sizes["itcm_bytes"] <= b.itcm_bytes
    assert sizes["dtcm_bytes"] == (size if not b.dtcm_in_ram else 0)
    confirm_fit(b, sizes)
    # the map file shows the placement
    text = (out / "firmware.map").read_text()
    assert f".itcm_text      0x{b.itcm_origin:08x}" in text
    for fn in HOT:
        assert f" .text.{fn}" in text
    # the chosen set's bound (veneers counted) holds for the linked section
    placement = tcm.choose(b, sorted((out / "obj").rglob("*.o")), ["model"])
    assert sizes["itcm_bytes"] <= placement.itcm_bound <= b.itcm_bytes
    assert placement.arena_in_dtcm == (not b.dtcm_in_ram)


@pytest.mark.skipif(not unicorn_available(), reason="mcuc.sim.unicorn_m7 not available")
@pytest.mark.parametrize("board", TCM_BOARDS)
def test_tcm_firmware_is_bit_exact(board: str, built, default_model) -> None:
    c = default_model
    xq = _inputs(c)
    res = run_unicorn(built[board] / "firmware.elf", xq, chip=load_board(board).chip)
    for got, ref in zip(res["outputs"], reference(c, xq), strict=True):
        np.testing.assert_array_equal(got, ref.reshape(-1))


@pytest.mark.skipif(not unicorn_available(), reason="mcuc.sim.unicorn_m7 not available")
def test_too_small_tcms_fall_back_to_ram_and_flash(built, default_model, tmp_path) -> None:
    """An H743 whose DTCM cannot take the arena and whose ITCM takes only some kernels: the
    arena stays in AXI SRAM, the rest of the code in flash, and the firmware is bit-exact."""
    c = default_model
    full = ElfImage(built["stm32h743"] / "firmware.elf").symbols
    first, second = (full[n][1] for n in ("mcuc_linear_planned_s8", "mcuc_lin_short16"))
    # room for the first kernel in priority order and its veneers, not for the second
    itcm = (first + 256 + 7) & ~7
    assert second > 256
    b = dataclasses.replace(load_board("stm32h743"), itcm_bytes=itcm,
                            dtcm_bytes=c.plan.arena_bytes - 8)
    out = tmp_path / "small"
    shutil.copytree(built["stm32h743"], out)
    elf = cross_build(out, b)
    img = ElfImage(elf)
    addr, _ = img.symbols["model_arena"]
    assert _in(addr, b.ram_origin, b.sram_bytes)
    lin, _ = img.symbols["mcuc_lin_short16"]   # does not fit beside the dispatcher
    assert _in(lin, b.flash_origin, b.flash_bytes)
    sizes = elf_sizes(elf, b)
    assert 0 < sizes["itcm_bytes"] <= itcm and sizes["dtcm_bytes"] == 0
    in_itcm = [n for n, (a, s) in img.symbols.items()
               if s and _in(a, b.itcm_origin, b.itcm_bytes)]
    assert "mcuc_linear_planned_s8" in in_itcm   # the first in priority order goes there
    xq = _inputs(c)
    res = run_unicorn(elf, xq, chip=b.chip)
    for got, ref in zip(res["outputs"], reference(c, xq), strict=True):
        np.testing.assert_array_equal(got, ref.reshape(-1))


def test_estimate_places_the_arena_like_the_linker() -> None:
    from mcuc.target.fit import estimate

    h7, f7 = load_board("stm32h743"), load_board("stm32f746")
    assert tcm.arena_in_dtcm(h7, 128 * 1024) and not tcm.arena_in_dtcm(h7, 128 * 1024 + 1)
    assert not tcm.arena_in_dtcm(f7, 1000)   # the F7's DTCM is the bottom of its RAM region
    fit = estimate(h7, 20_000, 100_000, 10, 784, 10, 4)
    assert fit.arena_in_dtcm and fit.sram == 20_000 + fit.stack + fit.data
    # code copied to ITCM keeps its flash image: ITCM boards count veneers on top, never less
    no_tcm = dataclasses.replace(h7, itcm_bytes=0, dtcm_bytes=0)
    assert fit.code > estimate(no_tcm, 20_000, 100_000, 10, 784, 10, 4).code


@pytest.mark.parametrize("board", ["stm32f427", "qemu-m7"])
def test_boards_without_tcm_keep_their_layout(board: str, built, tmp_path) -> None:
    b = load_board(board)
    assert not b.itcm_bytes and not b.dtcm_bytes
    assert "-DMCUC_BOARD_HAS_ITCM" not in b.defines()
    if board == "stm32f427":
        out = built[board]
    else:
        _cfg, c = compile_random(9)
        out = tmp_path / board
        build_firmware(c, board, out, np.zeros((1, int(np.prod(c.schedule.input_shape))),
                                               np.int8))
    script = (out / "linker.ld").read_text()
    assert "ITCM" not in script and "DTCM" not in script and ".itcm_text" not in script
    img = ElfImage(out / "firmware.elf")
    assert ".itcm_text" not in img.sections
    # all code in flash, the arena at the top of RAM's data (after .bss), as before
    for fn in HOT:
        if fn in img.symbols:
            assert _in(img.symbols[fn][0], b.flash_origin, b.flash_bytes)
    arena, _ = img.symbols["model_arena"]
    assert _in(arena, b.ram_origin, b.sram_bytes) and arena >= img.sections[".bss"]


def _board_with(tmp_path: Path, monkeypatch, board: str, old: str, new: str) -> Board:
    from mcuc import boards as boards_mod

    root = Path(boards_mod.boards_dir())
    shutil.copytree(root, tmp_path / "boards")
    toml = tmp_path / "boards" / board / "board.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))
    monkeypatch.setattr(boards_mod, "boards_dir", lambda: tmp_path / "boards")
    return boards_mod.load_board(board)


@pytest.mark.parametrize("old, new, msg", [
    ("itcm = { origin = 0x00000000, size = 0x10000 }", "itcm = { origin = 0, size = -4 }",
     "memory.itcm needs a word-aligned origin"),
    ("itcm = { origin = 0x00000000, size = 0x10000 }", "itcm = 65536",
     "memory.itcm must be { origin = <int>, size = <int> }"),
    ("itcm = { origin = 0x00000000, size = 0x10000 }",
     "itcm = { origin = 0x08000000, size = 0x1000 }", "memory.itcm overlaps memory.flash"),
    ("dtcm = { origin = 0x20000000, size = 0x20000 }",
     "dtcm = { origin = 0x24001000, size = 0x1000 }",
     "memory.dtcm overlaps memory.ram (a DTCM inside RAM must start at RAM's origin)"),
    ("dtcm = { origin = 0x20000000, size = 0x20000 }",
     "dtcm = { origin = 0x00000000, size = 0x1000 }", "memory.dtcm overlaps memory.itcm"),
])
def test_tcm_fields_are_checked(tmp_path, monkeypatch, old: str, new: str, msg: str) -> None:
    with pytest.raises(McucError) as e:
        _board_with(tmp_path, monkeypatch, "stm32h743", old, new)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_tcm_fields_load(tmp_path, monkeypatch) -> None:
    h7 = load_board("stm32h743")
    assert (h7.itcm_origin, h7.itcm_bytes, h7.dtcm_origin, h7.dtcm_bytes) == (
        0, 64 * 1024, 0x2000_0000, 128 * 1024)
    assert not h7.dtcm_in_ram and h7.arena_dtcm_bytes == 128 * 1024
    f7 = load_board("stm32f746")
    assert (f7.itcm_bytes, f7.dtcm_bytes, f7.dtcm_in_ram, f7.arena_dtcm_bytes) == (
        16 * 1024, 64 * 1024, True, 0)
    # no TCM entries: none
    b = _board_with(tmp_path, monkeypatch, "stm32h743",
                    "itcm = { origin = 0x00000000, size = 0x10000 }\n", "")
    assert b.itcm_bytes == 0 and b.dtcm_bytes == 128 * 1024
