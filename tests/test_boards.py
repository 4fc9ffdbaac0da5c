"""Boards as data: every board.toml loads, MCU boards carry what a cross build needs, the
fit check speaks in one line, and `mcuc boards` / `mcuc flash --dry-run` say the right
things. Fast: nothing here compiles or emulates."""

from __future__ import annotations

import os
import shlex

import pytest

from mcuc import McucError
from mcuc.boards import list_boards, load_board
from mcuc.cli import main
from mcuc.target.fit import check_fit, estimate

MCU_BOARDS = ["stm32f746", "stm32f427", "stm32h743", "qemu-m7"]


def test_all_boards_listed_and_load() -> None:
    names = list_boards()
    assert set(MCU_BOARDS) | {"host"} <= set(names)
    for name in names:
        b = load_board(name)
        assert b.name == name
        if b.is_mcu:
            assert b.mcpu.startswith("cortex-m") and b.fpu and b.float_abi == "hard"
            assert b.flash_bytes > 0 and b.sram_bytes > 0 and b.stack_bytes > 0
            for p in b.source_paths():
                assert p.is_file(), p


def test_board_facts() -> None:
    f7 = load_board("stm32f746")
    assert (f7.mcpu, f7.fpu, f7.clock_hz) == ("cortex-m7", "fpv5-sp-d16", 216_000_000)
    assert (f7.flash_origin, f7.flash_bytes) == (0x08000000, 1024 * 1024)
    assert (f7.ram_origin, f7.sram_bytes) == (0x20000000, 320 * 1024)
    assert f7.has_dwt and f7.inputs == "flash" and f7.default_engine == "unicorn"
    assert f7.flasher["configs"] == ["board/stm32f7discovery.cfg"]
    assert f7.renode["platform"] == "platforms/boards/stm32f7_discovery-bb.repl"
    f4 = load_board("stm32f427")
    assert (f4.mcpu, f4.fpu, f4.clock_hz, f4.sram_bytes) == (
        "cortex-m4", "fpv4-sp-d16", 180_000_000, 192 * 1024)
    h7 = load_board("stm32h743")
    assert (h7.fpu, h7.clock_hz, h7.ram_origin, h7.sram_bytes, h7.flash_bytes) == (
        "fpv5-d16", 480_000_000, 0x24000000, 512 * 1024, 2 * 1024 * 1024)
    q = load_board("qemu-m7")
    # The emulated board must refuse exactly what the F746 refuses.
    assert (q.flash_bytes, q.sram_bytes, q.stack_bytes) == (
        f7.flash_bytes, f7.sram_bytes, f7.stack_bytes)
    assert q.semihosting and q.qemu["machine"] == "mps2-an500" and not q.flasher


def test_f746_system_init_polls_are_bounded() -> None:
    src = (load_board("stm32f746").path / "system.c").read_text()
    for reg in ("RCC_CR", "RCC_PLLCFGR", "PWR_CR1", "FLASH_ACR", "GPIOA_AFRH", "USART1_BRR"):
        assert reg in src
    assert "while (" not in src.replace("while (limit", "")  # every wait goes via mcuc_poll
    assert "25u | (432u << 6)" in src  # HSE 25 MHz / 25 * 432 / 2 = 216 MHz


def test_boards_command_lists_mcus(capsys) -> None:
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in MCU_BOARDS:
        assert name in out
    line = next(ln for ln in out.splitlines() if ln.startswith("stm32f746"))
    assert "cortex-m7" in line and "320 KiB" in line and "1024 KiB" in line
    assert "216 MHz" in line and "unicorn" in line


def test_fit_estimate_names_the_culprit() -> None:
    b = load_board("stm32f746")
    ok = estimate(b, 20_000, 150_000, 80, 784, 10, 4)
    check_fit(b, ok)
    big_arena = estimate(b, 400_000, 150_000, 80, 784, 10, 4)
    with pytest.raises(McucError) as e:
        check_fit(b, big_arena)
    msg = str(e.value)
    assert "\n" not in msg and "arena 400,000 B" in msg and "SRAM" in msg
    over = big_arena.sram - b.sram_bytes
    assert f"over by {over:,} bytes" in msg
    big_weights = estimate(b, 20_000, 2_000_000, 80, 784, 10, 4)
    with pytest.raises(McucError, match=r"weights 2,000,000 B .* flash .*over by"):
        check_fit(b, big_weights)


def _fake_build(tmp_path, board: str):
    """A build directory with a stand-in binary and a valid mcuc.json describing it."""
    from mcuc.buildmeta import write_meta

    out = tmp_path / board
    out.mkdir()
    binary = "firmware.elf" if load_board(board).is_mcu else "model"
    (out / binary).write_bytes(b"\x7fELF")
    qp = {"scale": 0.5, "zero_point": 0}
    kind = "elf" if binary.endswith(".elf") else "exe"
    write_meta(out, {"board": board, "name": "model", "input_shape": [1, 4], "input": qp,
                     "output_shape": [1, 2], "output": qp, kind: binary})
    return out


def test_flash_dry_run_prints_openocd_command(tmp_path, capsys) -> None:
    out = _fake_build(tmp_path, "stm32f746")
    assert main(["flash", str(out), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"cd {shlex.quote(str(out.resolve()))} && openocd -f "
                    "board/stm32f7discovery.cfg -c 'program firmware.elf verify reset exit'")


@pytest.mark.parametrize("board", ["qemu-m7", "host"])
def test_flash_refuses_boards_without_flasher(tmp_path, capsys, board) -> None:
    out = _fake_build(tmp_path, board)
    assert main(["flash", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no flasher" in err


def test_flash_without_openocd_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    out = _fake_build(tmp_path, "stm32f746")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["flash", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "openocd is not installed" in err
    assert os.environ["PATH"] == str(empty)
