"""`make bench`: measure the compiler on the default model and the reference ViT shapes.

Writes bench/compile.md: per model, the planned arena against its lower bound, weight
bytes, MACs and how long each compiler stage took (wall clock on this machine; a shared
machine is noisy, so these are indications, not pass/fail criteria).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from mcuc.pipeline import DEFAULT_MODEL, compile_graph, load_graph

# Shapes of the memory benchmark's configurations (issue 4), random weights.
CONFIGS = {
    "fmnist-s": dict(img_size=28, in_chans=1, patch=4, dim=64, depth=4, heads=2, mlp_ratio=2),
    "cifar-m": dict(img_size=32, in_chans=3, patch=4, dim=128, depth=6, heads=4, mlp_ratio=2),
    "vww-96": dict(img_size=96, in_chans=3, patch=8, dim=96, depth=6, heads=3, mlp_ratio=3),
}


def _row(name: str, graph, samples) -> dict:
    t0 = time.perf_counter()
    c = compile_graph(graph, samples)
    total = time.perf_counter() - t0
    return {"model": name, "arena": c.plan.arena_bytes, "lb": c.plan.lower_bound_bytes,
            "weights": c.schedule.weights_bytes(), "macs": c.schedule.macs(),
            "steps": len(c.schedule.steps), "t": total, **c.timings}


def run(out: Path, configs: list[str]) -> str:
    rows = []
    g = load_graph(None)
    from mcuc.datasets import load_calibration

    rows.append(_row("default (bundled)", g, load_calibration("fashion-mnist", (1, 1, 28, 28))))
    from mcuc.models.vit import ViTConfig, build_vit

    for name in configs:
        cfg = ViTConfig(**CONFIGS[name])
        shape = (1, cfg.in_chans, cfg.img_size, cfg.img_size)
        graph = load_graph(build_vit(cfg).eval(), shape)
        samples = np.random.default_rng(0).random((16,) + shape[1:], dtype=np.float32)
        rows.append(_row(name, graph, samples))
    lines = [
        "# Compiler benchmark",
        "",
        f"Made by `make bench` on {platform.node()} ({platform.processor() or 'cpu'}), "
        f"{time.strftime('%Y-%m-%d')}. Times are wall-clock seconds on a shared machine.",
        "",
        "| model | steps | arena B | lower bound B | arena/LB | weights B | MACs | "
        "calibrate s | schedule s | plan s | total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['steps']} | {r['arena']:,} | {r['lb']:,} | "
            f"{r['arena'] / max(1, r['lb']):.3f} | {r['weights']:,} | {r['macs']:,} | "
            f"{r['calibrate_s']:.2f} | {r['schedule_s']:.3f} | {r['plan_s'] * 1000:.1f} ms | "
            f"{r['t']:.2f} |")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/compile.md")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    a = ap.parse_args()
    if not DEFAULT_MODEL.is_file():
        raise SystemExit(f"default model missing: {DEFAULT_MODEL}")
    print(run(Path(a.out), [c for c in a.configs.split(",") if c]))


if __name__ == "__main__":
    main()
