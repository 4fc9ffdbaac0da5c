"""Verification ladder, emulated: the qemu-m7 firmware (QEMU mps2-an500, a Cortex-M7 with
the STM32F746's memory limits) equals the integer reference bit for bit.

Random ViT configurations and the bundled default model are cross-built with
arm-none-eabi-gcc and run in one QEMU process per model with several inputs; for the
default model, 1,000 Fashion-MNIST test images give the emulated accuracy, which must
equal the reference's predictions exactly.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mcuc.boards import load_board
from mcuc.codegen.render import render
from mcuc.pipeline import Compiled, calibration_samples, compile_graph, load_graph
from mcuc.schedule import execute
from mcuc.sim.qemu import run_qemu
from mcuc.target.firmware import build_and_measure, render_mcu

from helpers import compile_random, random_inputs

SEEDS = list(range(12))
N_ACCURACY = 1000


def build_firmware(c: Compiled, board: str, out: Path, samples_q: np.ndarray,
                   emulate: bool = False) -> dict:
    """Render + cross-build one compiled model for a board (the pipeline's MCU path)."""
    b = load_board(board)
    render(c.schedule, c.plan, out, model_name="test_model", makefile=None)
    render_mcu(b, out, "test_model", samples_q)
    return build_and_measure(b, out, None, samples_q, emulate=emulate)


def quantize(c: Compiled, xs: np.ndarray) -> np.ndarray:
    return np.stack([execute.quantize_input(c.schedule, x[None]).reshape(-1) for x in xs])


def reference(c: Compiled, xq: np.ndarray) -> list[np.ndarray]:
    shape = c.schedule.input_shape
    return [execute.run(c.schedule, x.reshape(shape), c.plan) for x in xq]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_vit_firmware_equals_reference(seed: int, tmp_path) -> None:
    cfg, c = compile_random(seed)
    xq = quantize(c, random_inputs(cfg, 4, seed + 2000))
    build_firmware(c, "qemu-m7", tmp_path, xq)
    got = run_qemu(tmp_path / "firmware.elf", xq)
    ref = reference(c, xq)
    assert len(got) == len(ref) == 4
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r, err_msg=f"config {cfg}")
    assert len({g.tobytes() for g in got}) > 1


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """The bundled model, compiled once, built for qemu-m7 with the emulator measurement."""
    graph = load_graph(None)
    c = compile_graph(graph, calibration_samples(graph, "fashion-mnist"))
    out = tmp_path_factory.mktemp("qemu_default")
    from mcuc.datasets import load_fashion_mnist

    x, y = load_fashion_mnist("test", limit=N_ACCURACY)
    xq = quantize(c, x)
    info = build_firmware(c, "qemu-m7", out, xq[:4], emulate=True)
    return c, out, info, xq, y


def test_default_model_on_1000_images(default_model) -> None:
    """One QEMU run over 1,000 test images: outputs bit-exact, so predictions and accuracy
    equal the reference's. The reference runs on this core while QEMU runs on the other."""
    c, out, info, xq, y = default_model
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(got=run_qemu(out / "firmware.elf", xq)))
    t.start()
    ref = reference(c, xq)
    t.join()
    got = box["got"]
    assert len(got) == N_ACCURACY
    mismatches = [i for i, (g, r) in enumerate(zip(got, ref, strict=True))
                  if not np.array_equal(g, r)]
    assert not mismatches, f"{len(mismatches)} outputs differ, first at image {mismatches[0]}"
    pred_fw = np.array([int(np.argmax(g)) for g in got])
    pred_ref = np.array([int(np.argmax(r)) for r in ref])
    np.testing.assert_array_equal(pred_fw, pred_ref)
    acc = float(np.mean(pred_fw == y))
    print(f"\nqemu-m7 emulated accuracy over {N_ACCURACY} Fashion-MNIST test images: {acc:.4f}")
    (out / "accuracy.json").write_text(json.dumps({"images": N_ACCURACY, "accuracy": acc}))
    assert acc > 0.8


def test_default_model_fits_and_measures(default_model) -> None:
    c, out, info, _, _ = default_model
    b = load_board("qemu-m7")
    assert 0 < info["ram_bytes"] <= b.sram_bytes and 0 < info["flash_bytes"] <= b.flash_bytes
    assert info["arena_section_bytes"] == c.plan.arena_bytes
    assert info["flash_bytes"] >= c.schedule.weights_bytes()
    assert 0 < info["stack_bytes"] <= b.stack_bytes
    assert info["emulator"].startswith("qemu")


def test_mcuc_run_on_qemu_build(default_model, tmp_path, capsys) -> None:
    from mcuc.buildmeta import write_meta
    from mcuc.cli import main

    c, out, _, xq, _ = default_model
    meta = {"board": "qemu-m7", "name": "model", "input_shape": list(c.schedule.input_shape),
            "input": c.schedule.input_qp.to_dict(), "output_shape": list(c.schedule.output_shape),
            "output": c.schedule.output_qp.to_dict(), "elf": "firmware.elf"}
    write_meta(out, meta)     # mcuc.json as `mcuc build` writes it (with digests)
    xf = tmp_path / "x.npy"
    np.save(xf, xq[7].reshape(c.schedule.input_shape))
    assert main(["run", str(out), "--input", str(xf), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"] == "qemu"
    np.testing.assert_array_equal(np.array(res["output"], np.int8), reference(c, xq[7:8])[0])
