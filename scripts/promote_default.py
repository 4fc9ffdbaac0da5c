#!/usr/bin/env python3
"""Make a model trained by `make bench-search` the bundled default (issue: "if the
searched model beats the bundled default model, it becomes the default").

Reads a cached bench model (OUT/models/<kind>_<config>.pt: config, weights, the recipe
that trained it and its record), exports it to compiler/mcuc/models/default.onnx and
writes default.json with where it came from. Then run `scripts/eval_default.py --write`
for the int8 numbers.

Usage: .venv/bin/python scripts/promote_default.py MODEL.pt --command "the bench command"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench_search_stages import load_trained
from mcuc.datasets import load_fashion_mnist
from mcuc.models.train import count_params, evaluate, export_onnx

MODELS_DIR = Path(__file__).resolve().parent.parent / "compiler" / "mcuc" / "models"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a bench model: OUT/models/<kind>_<config>.pt")
    ap.add_argument("--command", required=True, help="the bench command that trained it")
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    a = ap.parse_args()
    net, ck = load_trained(a.model)
    cfg = net.subnet
    x_test, y_test = load_fashion_mnist("test")
    acc = evaluate(net, x_test, y_test)
    shape = (1, cfg.in_chans, cfg.resolution, cfg.resolution)
    onnx_path = export_onnx(net, shape, a.out / "default.onnx")
    meta = {
        "config": cfg.to_dict(),
        "params": count_params(net),
        "input_shape": list(shape),
        "input_range": [0.0, 1.0],
        "dataset": "fashion-mnist",
        "float_test_accuracy": round(acc, 4),
        "source": f"bench-search model {a.model.name}",
        "recipe": ck["recipe"],
        "record": ck["record"],
        "torch_version": torch.__version__,
        "opset": 17,
        "command": a.command,
    }
    (a.out / "default.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"float test accuracy {acc:.4f}; wrote {onnx_path} and {a.out / 'default.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
