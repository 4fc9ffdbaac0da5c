"""`make bench` (memory part): arenas with and without each memory technique.

For the four reference configurations of issue 4, compiles a random-weight ViT of that
shape (the arena depends on shapes, not weights) with all techniques, with each one
switched off, with none, and with all plus streaming input, and compares against
TensorFlow Lite Micro's arena for the same architecture. The TFLM column is quoted from
the issue's table (measured with the `tflite-micro` package, arena found by bisection);
this benchmark does not rebuild it, because writing .tflite files needs tensorflow,
which is kept out of the install.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mcuc.pipeline import compile_graph, load_graph
from mcuc.schedule.passes import TECHNIQUES

CONFIGS = {
    "fmnist-s": dict(img_size=28, in_chans=1, patch=4, dim=64, depth=4, heads=2, mlp_ratio=2),
    "cifar-m": dict(img_size=32, in_chans=3, patch=4, dim=128, depth=6, heads=4, mlp_ratio=2),
    "vww-96": dict(img_size=96, in_chans=3, patch=8, dim=96, depth=6, heads=3, mlp_ratio=3),
    "mcuformer-t": dict(img_size=240, in_chans=3, patch=20, dim=192, depth=12, heads=3,
                        mlp_ratio=4),
}
TFLM_ARENA = {"fmnist-s": 91_048, "cifar-m": 243_986, "vww-96": 399_738,
              "mcuformer-t": 1_143_808}


def measure(name: str, samples: int = 2) -> dict:
    """Arena and lower bound of one configuration under each ablation."""
    from mcuc.models.vit import ViTConfig, build_vit

    cfg = ViTConfig(**CONFIGS[name])
    shape = (1, cfg.in_chans, cfg.img_size, cfg.img_size)
    graph = load_graph(build_vit(cfg).eval(), shape)
    x = np.random.default_rng(0).random((samples,) + shape[1:], dtype=np.float32)
    variants = {"all": ()}
    variants.update({f"no {t}": (t,) for t in TECHNIQUES})
    variants["none"] = TECHNIQUES
    out: dict = {"name": name}
    for label, disabled in variants.items():
        t0 = time.perf_counter()
        c = compile_graph(graph, x, disabled)
        out[label] = {"arena": c.plan.arena_bytes, "lb": c.plan.lower_bound_bytes,
                      "seconds": time.perf_counter() - t0}
    # Streaming input (`--stream-input`): all techniques, the image read band by band.
    t0 = time.perf_counter()
    c = compile_graph(graph, x, stream_input=True)
    out["streaming"] = {"arena": c.plan.arena_bytes, "lb": c.plan.lower_bound_bytes,
                        "seconds": time.perf_counter() - t0}
    return out


def table(rows: list[dict]) -> str:
    labels = ["all"] + [f"no {t}" for t in TECHNIQUES] + ["none", "streaming"]
    head = ("| config | TFLM arena | " + " | ".join(labels)
            + " | all / TFLM | all / lower bound | streaming / TFLM |")
    lines = [head, "|" + "---|" * (len(labels) + 5)]
    for r in rows:
        tflm = TFLM_ARENA[r["name"]]
        cells = " | ".join(f"{r[lab]['arena']:,}" for lab in labels)
        lines.append(f"| {r['name']} | {tflm:,} | {cells} | {r['all']['arena'] / tflm:.3f} | "
                     f"{r['all']['arena'] / max(1, r['all']['lb']):.3f} | "
                     f"{r['streaming']['arena'] / tflm:.3f} |")
    return "\n".join(lines)


def run(out: Path, names: list[str]) -> str:
    rows = [measure(n) for n in names]
    text = "\n".join([
        "# Memory benchmark",
        "",
        f"Made by `make bench` (`python scripts/bench_memory.py`), {time.strftime('%Y-%m-%d')}.",
        "Activation arena in bytes (scratch included) for random-weight ViTs of each shape,",
        "with all memory techniques, each one switched off (`--disable NAME`), and none.",
        "TFLM arenas are quoted from issue 4's table (not rebuilt here: writing .tflite",
        "files needs tensorflow). Goal: all <= 0.2 x TFLM and <= 1.05 x lower bound.",
        "",
        table(rows),
        "",
        "`streaming`: all techniques plus streaming input (`mcuc build --stream-input`:",
        "a callback supplies the image band by band, so the full image is never in the",
        "arena; the lower-bound ratio is for `all`).",
        "",
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/memory.md")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    a = ap.parse_args()
    print(run(Path(a.out), [c for c in a.configs.split(",") if c]))


if __name__ == "__main__":
    main()
