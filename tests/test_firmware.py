"""Cross-built firmware: every MCU board links the default model with -Werror, the arena
lands in SRAM and the weights in flash, report.json carries ELF sizes, the measured
stack and instruction counts, too-large models stop with one line, and the real
ELFs run in the Unicorn engine (stm32f746; the default model on stm32f427 and stm32h743,
on their own chips' models) equal the integer reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.buildmeta import load_build
from mcuc.pipeline import build, calibration_samples, compile_graph, load_graph
from mcuc.schedule import execute
from mcuc.schedule.widen import widen_weights
from mcuc.sim.renode import RENODE
from mcuc.target.elf import symbol
from mcuc.target.firmware import cross_build
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import build_firmware, quantize, reference

from helpers import compile_random, input_shape, random_inputs, random_model


@pytest.fixture(scope="module")
def f746(tmp_path_factory) -> tuple[Path, dict]:
    """`mcuc build --board stm32f746` of the default model (pipeline path, emulated)."""
    out = tmp_path_factory.mktemp("f746")
    report = build(None, "stm32f746", "fashion-mnist", out, samples=3)
    return out, report


@pytest.fixture(scope="module")
def default_compiled():
    graph = load_graph(None)
    return compile_graph(graph, calibration_samples(graph, "fashion-mnist"))


def _in(addr: int, origin: int, size: int) -> bool:
    return origin <= addr < origin + size


def test_report_has_elf_sizes_stack_and_instructions(f746) -> None:
    out, report = f746
    b = load_board("stm32f746")
    saved = json.loads((out / "report.json").read_text())
    assert saved["flash_bytes"] == report["flash_bytes"]
    fw = report["firmware"]
    assert report["flash_bytes"] == (fw["text_bytes"] + fw["rodata_bytes"]
                                     + fw["weights_section_bytes"] + fw["data_bytes"])
    assert fw["weights_section_bytes"] >= report["weights_bytes"] and fw["qspi_bytes"] == 0
    assert report["ram_bytes"] == (fw["data_bytes"] + fw["bss_bytes"]
                                   + fw["arena_section_bytes"] + fw["stack_reserve_bytes"])
    assert fw["arena_section_bytes"] == report["arena_bytes"]
    assert report["weights_bytes"] < report["flash_bytes"] <= b.flash_bytes
    # the fit check's pre-link estimate (also the search's cost) is an upper bound
    assert report["flash_bytes"] <= report["estimate"]["flash_bytes"]
    assert report["ram_bytes"] <= b.sram_bytes
    assert 0 < report["stack_bytes"] <= b.stack_bytes
    # Issue 23 wants no scratch hidden on the stack. The DSP patch embedding keeps none
    # (its buffers once raised the high-water mark to 4,636 B); the DSP attention still
    # keeps up to 3.1 KB there (a head's V^T <= 2 KB, q/p pairs 1 KB, a score row 256 B,
    # bounded in attention_internal.h): 3,848 B measured, 720 B without it. The bound holds it
    # there until that scratch moves (an open item of issue 23).
    assert report["stack_bytes"] <= 4096
    if unicorn_available():
        assert report["instructions"] > report["macs"]
        per_step = [row["instructions"] for row in report["layers"]]
        assert all(isinstance(n, int) and n > 0 for n in per_step)
        assert sum(per_step) <= report["instructions"]
        assert "cycles" not in report and "cycles" not in report["firmware"]


def test_arena_in_sram_weights_in_flash(f746) -> None:
    out, _ = f746
    b = load_board("stm32f746")
    elf = out / "firmware.elf"
    n = load_build(out).name
    arena, size = symbol(elf, f"{n}_arena")
    assert _in(arena, b.ram_origin, b.sram_bytes) and size == json.loads(
        (out / "report.json").read_text())["arena_bytes"]
    weights = next(ln.split("[")[0].split()[-1] for ln in (out / f"{n}_weights.h").read_text()
                   .splitlines() if ln.startswith("extern const int8_t"))
    assert weights.startswith(f"{n}_m_")
    assert _in(symbol(elf, weights)[0], b.flash_origin, b.flash_bytes)
    assert _in(symbol(elf, f"{n}_samples")[0], b.flash_origin, b.flash_bytes)
    assert _in(symbol(elf, "mcuc_prof_marker")[0], b.ram_origin, b.sram_bytes)
    mp = (out / "firmware.map").read_text()
    for sec, lo, size in ((f".{n}_arena", b.ram_origin, b.sram_bytes),
                          (f".{n}_weights", b.flash_origin, b.flash_bytes)):
        line = next(ln for ln in mp.splitlines() if ln.startswith(sec))
        assert _in(int(line.split()[1], 16), lo, size), sec


def test_generated_firmware_sources(f746) -> None:
    out, _ = f746
    mk = (out / "Makefile").read_text()
    for flag in ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-O2",
                 "-ffunction-sections", "-fdata-sections", "--gc-sections", "-Werror",
                 "--specs=nano.specs", "-Map=firmware.map",
                 "MCUC_STEP_BEGIN(i)=(mcuc_prof_marker=(uint32_t)(i)+1u)"):
        assert flag in mk, flag
    main_c = (out / "main.c").read_text()
    assert "volatile uint32_t mcuc_prof_marker;" in main_c
    assert "0xFFFFFFFFu" in main_c and "0xFFFFFFFEu" in main_c
    n = load_build(out).name
    N = n.upper()
    samples = (out / f"{n}_samples.h").read_text()
    assert f"#define {N}_NUM_SAMPLES 3" in samples
    assert f"{n}_samples[{N}_NUM_SAMPLES][{N}_INPUT_SIZE]" in samples


def test_renode_files(f746) -> None:
    out, _ = f746
    resc = next((out / "renode").glob("*.resc")).read_text()
    robot = next((out / "renode").glob("*.robot")).read_text()
    assert "platforms/boards/stm32f7_discovery-bb.repl" in resc
    assert "sysbus LoadELF $bin" in resc and "showAnalyzer sysbus.usart1" in resc
    assert "firmware.elf" in resc
    assert "Wait For Line On Uart     MCUC_DONE" in robot
    assert "MCUC_STATUS 0" in robot


def test_renode_runs_robot_test(f746) -> None:
    if shutil.which("renode-test") is None or shutil.which(RENODE) is None:
        pytest.skip("Renode is not installed on this machine (not a Debian package); "
                    "the generated .resc/.robot files are checked by test_renode_files")
    out, _ = f746
    robot = next((out / "renode").glob("*.robot"))
    proc = subprocess.run(["renode-test", str(robot)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_run_engine_renode_missing_is_one_line(f746, tmp_path, capsys) -> None:
    from mcuc.cli import main

    if shutil.which(RENODE) is not None:
        pytest.skip("renode is installed; the missing-renode message cannot be shown")
    out, _ = f746
    xf = tmp_path / "x.npy"
    np.save(xf, np.zeros((1, 1, 28, 28), np.float32))
    assert main(["run", str(out), "--input", str(xf), "--engine", "renode"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "renode is not installed" in err


@pytest.mark.parametrize("board", ["stm32f427", "stm32h743"])
def test_other_boards_cross_build_default_model(board, default_compiled, tmp_path) -> None:
    c = default_compiled
    b = load_board(board)
    xq = np.zeros((2, int(np.prod(c.schedule.input_shape))), np.int8)
    info = build_firmware(c, board, tmp_path, xq)
    assert info["ram_bytes"] <= b.sram_bytes and info["flash_bytes"] <= b.flash_bytes
    elf = tmp_path / "firmware.elf"
    # the arena: in the stm32h743's DTCM (it fits; mcuc.tcm), in the stm32f427's RAM
    arena = ((b.dtcm_origin, b.arena_dtcm_bytes) if b.arena_dtcm_bytes
             else (b.ram_origin, b.sram_bytes))
    assert _in(symbol(elf, "model_arena")[0], *arena)   # build_firmware's name: "model"
    assert _in(symbol(elf, "model_samples")[0], b.flash_origin, b.flash_bytes)
    assert f"-mfpu={b.fpu}" in (tmp_path / "Makefile").read_text()
    if not unicorn_available():
        return
    # and it runs bit-exact on the board's chip model (Cortex-M4 for the stm32f427)
    from mcuc.datasets import load_fashion_mnist

    x, _ = load_fashion_mnist("test", limit=1)
    xq1 = execute.quantize_input(c.schedule, x[0:1]).reshape(1, -1)
    res = run_unicorn(elf, xq1, chip=b.chip)
    np.testing.assert_array_equal(res["outputs"][0], execute.run(c.schedule, xq1.reshape(
        c.schedule.input_shape), c.plan).reshape(-1))
    assert res["instructions"] > c.schedule.macs() and res["status"] == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_model_too_large_for_flash_cli(tmp_path) -> None:
    """dim 512, depth 12 (~25 MB of int8 weights) on the F746: one line, exit 2."""
    from helpers import ViTConfig

    cfg = ViTConfig(img_size=28, in_chans=1, patch=4, dim=512, depth=12, heads=8,
                    mlp_ratio=2.0, num_classes=10, pool="cls", encoder="mcuc")
    path = tmp_path / "big.onnx"
    torch.onnx.export(random_model(cfg, 0), (torch.zeros(input_shape(cfg)),), str(path),
                      dynamo=False, opset_version=17)
    calib = tmp_path / "calib.npy"
    np.save(calib, random_inputs(cfg, 4, 0))
    proc = subprocess.run([sys.executable, "-m", "mcuc.cli", "build", "--board", "stm32f746",
                           "--model", str(path), "--calib", str(calib), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("mcuc: error: model does not fit stm32f746: weights ")
    assert "flash" in err and "over by" in err and "bytes" in err
    assert not (tmp_path / "out" / "weights.c").exists()  # stopped before rendering


def test_arena_too_large_is_one_line(tmp_path) -> None:
    """1,025 tokens of dim 128: one activation is 131 KB, the MLP's hidden one 525 KB,
    far beyond 320 KB of SRAM, while the weights (~200 KB) fit the flash."""
    from helpers import ViTConfig

    cfg = ViTConfig(img_size=64, in_chans=1, patch=2, dim=128, depth=1, heads=2,
                    mlp_ratio=4.0, num_classes=10, pool="cls", encoder="mcuc")
    with pytest.raises(McucError) as e:
        build(random_model(cfg, 1), "stm32f746", random_inputs(cfg, 4, 1), tmp_path,
              input_shape=input_shape(cfg))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model does not fit stm32f746: arena ")
    assert "SRAM" in msg and "over by" in msg


def test_linker_overflow_becomes_one_line(tmp_path) -> None:
    """If the estimate were wrong, the linker's overflow is still reported in one line."""
    cfg, c = compile_random(2)
    xq = quantize(c, random_inputs(cfg, 1, 0))
    build_firmware(c, "stm32f746", tmp_path, xq)
    (tmp_path / "firmware.elf").unlink()
    # cross_build renders linker.ld again on a board with ITCM (mcuc.tcm), so the small RAM
    # goes in through the board rather than by editing the script
    with pytest.raises(McucError) as e:
        cross_build(tmp_path, replace(load_board("stm32f746"), sram_bytes=4096))
    msg = str(e.value)
    assert "\n" not in msg and "SRAM over by" in msg and "bytes" in msg


