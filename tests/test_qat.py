"""Quantization-aware fine-tuning (models/qat.py): the fake-quant forward's int8 logits
are the compiler's integer reference (which the generated C equals bit for bit), for a
plain ViT and a low-rank searched subnet, before and after a few QAT steps; its
gradients reach every parameter; a model it cannot follow is refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuc import McucError
from mcuc.datasets import load_fashion_mnist
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN, clamp_s8, requantize, sat32
from mcuc.models.qat import QatViT, qat_finetune
from mcuc.models.qat_ops import requant_s8
from mcuc.models.train import export_onnx, seed_everything
from mcuc.models.vit import ViTConfig, build_vit
from mcuc.nas.space import SubnetConfig
from mcuc.nas.subnet import build_subnet
from mcuc.pipeline import calibration_samples, compile_graph, load_graph
from mcuc.schedule import execute


def reference_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """int8 logits of `model` as `mcuc build` compiles it (calibrated on its 64 seeded
    Fashion-MNIST training images), from the integer reference, image by image."""
    with tempfile.TemporaryDirectory() as tmp:
        g = load_graph(export_onnx(model, (1, 1, 28, 28), Path(tmp) / "m.onnx"))
    c = compile_graph(g, calibration_samples(g, "fashion-mnist", 64))
    return np.stack([execute.run(c.schedule, execute.quantize_input(c.schedule, xi), c.plan)
                     for xi in x]).reshape(len(x), -1)


def small_models() -> dict[str, torch.nn.Module]:
    seed_everything(0)
    vit = build_vit(ViTConfig(patch=7, dim=16, depth=2, heads=2, mlp_ratio=2.0))
    low = build_subnet(SubnetConfig(resolution=28, patch=7, dim=24, depth=2, heads=(2, 3),
                                    mlp_ratio=(1.5, 2.0), lowrank=(0.5, 1.0)))
    return {"vit": vit, "lowrank": low}


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    return load_fashion_mnist("test", limit=24)


@pytest.mark.parametrize("name", ["vit", "lowrank"])
def test_int8_logits_equal_the_integer_reference(name, images):
    torch.set_num_threads(1)
    model = small_models()[name].eval()
    x, _ = images
    got = QatViT(model).int8_logits(x, batch_size=10)
    ref = reference_logits(model, x)
    assert got.dtype == np.int8 and got.shape == ref.shape == (len(x), 10)
    assert np.array_equal(got, ref), f"max diff {np.abs(got.astype(int) - ref).max()} LSB"
    assert len(np.unique(ref)) > 10  # the logits are not one saturated constant


def test_after_qat_steps_still_equal_and_gradients_flow(images):
    """A few QAT steps move the weights (and the recalibrated QParams); the forward then
    still equals the reference of the fine-tuned model. Every parameter gets a gradient
    through the straight-through estimators."""
    torch.set_num_threads(1)
    model = small_models()["vit"]
    x, y = load_fashion_mnist("train", limit=256)
    qat = QatViT(model)
    qat.calibrate()
    loss = torch.nn.functional.cross_entropy(qat(torch.from_numpy(x[:32])),
                                             torch.from_numpy(y[:32]))
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    qat_finetune(model, x, y, epochs=2, lr=1e-3, batch_size=64, progress=False)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert len(model.qat_losses) == 2
    tx, _ = images
    assert np.array_equal(QatViT(model).int8_logits(tx), reference_logits(model, tx))


def test_unsupported_structure_is_refused(images):
    model = build_vit(ViTConfig(patch=7, dim=16, depth=1, heads=2, pool="mean"))
    with pytest.raises(McucError, match="class token"):
        QatViT(model)
    model = build_vit(ViTConfig(patch=7, dim=16, depth=1, heads=2, encoder="torch"))
    with pytest.raises(McucError, match="mcuc-style"):
        QatViT(model)


def test_fast_requantization_is_fixedpoints():
    """requant_s8 (shifts and masks) gives fixedpoint.requantize's integers: int32
    extremes, halves and random accumulators, per-channel and scalar multipliers, shifts
    on either side of 0 (the positive ones take fixedpoint itself)."""
    rng = np.random.default_rng(0)
    edges = np.array([INT32_MIN, INT32_MIN + 1, -(2**30), -(2**15) - 1, -1, 0, 1, 2**15,
                      2**30, INT32_MAX - 1, INT32_MAX, 2**33, -(2**33)], dtype=np.int64)
    acc = np.concatenate([edges, rng.integers(-(2**31), 2**31, 4000),
                          rng.integers(-3000, 3000, 4000)]).reshape(-1, 1)
    for mult, shift in [(2**30, 0), (2**31 - 1, -1), (1518500250, -7), (1073741825, -31),
                        (1340000000, -20), (1500000000, 2)]:
        for zp in (-128, 0, 37):
            want = clamp_s8(zp + requantize(sat32(acc), mult, shift)).astype(np.int64)
            assert np.array_equal(requant_s8(acc, mult, shift, zp), want), (mult, shift, zp)
    mults = rng.integers(2**30, 2**31, 8)
    shifts = rng.integers(-12, 1, 8)
    acc8 = rng.integers(-(2**31), 2**31, (500, 8))
    want = clamp_s8(3 + requantize(sat32(acc8), mults, shifts)).astype(np.int64)
    assert np.array_equal(requant_s8(acc8, mults, shifts, 3), want)
