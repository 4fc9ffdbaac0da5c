"""bench_boards' rows (board, SRAM, flash, time): checked against the board, the
defaults, the report of a model over a row's limits, and one row end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

# the bench harness lives in scripts/, outside the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_boards  # noqa: E402
import bench_boards_report  # noqa: E402


@pytest.mark.parametrize("row, needle", [
    ("stm32f746:320:1024", "BOARD:SRAM_KB:FLASH_KB:MS"),
    ("stm32f746:321:1024:100", "a row's limits must be within them"),
    ("stm32f427:64:2048:100", "a row's limits must be within them"),
    ("qemu-m7:64:256:100", "a board with a clock"),
    ("nosuchboard:64:256:100", "nosuchboard"),
])
def test_board_rows_are_checked_against_the_board(row: str, needle: str, capsys) -> None:
    with pytest.raises(SystemExit):
        bench_boards.parse_args(["--rows", row])
    assert needle in capsys.readouterr().err


def test_board_rows_default_to_the_issues_five() -> None:
    a = bench_boards.parse_args([])
    assert [(r.board, r.sram // 1024, r.flash // 1024, r.ms) for r in a.rows] == [
        ("stm32f746", 320, 1024, 100.0), ("stm32f427", 192, 1024, 100.0),
        ("stm32h743", 512, 2048, 100.0), ("stm32f746", 320, 1024, 50.0),
        ("stm32f746", 320, 1024, 200.0)]
    # the time budget at each board's own clock (1 cycle per instruction)
    assert [r.instructions() for r in a.rows[:3]] == [21_600_000, 18_000_000, 48_000_000]
    assert bench_boards.parse_args(["--rows", "stm32f746:64:256:-"]).rows[0].instructions() \
        is None


def test_a_model_over_a_rows_limits_is_reported_so() -> None:
    lim = {"sram": 64 * 1024, "flash": 256 * 1024, "instructions": 1000}
    fits = {"ram": 64 * 1024, "flash": 256 * 1024, "instructions": 1000}
    assert bench_boards_report.over(lim, fits) == []
    assert bench_boards_report.over(lim, {**fits, "instructions": 1001}) == ["time"]
    assert bench_boards_report.over(lim, {**fits, "ram": 64 * 1024 + 1}) == ["RAM"]
    assert bench_boards_report.over({**lim, "instructions": None},
                                    {**fits, "instructions": 10 ** 9}) == []


def test_board_rows_end_to_end_meet_their_limits(tmp_path: Path) -> None:
    """One row on the F427 at toy scale: searched and baseline meet the row's RAM, flash
    and time (emulator count within the budget), the build's latency prediction agrees
    with the emulator's count within 3%, and the search predicted the same schedule."""
    space = tmp_path / "space.toml"
    space.write_text("resolution = [28]\npatch = [7]\ndim = [16, 32]\ndepth = [1, 2]\n"
                     "heads = [2]\nmlp_ratio = [1.0, 2.0]\nlowrank_ratio = [1.0]\n")
    out = tmp_path / "out"
    bench_boards.main(["--rows", "stm32f427:48:256:3", "--limit", "600", "--test-limit", "20",
                       "--fw-images", "2", "--supernet-epochs", "1", "--finetune-epochs", "1",
                       "--distill-epochs", "0", "--proxy-epochs", "0", "--population", "3",
                       "--generations", "1", "--pool", "4", "--space", str(space),
                       "--grid-dims", "16", "32", "--out", str(out), "--bench-dir", str(out)])
    [row] = json.loads((out / "bench_boards.json").read_text())
    lim = row["limits"]
    assert (lim["board"], lim["instructions"]) == ("stm32f427", 540_000)   # 3 ms at 180 MHz
    for m in (row["searched"], row["baseline"]):
        assert m["ram"] <= lim["sram"] and m["flash"] <= lim["flash"]
        assert m["search_cost"]["fits"] and m["search_cost"]["instructions"] <= 540_000
        assert abs(m["predicted_instructions"] - m["instructions"]) < 0.03 * m["instructions"]
        assert m["instructions"] <= 540_000 and bench_boards_report.over(lim, m) == []
        assert m["fw_bit_exact"] == m["fw_images"] == 2 and m["test_images"] == 20
    text = (out / "search_boards.md").read_text()
    assert text.count("| stm32f427 | 48 KB / 256 KB / 3 ms (540,000 instr.) |") == 2
    assert "--rows stm32f427:48:256:3 " in text and text.count("| yes |") == 2
