#!/usr/bin/env python3
"""Measure quantization-aware fine-tuning (models/qat.py): int8 test accuracy of a model
as `mcuc build` compiles it (64 seeded calibration images, minmax), before and after QAT.

Models: `default` (the bundled default.onnx: its float weights are read back from the
file, its float checkpoint not being in git), `uniform16k` (models/vit.py p7 d48 L6 h2
mlp2, the 16 KB baseline of bench/search.md) or `searched16k` (the nas/subnet.py pick of
bench/search.md's 16 KB search, 35px p7 d64 L6 h2 mlp1.5 r1, on images resized to 35 px
as the search resizes them); the last two trained here from scratch for --float-epochs: a
short CPU recipe, not the bench's 50 epochs.

int8 accuracy is measured with the compiler's integer reference (schedule/execute.py,
which the generated C equals bit for bit) on --ref-images test images, and with the QAT
forward's int8 logits on the whole test split; the two must agree on every image both
saw (tests/test_qat.py proves them equal on small models). Prints one JSON object.

`--control` also fine-tunes a copy in float with the same epochs, learning rate and
seed, so that a gain can be told from the effect of more training.

Usage: PYTHONPATH=compiler python scripts/qat_finetune.py --model default --qat-epochs 1
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mcuc.datasets import load_fashion_mnist
from mcuc.models.qat import QatViT, qat_finetune
from mcuc.models.train import evaluate, export_onnx, seed_everything, train
from mcuc.models.vit import ViTConfig, build_vit
from mcuc.nas.space import SubnetConfig
from mcuc.nas.subnet import build_subnet
from mcuc.pipeline import DEFAULT_MODEL, calibration_samples, compile_graph, load_graph
from mcuc.resize import resize_images
from mcuc.schedule import execute


def default_model() -> nn.Module:
    """The bundled default model as a SubnetViT, weights read back from its ONNX file in
    graph order (QatViT.calibrate then checks every weight against a fresh export)."""
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    cfg = meta["config"]
    model = build_subnet(SubnetConfig(
        resolution=cfg["resolution"], patch=cfg["patch"], dim=cfg["dim"], depth=cfg["depth"],
        heads=tuple(cfg["heads"]), mlp_ratio=tuple(cfg["mlp_ratio"]),
        lowrank=tuple(cfg["lowrank"]), in_chans=cfg["in_chans"],
        num_classes=cfg["num_classes"]))
    g = load_graph(DEFAULT_MODEL)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]

    def put(p: torch.Tensor, name: str) -> None:
        with torch.no_grad():
            p.copy_(torch.from_numpy(np.array(g.const(name), np.float32)).reshape(p.shape))

    for node in g.nodes:
        if node.op == "Conv":
            put(model.patch_embed.weight, node.inputs[1])
            put(model.patch_embed.bias, node.inputs[2])
        elif node.op == "Concat":
            put(model.cls_token, node.inputs[0])
        elif node.op == "Add" and g.const(node.inputs[1]) is not None:
            put(model.pos_embed, node.inputs[1])
        elif node.op == "LayerNorm":
            ln = norms.pop(0)
            put(ln.weight, node.inputs[1])
            put(ln.bias, node.inputs[2])
        elif node.op == "Linear":
            lin = linears.pop(0)
            put(lin.weight, node.inputs[1])
            put(lin.bias, node.inputs[2])
    if linears or norms:
        raise SystemExit("default.onnx has fewer layers than its config")
    return model.eval()


# bench/search.md's 16 KB pick (the same for every budget there).
SEARCHED_16K = SubnetConfig(resolution=35, patch=7, dim=64, depth=6, heads=(2,) * 6,
                            mlp_ratio=(1.5,) * 6, lowrank=(1.0,) * 6)


def reference_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray
                       ) -> tuple[float, np.ndarray]:
    """Top-1 of the compiled model's integer reference, image by image, and its logits."""
    c = model.cfg
    with tempfile.TemporaryDirectory() as tmp:
        g = load_graph(export_onnx(model, (1, c.in_chans, c.img_size, c.img_size),
                                   Path(tmp) / "m.onnx"))
    comp = compile_graph(g, calibration_samples(g, "fashion-mnist", 64))
    out = np.stack([execute.run(comp.schedule, execute.quantize_input(comp.schedule, xi),
                                comp.plan).reshape(-1)
                    for xi in tqdm(x, desc="integer reference", leave=False)])
    return float((out.argmax(1) == y).mean()), out


def measure(model: nn.Module, x: np.ndarray, y: np.ndarray, ref_images: int) -> dict:
    t0 = time.perf_counter()
    fq = QatViT(model).int8_logits(x)
    ref_acc, ref = reference_accuracy(model, x[:ref_images], y[:ref_images])
    return {"float": evaluate(model, x, y), "int8_qat_forward": float((fq.argmax(1) == y).mean()),
            "int8_reference": ref_acc, "reference_images": int(ref_images),
            "reference_logits_equal": bool(np.array_equal(fq[:ref_images], ref)),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("default", "uniform16k", "searched16k"), default="default")
    ap.add_argument("--float-epochs", type=int, default=3)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images")
    ap.add_argument("--ref-images", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", action="store_true",
                    help="also fine-tune a copy in float with the same recipe (is it QAT "
                         "or just more training?)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seed_everything(a.seed)
    x, y = load_fashion_mnist("train", limit=a.limit)
    tx, ty = load_fashion_mnist("test")
    res: dict = {"args": vars(a)}
    if a.model == "default":
        model = default_model()
    else:
        model = (build_subnet(SEARCHED_16K) if a.model == "searched16k" else
                 build_vit(ViTConfig(patch=7, dim=48, depth=6, heads=2, mlp_ratio=2.0)))
        if model.cfg.img_size != x.shape[-1]:   # bilinear, as the search and mcuc build resize
            x, tx = resize_images(x, model.cfg.img_size), resize_images(tx, model.cfg.img_size)
        t0 = time.perf_counter()
        train(model, x, y, epochs=a.float_epochs, seed=a.seed, augment=True)
        res["float_train_s"] = round(time.perf_counter() - t0, 1)
    res["before"] = measure(model, tx, ty, a.ref_images)
    print(json.dumps(res["before"]), flush=True)
    if a.control:
        ctl = copy.deepcopy(model)
        train(ctl, x, y, epochs=a.qat_epochs, lr=a.qat_lr, seed=a.seed, augment=True)
        res["float_finetune"] = measure(ctl, tx, ty, a.ref_images)
        print(json.dumps(res["float_finetune"]), flush=True)
    t0 = time.perf_counter()
    qat_finetune(model, x, y, epochs=a.qat_epochs, lr=a.qat_lr, seed=a.seed)
    res["qat_s"] = round(time.perf_counter() - t0, 1)
    res["qat_losses"] = [round(v, 4) for v in model.qat_losses]
    res["after"] = measure(model, tx, ty, a.ref_images)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