UNICORN_SEEDS = [4, 5, 6]


@pytest.mark.skipif(not unicorn_available(), reason="mcuc.sim.unicorn_m7 not available")
@pytest.mark.parametrize("seed", UNICORN_SEEDS)
def test_f746_elf_in_unicorn_equals_reference(seed: int, tmp_path) -> None:
    cfg, c = compile_random(seed)
    if seed == UNICORN_SEEDS[-1]:  # --optimize speed: the widened int16 weights
        c = replace(c, schedule=widen_weights(c.schedule))
    xq = quantize(c, random_inputs(cfg, 3, seed + 3000))
    build_firmware(c, "stm32f746", tmp_path, np.zeros_like(xq))
    res = run_unicorn(tmp_path / "firmware.elf", xq)   # patched over model_samples
    ref = reference(c, xq)
    assert len(res["outputs"]) == 3
    for g, r in zip(res["outputs"], ref, strict=True):
        np.testing.assert_array_equal(g, r, err_msg=f"config {cfg}")
    assert res["instructions"] > 0 and res["dwt_instructions"] > 0
    assert len(res["instructions_per_step"]) == len(c.schedule.steps)


def test_mcuc_run_on_f746_build(f746, tmp_path, capsys) -> None:
    from mcuc.cli import main
    from mcuc.datasets import load_fashion_mnist

    if not unicorn_available():
        pytest.skip("mcuc.sim.unicorn_m7 not available")
    out, _ = f746
    x, _ = load_fashion_mnist("test", limit=1)
    xf = tmp_path / "x.npy"
    np.save(xf, x[0])
    assert main(["run", str(out), "--input", str(xf), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"] == "unicorn" and res["instructions"] > 0
    graph = load_graph(None)
    c = compile_graph(graph, calibration_samples(graph, "fashion-mnist"))
    ref = execute.run(c.schedule, execute.quantize_input(c.schedule, x[0:1]), c.plan)
    np.testing.assert_array_equal(np.array(res["output"], np.int8), ref)


def test_optimize_speed(f746, tmp_path, capsys) -> None:
    """--optimize speed: the same arena and outputs, wider weights (counted by the fit
    estimate), fewer instructions (exact counts from the emulator, same baked sample)."""
    from mcuc.cli import main
    from mcuc.datasets import load_fashion_mnist

    _, size = f746
    out = tmp_path / "speed"
    assert main(["build", "--board", "stm32f746", "--optimize", "speed", "--samples", "3",
                 "--out", str(out)]) == 0
    speed = json.loads((out / "report.json").read_text())
    assert (speed["optimize"], size["optimize"]) == ("speed", "size")
    assert speed["arena_bytes"] == size["arena_bytes"]
    assert speed["weights_bytes"] > size["weights_bytes"]
    assert speed["flash_bytes"] <= speed["estimate"]["flash_bytes"]
    if not unicorn_available():
        pytest.skip("mcuc.sim.unicorn_m7 not available")
    assert speed["instructions"] < 0.9 * size["instructions"]
    x, _ = load_fashion_mnist("test", limit=1)
    xf = tmp_path / "x.npy"
    np.save(xf, x[0])
    capsys.readouterr()
    assert main(["run", str(out), "--input", str(xf), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    graph = load_graph(None)
    c = compile_graph(graph, calibration_samples(graph, "fashion-mnist"))
    ref = execute.run(c.schedule, execute.quantize_input(c.schedule, x[0:1]), c.plan)
    np.testing.assert_array_equal(np.array(res["output"], np.int8), ref)
