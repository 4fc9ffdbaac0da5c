#!/usr/bin/env python3
"""Train the bundled default ViT on Fashion-MNIST and write models/default.{onnx,json}.

The default model is what `mcuc demo` compiles, so it is trained reproducibly (fixed seed,
fixed epoch count) on the full train split and evaluated on the full test split. The
epoch count was picked so the run fits in about 25 minutes on a 2-core CPU.

Usage: .venv/bin/python scripts/train_default.py [--epochs N] [--qat-epochs N] [--out DIR]

--qat-epochs N (default 0: off) fine-tunes the trained model for N more epochs with
models/qat.py's quantization-aware forward, which computes what mcuc's integer reference
(and so the firmware) computes; bench/quant.md has what it measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mcuc.datasets import load_fashion_mnist
from mcuc.models.train import (
    count_params,
    evaluate,
    export_onnx,
    run_onnx,
    seed_everything,
    train,
)
from mcuc.models.vit import ViTConfig, build_vit

MODELS_DIR = Path(__file__).resolve().parent.parent / "compiler" / "mcuc" / "models"


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the exported batch-1 ONNX file, image by image, in onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    hits = sum(
        int(sess.run(None, {name: x[i : i + 1]})[0].argmax() == y[i]) for i in range(len(x))
    )
    return hits / len(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--qat-epochs", type=int, default=0,
                    help="quantization-aware fine-tuning epochs after training (0: none)")
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    args = ap.parse_args(argv)

    cfg = ViTConfig()
    seed_everything(args.seed)  # the initial weights too: torch seeds each process at random
    model = build_vit(cfg)
    x_train, y_train = load_fashion_mnist("train", limit=args.limit)
    x_test, y_test = load_fashion_mnist("test")
    print(
        f"default ViT {cfg.to_dict()}: {count_params(model)} params; "
        f"{len(x_train)} train / {len(x_test)} test images; {args.epochs} epochs; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads",
        flush=True,
    )

    def log_epoch(epoch: int, loss: float) -> None:
        print(f"epoch {epoch + 1}: mean loss {loss:.4f} ({time.perf_counter() - t0:.0f}s)",
              flush=True)

    t0 = time.perf_counter()
    train(
        model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, augment=not args.no_augment, on_epoch=log_epoch,
    )
    if args.qat_epochs > 0:
        from mcuc.models.qat import qat_finetune

        qat_finetune(model, x_train, y_train, epochs=args.qat_epochs, lr=args.qat_lr,
                     batch_size=args.batch_size, seed=args.seed, augment=not args.no_augment,
                     on_epoch=log_epoch)
    train_seconds = time.perf_counter() - t0
    acc = evaluate(model, x_test, y_test)
    print(f"float test accuracy {acc:.4f} after {train_seconds:.0f}s of training", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, (1, cfg.in_chans, cfg.img_size, cfg.img_size),
                            args.out / "default.onnx")
    onnx_acc = onnx_accuracy(onnx_path, x_test, y_test)
    sample = run_onnx(onnx_path, x_test[:1])
    print(f"onnx test accuracy {onnx_acc:.4f}; first test logits {np.round(sample, 3)}")

    meta = {
        "config": cfg.to_dict(),
        "params": count_params(model),
        "input_shape": [1, cfg.in_chans, cfg.img_size, cfg.img_size],
        "input_range": [0.0, 1.0],
        "dataset": "fashion-mnist",
        "float_test_accuracy": round(acc, 4),
        "onnx_test_accuracy": round(onnx_acc, 4),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "augment": not args.no_augment,
        "qat_epochs": args.qat_epochs,
        **({"qat_lr": args.qat_lr, "qat_losses": [round(v, 4) for v in model.qat_losses]}
           if args.qat_epochs > 0 else {}),
        "train_images": len(x_train),
        "train_seconds": round(train_seconds, 1),
        "train_losses": [round(v, 4) for v in model.train_losses],
        "torch_version": torch.__version__,
        "opset": 17,
        "command": shlex.join(["python", "scripts/train_default.py", *sys.argv[1:]]),
    }
    (args.out / "default.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {onnx_path} and {args.out / 'default.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
