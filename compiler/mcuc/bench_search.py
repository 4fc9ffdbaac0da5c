"""`make bench-search`: searched ViTs against a uniform-ViT baseline at four SRAM budgets.

One supernet is trained for all budgets, on a pool of subnets feasible at each budget:
each budget's share gets an equal part of the draws (so the 16 KB subnets are not
drowned by the 128 KB ones), weighted by MACs within it (`--sampling`). For each budget
`mcuc search` runs on it (evolution scored on held-out training images) and the
winner, with its inherited weights, is fine-tuned alone for E epochs (once: a budget
whose winner repeats an earlier budget's reuses its measurements).
The baseline is the uniform ViT (2 heads, MLP ratio 2, full rank in every block) of a
small grid (patch 4/7 x dim 32-128 x depth 2/4/6) with the most MACs that fits the
same budget -- the usual "scale it up until it no longer fits" rule -- trained from
scratch for the same E epochs with the same recipe (and, with `--distill-epochs`, the
same CNN teacher's labels). The supernet's own epochs are the
search's cost, reported below, and are not given to the baseline.

Both models are then measured on the Fashion-MNIST test set: float (torch), int8 (the
compiler's integer reference, every test image) and the firmware itself (qemu-m7, a
Cortex-M7 with the F746's limits, on the first `--fw-images` test images; its outputs
must equal the reference's bit for bit). Arena, RAM and flash come from `mcuc build
--board stm32f746` (RAM and flash measured from the linked ELF).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mcuc.nas.space import SAMPLING, SubnetConfig

KB = 1024
BUDGETS_KB = (16, 32, 64, 128)
FLASH = 256 * KB
GRID = {"patch": (4, 7), "dim": (32, 48, 64, 96, 128), "depth": (2, 4, 6)}
BASELINE_LR = 2e-3  # models/train.train's default, tuned for training from scratch


def uniform_grid(space) -> list[SubnetConfig]:
    """Uniform ViTs: 2 heads, MLP ratio 2, full rank in every block."""
    return [SubnetConfig(28, p, d, n, (2,) * n, (2.0,) * n, (1.0,) * n,
                         space.in_chans, space.num_classes)
            for p in GRID["patch"] for d in GRID["dim"] for n in GRID["depth"]]


def baseline_config(space, cost_model) -> SubnetConfig | None:
    fits = [c for c in uniform_grid(space) if cost_model.cost(c).fits]
    return max(fits, key=lambda c: cost_model.cost(c).macs) if fits else None


def measure(net, cfg: SubnetConfig, work: Path, calib: np.ndarray, x_test, y_test,
            fw_images: int) -> dict:
    """Float, int8 and firmware test accuracy plus the stm32f746 build's sizes."""
    from mcuc.models.train import evaluate, export_onnx
    from mcuc.pipeline import build, compile_graph, load_graph
    from mcuc.schedule import execute
    from mcuc.sim.qemu import run_qemu

    onnx = export_onnx(net, cfg.input_shape, work / "model.onnx")
    np.save(work / "calib.npy", calib)
    rep = build(onnx, "stm32f746", str(work / "calib.npy"), work / "f746")
    c = compile_graph(load_graph(onnx), calib)
    outs = [execute.run(c.schedule, execute.quantize_input(c.schedule, xi), c.plan)
            for xi in tqdm(x_test, desc="int8 reference", leave=False)]
    pred = np.array([int(np.argmax(o)) for o in outs])
    build(onnx, "qemu-m7", str(work / "calib.npy"), work / "qemu", emulate=False)
    n = min(fw_images, len(x_test))
    xq = np.stack([execute.quantize_input(c.schedule, xi).reshape(-1) for xi in x_test[:n]])
    fw = run_qemu(work / "qemu" / "firmware.elf", xq, timeout=3600)
    same = sum(int(np.array_equal(f.reshape(-1), r.reshape(-1)))
               for f, r in zip(fw, outs[:n], strict=True))
    fw_pred = np.array([int(np.argmax(o)) for o in fw])
    return {
        "config": cfg.to_dict(), "params": sum(p.numel() for p in net.parameters()),
        "float_acc": evaluate(net, x_test, y_test),
        "int8_acc": float((pred == y_test).mean()),
        "test_images": len(x_test), "fw_images": n, "fw_bit_exact": same,
        "fw_acc": float((fw_pred == y_test[:n]).mean()),
        "arena": rep["arena_bytes"], "ram": rep["ram_bytes"], "flash": rep["flash_bytes"],
        "flash_estimate": rep["estimate"]["flash_bytes"], "macs": rep["macs"],
    }


def run(a: argparse.Namespace) -> str:
    import torch

    from mcuc.datasets import load_fashion_mnist
    from mcuc.models.train import evaluate, train
    from mcuc.nas.cost import CostModel
    from mcuc.nas.search import SearchOptions, run_search
    from mcuc.nas.space import load_space
    from mcuc.nas.subnet import SubnetViT
    from mcuc.nas.train import (
        CHECKPOINT,
        TrainSettings,
        feasible_pool,
        holdout_split,
        sampling_weights,
        train_supernet,
    )

    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(a.bench_dir).mkdir(parents=True, exist_ok=True)
    space = load_space()
    x, y = load_fashion_mnist("train", limit=a.limit)
    x_test, y_test = load_fashion_mnist("test", limit=a.test_limit)
    val = max(1, len(x) // 12)
    tr, va = holdout_split(len(x), val, a.seed)
    models = {b: CostModel("stm32f746", b * KB, FLASH) for b in a.budgets}
    draw: dict[SubnetConfig, float] = {}
    for b in a.budgets:
        cost = models[b].cost
        share = feasible_pool(space, lambda c, f=cost: f(c).fits, a.pool // len(a.budgets),
                              a.seed + b)
        for c, w in zip(share, sampling_weights(share, lambda c, f=cost: f(c).macs, a.sampling),
                        strict=True):
            draw[c] = draw.get(c, 0.0) + w / len(a.budgets)
    pool, weights = list(draw), list(draw.values())
    meta = {"dataset": "fashion-mnist", "limit": a.limit, "val": val, "board": "stm32f746",
            "sram": max(a.budgets) * KB, "flash": FLASH}
    t0 = time.perf_counter()
    settings = TrainSettings(epochs=a.supernet_epochs, seed=a.seed, augment=a.augment,
                             sampling=a.sampling)
    sn = train_supernet(space, x[tr], y[tr], settings, pool, checkpoint=out / CHECKPOINT,
                        resume=True, meta=meta, weights=weights)
    # A resumed run reports the checkpoint's accumulated training time, not this run's.
    resumed_s = max(0.0, sn.train_seconds - (time.perf_counter() - t0))
    calib = x[tr][np.random.default_rng(a.seed).choice(len(tr), 64, replace=False)]
    teacher = distill_labels(a, out, x[tr], y[tr], x_test, y_test)
    done: dict[tuple[str, SubnetConfig], dict] = {}  # a model two budgets share runs once

    def trained(kind: str, cfg: SubnetConfig, net, lr: float, budget: int) -> dict:
        if (kind, cfg) not in done:
            t0 = time.perf_counter()
            train(net, x[tr], y[tr], a.finetune_epochs, lr=lr, seed=a.seed, augment=a.augment,
                  distill=None if teacher is None else teacher["labels"])
            work = out / f"{kind}_p{cfg.patch}_d{cfg.dim}_L{cfg.depth}_{len(done)}"
            row = measure(net.eval(), cfg, work, calib, x_test, y_test, a.fw_images)
            row.update(train_s=time.perf_counter() - t0, val_acc=evaluate(net, x[va], y[va]),
                       first_budget=budget)
            done[kind, cfg] = row
        return dict(done[kind, cfg])

    rows = []
    for b in a.budgets:
        work = out / f"sram{b}k"
        opts = SearchOptions(sram=b * KB, flash=FLASH, limit=a.limit, val=val,
                             supernet=str(out / CHECKPOINT), population=a.population,
                             generations=a.generations, seed=a.seed,
                             extra={"command": "bench-search"})
        t0 = time.perf_counter()
        summary = run_search(opts, work)   # no fine-tune: `trained` does it, once per model
        search_s = time.perf_counter() - t0
        cfg = SubnetConfig.from_dict(summary["best"]["config"])
        net = SubnetViT(cfg)
        net.load_state_dict(torch.load(work / "best.pt", weights_only=False)["state_dict"])
        searched = trained("searched", cfg, net, a.finetune_lr, b)
        searched.update(search_s=search_s,
                        inherited_acc=summary["best"]["val_accuracy_inherited"],
                        candidates=len(json.loads((work / "search.json").read_text())
                                       ["candidates"]))
        shutil.copy(work / "pareto.png", Path(a.bench_dir) / f"search_pareto_{b}k.png")
        base_cfg = baseline_config(space, models[b])
        base = (trained("baseline", base_cfg, SubnetViT(base_cfg), BASELINE_LR, b)
                if base_cfg is not None else None)
        rows.append({"budget_kb": b, "searched": searched, "baseline": base})
        (out / "bench.json").write_text(json.dumps(rows, indent=1))
    supernet_s = sn.train_seconds
    return report(a, rows, supernet_s, len(pool), time.perf_counter() - t_all + resumed_s,
                  teacher)


def distill_labels(a: argparse.Namespace, out: Path, x, y, x_test, y_test) -> dict | None:
    """The CNN teacher's labels for the training images (trained once, kept in
    OUT/teacher.npz for reruns), or None without --distill-epochs."""
    from mcuc.models.teacher import distill_targets
    from mcuc.models.train import evaluate

    if a.distill_epochs <= 0:
        return None
    path = out / "teacher.npz"
    key = np.array([a.distill_epochs, a.seed, len(x)])
    if path.is_file():
        old = np.load(path)
        if np.array_equal(old["key"], key):
            return {k: old[k] for k in old.files}
    t0 = time.perf_counter()
    net, labels = distill_targets(x, y, a.distill_epochs, seed=a.seed)
    found = {"labels": labels, "key": key,
             "test_acc": np.float64(evaluate(net, x_test, y_test)),
             "seconds": np.float64(time.perf_counter() - t0)}
    np.savez(path, **found)
    return found


def _cfg_text(c: dict) -> str:
    low = sorted(set(c["lowrank"]))
    return (f"p{c['patch']} d{c['dim']} L{c['depth']} h{'/'.join(map(str, c['heads']))} "
            f"mlp{'/'.join(f'{m:g}' for m in c['mlp_ratio'])} r{'/'.join(f'{r:g}' for r in low)}")


def _search_line(r: dict) -> str:
    m = r["searched"]
    again = (f"the {m['first_budget']} KB budget's model, trained once"
             if m["first_budget"] != r["budget_kb"] else f"{m['train_s']:.0f} s")
    return (f"- {r['budget_kb']} KB: {m['candidates']} candidates in {m['search_s']:.0f} s; "
            f"held-out accuracy {100 * m['inherited_acc']:.2f}% inherited, "
            f"{100 * m['val_acc']:.2f}% fine-tuned; fine-tune + measure: {again}")


def report(a, rows: list[dict], supernet_s: float, pool: int, total_s: float,
           teacher: dict | None = None) -> str:
    head = ("| SRAM budget | model | config | params | MACs | arena B | RAM B (ELF) | "
            "flash B (ELF) | float test | int8 test | firmware (first N) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        for label, m in (("searched", r["searched"]), ("baseline", r["baseline"])):
            if m is None:
                lines.append(f"| {r['budget_kb']} KB | {label} | nothing in the grid fits "
                             "| | | | | | | | |")
                continue
            lines.append(
                f"| {r['budget_kb']} KB | {label} | {_cfg_text(m['config'])} | {m['params']:,} "
                f"| {m['macs']:,} | {m['arena']:,} | {m['ram']:,} | {m['flash']:,} | "
                f"{100 * m['float_acc']:.2f}% | {100 * m['int8_acc']:.2f}% | "
                f"{100 * m['fw_acc']:.1f}% ({m['fw_bit_exact']}/{m['fw_images']} bit-exact) |")
    wins = sum(1 for r in rows if r["baseline"] is None
               or r["searched"]["int8_acc"] > r["baseline"]["int8_acc"])
    at64 = [r for r in rows if r["budget_kb"] == 64]
    goal = (f"{100 * at64[0]['searched']['int8_acc']:.2f}% int8 at 64 KB "
            f"({'meets' if at64[0]['searched']['int8_acc'] >= 0.9 else 'misses'} the 90% goal)"
            if at64 else "64 KB not run")
    cmd = (f"python -m mcuc.bench_search --supernet-epochs {a.supernet_epochs} "
           f"--finetune-epochs {a.finetune_epochs} --finetune-lr {a.finetune_lr:g} "
           f"--distill-epochs {a.distill_epochs} "
           f"--population {a.population} "
           f"--generations {a.generations} --pool {a.pool} --sampling {a.sampling}"
           + (" --augment" if a.augment else "")
           + (f" --limit {a.limit}" if a.limit else "")
           + (f" --test-limit {a.test_limit}" if a.test_limit else ""))
    search_lines = [_search_line(r) for r in rows]
    return "\n".join([
        "# Architecture-search benchmark",
        "",
        f"Made by `make bench-search` (`{cmd}`) on {time.strftime('%Y-%m-%d')}, on this "
        f"project's 2-core CPU machine; {total_s / 60:.0f} min in all.",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        f"Supernet: {a.supernet_epochs} epochs on {pool} budget-feasible subnets, "
        f"{supernet_s / 60:.1f} min. Searched models: inherited weights fine-tuned "
        f"{a.finetune_epochs} epochs (lr {a.finetune_lr:g}). Baselines: {a.finetune_epochs} "
        f"epochs from scratch (lr {BASELINE_LR:g}). Augmentation (random crops and flips): "
        f"{'on' if a.augment else 'off'}, for every model. "
        + ("No distillation. " if teacher is None else
           f"Every model (searched and baseline) is trained with hard-label distillation "
           f"from the same small CNN teacher ({a.distill_epochs} epochs, "
           f"{float(teacher['seconds']) / 60:.1f} min; {100 * float(teacher['test_acc']):.2f}% "
           "test; host-only, never compiled). ")
        + f"Test images: {rows[0]['searched']['test_images']:,}. "
        "Board overheads (stack, data, code) are the STM32F746's; flash budget 256 KB.",
        "",
        "\n".join(lines),
        "",
        f"Searched ahead of the baseline (int8 test accuracy) at {wins} of {len(rows)} "
        f"budgets; {goal}.",
        "",
        "Search time per budget:",
        *search_lines,
        "",
        "Pareto fronts: " + ", ".join(f"[{r['budget_kb']} KB](search_pareto_{r['budget_kb']}k.png)"
                                       for r in rows),
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS_KB))
    ap.add_argument("--supernet-epochs", type=int, default=60)
    ap.add_argument("--finetune-epochs", type=int, default=12)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--distill-epochs", type=int, default=8,
                    help="CNN teacher epochs; its labels are distilled into every model "
                         "(searched and baseline); 0: no teacher")
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--pool", type=int, default=400)
    ap.add_argument("--sampling", choices=SAMPLING, default=SAMPLING[0])
    ap.add_argument("--augment", action="store_true",
                    help="random crops and flips for every model (baselines too)")
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--fw-images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-search")
    ap.add_argument("--bench-dir", default="bench")
    a = ap.parse_args(argv)
    text = run(a)
    path = Path(a.bench_dir) / "search.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
