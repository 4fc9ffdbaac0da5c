"""`mcuc search`: the most accurate ViT of a search space that the compiler fits on a board.

The flow, each step a library call: hold out part of the train split; build the pool of
budget-feasible subnets with the compiler's cost model; train the weight-sharing
supernet on it (or load one); evolve candidates scored by inherited-weight accuracy on
the held-out images; extract the winner, optionally fine-tune it, export best.onnx and
best.pt, and compile best.onnx once more to check the prediction against the real
compile. Everything lands in one folder with search.json and pareto.png.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mcuc import McucError


@dataclass
class SearchOptions:
    board: str = "stm32f746"
    sram: int | None = None
    flash: int | None = None
    latency_ms: float | None = None  # time budget per inference (--latency), at ASSUMED_CPI
    instructions: int | None = None  # or the budget in predicted instructions directly
    dataset: str = "fashion-mnist"
    limit: int | None = None        # first N training images (quick runs)
    val: int | None = None          # held-out images (default: 1/12 of the train split)
    space: str | None = None        # search-space TOML (default: bundled)
    epochs: int = 10                # supernet epochs
    batch_size: int = 128
    lr: float = 2e-3
    pool: int = 500                 # budget-feasible subnets the supernet trains
    sampling: str = "macs"          # supernet subnet draw: "macs"-weighted or "uniform"
    augment: bool = False           # random crops and flips (supernet and fine-tune)
    population: int = 20
    generations: int = 10
    parents: int = 8
    mutation_prob: float = 0.3
    finetune_epochs: int = 0
    finetune_lr: float = 5e-4
    finetune_init: str = "inherited"  # or "scratch": retrain the picked architecture
    qat_epochs: int = 0             # quantization-aware fine-tuning of the pick (0: off)
    qat_lr: float = 1e-4
    distill_epochs: int = 0         # CNN teacher epochs for a distilled fine-tune (0: none)
    distill_supernet: bool = False  # distil the teacher into the supernet too
    finalists: int = 1              # token families whose best candidate is fine-tuned
    proxy_epochs: int = 0           # rank the best shapes by training from scratch (0: off)
    proxy_shapes: int = 6           # shapes (resolution, patch, dim, depth) the proxy trains
    proxy_plain: bool = False       # the proxy also trains each shape's plain variant
    seed: int = 0
    device: str = "cpu"
    supernet: str | None = None     # a trained supernet.pt to reuse instead of training
    resume: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)


def check_budgets(opts: SearchOptions) -> None:
    """Refuse an SRAM or flash budget at or below the board's fixed overhead (stack and
    runtime data; runtime code) up front: no model fits it, and finding that out by
    costing the pool's 50 x --pool draws took minutes."""
    from mcuc.boards import load_board
    from mcuc.target.fit import estimate

    board = load_board(opts.board)
    base = estimate(board, 0, 0, 0, 0, 0, 0)
    for what, value, floor in (("--sram", opts.sram, base.sram), ("--flash", opts.flash,
                                                                  base.flash)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= floor:
            raise McucError(f"no config of the search space fits {what} {value}: the fixed "
                            f"overhead of {board.name} alone is {floor:,} bytes")


def instructions_limit(opts: SearchOptions) -> tuple[int | None, dict | None]:
    """The instruction budget of --latency (the board's clock at latency.ASSUMED_CPI
    cycles per instruction) or --instructions, and how it was made (for search.json)."""
    from mcuc import latency
    from mcuc.boards import load_board

    if opts.latency_ms is not None and opts.instructions is not None:
        raise McucError("give --latency or --instructions, not both")
    if opts.instructions is not None:
        if isinstance(opts.instructions, bool) or int(opts.instructions) < 1:
            raise McucError(f"--instructions must be a positive count, not "
                            f"{opts.instructions!r}")
        return int(opts.instructions), {"instructions": int(opts.instructions)}
    if opts.latency_ms is None:
        return None, None
    if not opts.latency_ms > 0:
        raise McucError(f"--latency must be a positive time, not {opts.latency_ms!r} ms")
    clock = load_board(opts.board).clock_hz
    n = latency.instruction_budget(opts.latency_ms, clock)
    return n, {"ms": opts.latency_ms, "clock_hz": clock, "cpi_assumed": latency.ASSUMED_CPI,
               "instructions": n}


def _log(opts: SearchOptions, msg: str) -> None:
    if opts.progress:
        print(msg, flush=True)


def _supernet(opts: SearchOptions, space, x_tr, y_tr, pool, weights, out: Path, meta: dict,
              labels: np.ndarray | None):
    from mcuc.nas.train import CHECKPOINT, TrainSettings, load_supernet, train_supernet

    if opts.supernet:
        model, ck = load_supernet(opts.supernet)
        if model.space != space:
            raise McucError(f"supernet {opts.supernet} was trained on another search space")
        old = ck.get("meta", {})
        if old and (old.get("dataset"), old.get("val"), old.get("limit")) != \
                (meta["dataset"], meta["val"], meta["limit"]):
            raise McucError(f"supernet {opts.supernet} held out other images "
                            f"({old.get('dataset')}, val {old.get('val')}, "
                            f"limit {old.get('limit')}); pass the same --dataset/--val/--limit")
        return model, {"path": str(opts.supernet), "epochs": ck["epoch"],
                       "seconds": ck["seconds"], "losses": ck["losses"]}
    distill = labels if opts.distill_supernet else None
    settings = TrainSettings(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                             seed=opts.seed, augment=opts.augment, sampling=opts.sampling,
                             distill_weight=0.5 if distill is not None else 0.0)
    model = train_supernet(space, x_tr, y_tr, settings, pool, opts.device, out / CHECKPOINT,
                           opts.resume, opts.progress, meta, weights, distill)
    return model, {"path": str(out / CHECKPOINT), "epochs": settings.epochs,
                   "seconds": model.train_seconds, "losses": model.train_losses}


def verify_build(onnx_path: Path, calib: np.ndarray, board: str) -> dict:
    """Compile the exported model as `mcuc build` does (real export, frontend and
    calibration) and return what the build would report, without writing C."""
    from mcuc import latency
    from mcuc.boards import load_board
    from mcuc.nas.cost import DEFAULT_SAMPLES
    from mcuc.pipeline import compile_graph, estimate_fit, load_graph

    b = load_board(board)
    c = compile_graph(load_graph(onnx_path), calib, dsp=b.dsp)
    fit = estimate_fit(c, b, DEFAULT_SAMPLES)
    out = {"arena_bytes": c.plan.arena_bytes, "weights_bytes": c.schedule.weights_bytes(),
           "flash_bytes": fit.flash, "ram_bytes": fit.sram, "macs": c.schedule.macs()}
    if latency.has_table(b):   # the build's own prediction, from its real quantization
        out["predicted_instructions"] = latency.predict(c.schedule, b).instructions
    return out


def run_search(opts: SearchOptions, out: Path | str) -> dict:
    """Run the whole search into `out`; returns the summary also written to search.json."""
    import torch

    from mcuc.datasets import load_dataset
    from mcuc.models.qat import qat_stage
    from mcuc.models.teacher import distill_targets
    from mcuc.models.train import evaluate, export_onnx, train
    from mcuc.nas.cost import CostModel
    from mcuc.nas.evolution import evolve, pareto_front, plot_pareto, write_search_json
    from mcuc.nas.space import check_sampling, load_space
    from mcuc.nas.subnet import SubnetViT
    from mcuc.nas.train import (
        feasible_pool,
        holdout_split,
        resolve_device,
        sampling_weights,
        subnet_accuracy,
    )
    from mcuc.resize import resize_images

    t_start = time.perf_counter()
    check_budgets(opts)  # a budget nothing fits fails before any data or training
    limit, time_budget = instructions_limit(opts)
    cm = CostModel(opts.board, opts.sram, opts.flash, instructions=limit)  # needs a table
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolve_device(opts.device)
    check_sampling(opts.sampling)  # a bad --sampling fails before any work
    if opts.distill_epochs and opts.finetune_epochs <= 0 and not opts.distill_supernet:
        raise McucError("--distill-epochs distils the fine-tune: give --finetune-epochs too "
                        "(or --distill-supernet)")
    if opts.distill_supernet and opts.distill_epochs <= 0:
        raise McucError("--distill-supernet needs a teacher: give --distill-epochs too")
    if opts.finetune_init not in ("inherited", "scratch"):
        raise McucError(f"--finetune-init must be inherited or scratch, not "
                        f"{opts.finetune_init!r}")
    if opts.finalists < 1 or (opts.finalists > 1 and opts.finetune_epochs <= 0):
        raise McucError(f"--finalists {opts.finalists}: finalists are compared after their "
                        "fine-tune, so give 1, or more with --finetune-epochs")
    if opts.proxy_epochs < 0 or opts.proxy_shapes < 1:
        raise McucError(f"--proxy-epochs {opts.proxy_epochs} --proxy-shapes "
                        f"{opts.proxy_shapes}: give epochs >= 0 and shapes >= 1")
    if opts.proxy_plain and opts.proxy_epochs <= 0:
        raise McucError("--proxy-plain adds trainees to the proxy: give --proxy-epochs too")
    if opts.proxy_epochs and opts.finalists != 1:
        raise McucError("--proxy-epochs picks the one finalist: leave --finalists at 1")
    space = load_space(opts.space)
    x, y, classes = load_dataset(opts.dataset, "train", limit=opts.limit)
    if x.shape[1] != space.in_chans or len(classes) != space.num_classes:
        raise McucError(f"dataset {opts.dataset} has {x.shape[1]} channel(s) and "
                        f"{len(classes)} classes; the search space expects "
                        f"{space.in_chans} and {space.num_classes} (edit the space TOML)")
    val = opts.val if opts.val is not None else max(1, len(x) // 12)
    tr, va = holdout_split(len(x), val, opts.seed)
    when = ""
    if time_budget and "ms" in time_budget:
        when = (f", time {opts.latency_ms:g} ms = {limit:,} instructions (at "
                f"{time_budget['clock_hz'] / 1e6:g} MHz, assuming {time_budget['cpi_assumed']:g}"
                " cycle per instruction)")
    elif limit is not None:
        when = f", {limit:,} instructions"
    _log(opts, f"mcuc search: {opts.board}, SRAM {cm.sram_limit:,} B, flash "
               f"{cm.flash_limit:,} B{when}; {len(tr):,} train / {len(va):,} held-out images")
    t0 = time.perf_counter()
    try:
        pool = [] if opts.supernet else feasible_pool(
            space, lambda c: cm.cost(c).fits, opts.pool, opts.seed, progress=opts.progress)
    except McucError:
        raise cm.no_fit_error(cm.misses) from None
    pool_s = time.perf_counter() - t0
    if pool:
        _log(opts, f"budget pool: {len(pool)} feasible subnets ({cm.misses} costed, "
                   f"{cm.candidates_per_s:.1f} candidates/s)")
    meta = {"dataset": str(opts.dataset), "limit": opts.limit, "val": val, "board": opts.board,
            "sram": cm.sram_limit, "flash": cm.flash_limit, "instructions": limit}
    weights = sampling_weights(pool, lambda c: cm.cost(c).macs, opts.sampling)
    labels, teacher_acc = None, None
    if opts.distill_epochs > 0:
        _log(opts, f"training the CNN teacher ({opts.distill_epochs} epochs)")
        teacher, labels = distill_targets(x[tr], y[tr], opts.distill_epochs,
                                          space.num_classes, opts.seed, opts.progress,
                                          opts.device)
        teacher_acc = evaluate(teacher, x[va], y[va])
    model, sn_info = _supernet(opts, space, x[tr], y[tr], pool, weights, out, meta, labels)
    dev = torch.device(opts.device)
    model.to(dev)
    xv = torch.from_numpy(x[va]).to(dev)
    yv = torch.from_numpy(y[va]).to(dev)
    result = evolve(space, cm, lambda c: subnet_accuracy(model, c, xv, yv),
                    population=opts.population, generations=opts.generations,
                    parents=opts.parents, mutation_prob=opts.mutation_prob, seed=opts.seed,
                    progress=opts.progress)
    finals, proxies = [], None
    chosen = family_finalists(result.candidates, opts.finalists)
    if opts.proxy_epochs > 0:
        plain = None
        if opts.proxy_plain:
            plain = plain_scorer(space, cm, lambda c: subnet_accuracy(model, c, xv, yv),
                                 max(c.generation for c in result.candidates))
        chosen, proxies = proxy_finalist(opts, result, x, y, tr, va, labels, plain)
    for cand in chosen:
        net = model.cpu().extract(cand.config)
        xs = resize_images(x, cand.config.resolution)   # the supernet resized on the fly
        row = {"config": cand.config.to_dict(), "val_accuracy_inherited": evaluate(
            net, xs[va], y[va]), "val_accuracy_finetuned": None}
        if opts.finetune_epochs > 0 and opts.finetune_init == "scratch":
            torch.manual_seed(opts.seed)
            net = SubnetViT(cand.config)
        if opts.finetune_epochs > 0:
            train(net, xs[tr], y[tr], opts.finetune_epochs, batch_size=opts.batch_size,
                  lr=opts.finetune_lr, seed=opts.seed, progress=opts.progress,
                  augment=opts.augment, distill=labels, device=opts.device)
            row["val_accuracy_finetuned"] = evaluate(net, xs[va], y[va])
        finals.append((cand, net, row))
    score = "val_accuracy_inherited" if opts.finetune_epochs <= 0 else "val_accuracy_finetuned"
    best, net, row = max(finals, key=lambda f: f[2][score])  # first of equals: the search's
    result = replace(result, best=best, pareto=pareto_front(result.candidates))
    inherited, finetuned = row["val_accuracy_inherited"], row["val_accuracy_finetuned"]
    cfg = best.config
    calib = resize_images(x[tr][np.random.default_rng(opts.seed).choice(
        len(tr), min(64, len(tr)), replace=False)], cfg.resolution)
    if opts.qat_epochs > 0:
        xs = resize_images(x, cfg.resolution)
        row["qat"] = qat_stage(net, xs[tr], y[tr], xs[va], y[va], calib, opts.qat_epochs,
                               opts.qat_lr, batch_size=opts.batch_size, seed=opts.seed,
                               progress=opts.progress, augment=opts.augment)
    export_onnx(net, cfg.input_shape, out / "best.onnx")
    torch.save({"config": cfg.to_dict(), "state_dict": net.state_dict(),
                "val_accuracy": finetuned if finetuned is not None else inherited},
               out / "best.pt")
    np.save(out / "calib.npy", calib)
    built = verify_build(out / "best.onnx", calib, opts.board)
    predicted = {k: getattr(best.cost, k) for k in built if k != "predicted_instructions"}
    built_sizes = {k: v for k, v in built.items() if k in predicted}
    if built_sizes != predicted:
        raise McucError(f"compiling best.onnx gave {built}, but the search predicted "
                        f"{predicted}: the cost model and the compiler disagree (a bug)")
    summary = {
        "command": opts.extra.get("command"),
        "options": {k: v for k, v in asdict(opts).items() if k != "extra"},
        "board": opts.board, "sram_limit": cm.sram_limit, "flash_limit": cm.flash_limit,
        "instructions_limit": limit, "time_budget": time_budget,
        "train_images": int(len(tr)), "val_images": int(len(va)),
        "pool": {"size": len(pool), "seconds": round(pool_s, 2)},
        "supernet": sn_info,
        "best": {"config": cfg.to_dict(), "cost": best.cost.to_dict(),
                 "val_accuracy_inherited": inherited, "val_accuracy_finetuned": finetuned,
                 "teacher_val_accuracy": teacher_acc,
                 "finalists": [f[2] for f in finals], "proxies": proxies,
                 "compiled": built},
        "search_seconds": round(result.seconds, 2),
        "total_seconds": round(time.perf_counter() - t_start, 2),
    }
    write_search_json(result, out / "search.json", summary)
    plot_pareto(result, out / "pareto.png", cm.sram_limit,
                title=f"{opts.board}: {len(result.candidates)} candidates",
                instructions_limit=limit, clock_hz=cm.board.clock_hz)
    _log(opts, summary_line(summary, result))
    return summary


def proxy_finalist(opts: SearchOptions, result, x, y, tr, va, labels, plain=None
                   ) -> tuple[list, list[dict]]:
    """--proxy-epochs (mcuc.nas.proxy): the best candidate of each of the K best shapes
    (and, given `plain` -- config -> its plain variant as a scored Candidate, or None --
    each shape's plain variant) is trained from scratch (at the supernet's --lr) for a
    few epochs; ([the best on held-out images], each trainee's record)."""
    import torch

    from mcuc.models.train import evaluate, train
    from mcuc.nas.proxy import Shape, best_of, shapes, with_plain
    from mcuc.nas.subnet import SubnetViT
    from mcuc.resize import resize_images

    by_config = {c.config: c for c in result.candidates}
    picked = shapes([Shape(c.config, c.accuracy) for c in result.candidates],  # all feasible
                    lambda g: True, opts.proxy_shapes)

    def plain_config(g):
        cand = plain(g) if plain else None
        if cand is None:
            return None
        if cand.config not in by_config:   # listed in search.json like every candidate
            by_config[cand.config] = cand
            result.candidates.append(cand)
        return cand.config

    trainees = with_plain(picked, plain_config)
    rows = []
    for i, (g, s) in enumerate(trainees):
        kind = "shape" if g == s.config else "plain variant"
        _log(opts, f"proxy {i + 1}/{len(trainees)} ({kind}): resolution {g.resolution}, patch "
                   f"{g.patch}, dim {g.dim}, depth {g.depth}, {opts.proxy_epochs} epochs "
                   "from scratch")
        torch.manual_seed(opts.seed)
        net = SubnetViT(g)
        xs = resize_images(x, g.resolution)
        train(net, xs[tr], y[tr], opts.proxy_epochs, batch_size=opts.batch_size, lr=opts.lr,
              seed=opts.seed, progress=opts.progress, augment=opts.augment, distill=labels,
              device=opts.device)
        rows.append({"config": g.to_dict(), "plain": g != s.config,
                     "val_accuracy_inherited": by_config[g].accuracy,
                     "val_accuracy_proxy": evaluate(net, xs[va], y[va])})
    best = trainees[best_of([r["val_accuracy_proxy"] for r in rows])][0]
    return [by_config[best]], rows


def plain_scorer(space, cm, accuracy, generation: int):
    """config -> its shape's plain variant (mcuc.nas.proxy.plain_variant) as a Candidate
    scored like the evolution's (cost model, inherited accuracy; counted in the last
    generation, origin "plain"), or None."""
    from mcuc.nas.evolution import Candidate
    from mcuc.nas.proxy import plain_variant

    def score(cfg):
        g = plain_variant(space, cfg, lambda f: cm.cost(f).fits, lambda f: cm.cost(f).macs)
        return None if g is None else Candidate(g, cm.cost(g), accuracy(g), generation, "plain")
    return score


def family_finalists(candidates: list, k: int) -> list:
    """The best candidate of each token family (resolution, patch), best first, at most k.

    Why: inherited weights rank few-token models high (they converge fastest inside the
    supernet), while many-token models gain the most from a long fine-tune (measured on
    the Fashion-MNIST test set after 30 distilled epochs: the 64 KB patch-7 pick 89.07%,
    a patch-4 dim-64 depth-4 ViT 90.23% with crops and flips); so each family's best is
    fine-tuned and the held-out images decide across families. Equal accuracy: the one
    with less RAM, then fewer MACs (evolution.rank_key, as the evolution's own best; a
    costlier equal would not be on the Pareto front). (Measured at 64 KB: the
    patch-4 finalist, narrow and low-rank, lost to the patch-7 one, 88.70% vs 89.18%
    held-out; ranking inside a family is the open problem, see docs/search.md.)"""
    from mcuc.nas.evolution import rank_key

    best: dict[tuple[int, int], object] = {}
    for c in sorted(candidates, key=rank_key):   # equal accuracy: the cheaper first
        best.setdefault((c.config.resolution, c.config.patch), c)
    return list(best.values())[:k]


def _instructions_part(b: dict) -> str:
    """The pick's predicted instructions: from its real quantization where the search
    compiled it (what its build reports), beside the ranking estimate (dummy scales,
    which cannot show data-dependent loops such as the residual add's path)."""
    est, real = b["cost"].get("instructions"), b.get("compiled", {}).get("predicted_instructions")
    if real and est:
        return f", {real:,} instructions predicted ({est:,} by the search's estimate)"
    return f", {est:,} instructions predicted" if est else ""


def summary_line(summary: dict, result) -> str:
    b = summary["best"]
    acc = b["val_accuracy_finetuned"] or b["val_accuracy_inherited"]
    g = b["config"]
    return (f"best: resolution {g['resolution']}, patch {g['patch']}, dim {g['dim']}, depth "
            f"{g['depth']}: held-out accuracy {100 * acc:.2f}%, arena "
            f"{b['cost']['arena_bytes']:,} B, RAM {b['cost']['ram_bytes']:,} / "
            f"{summary['sram_limit']:,} B, flash {b['cost']['flash_bytes']:,} / "
            f"{summary['flash_limit']:,} B, {b['cost']['macs']:,} MACs"
            + _instructions_part(b) + "; "
            f"{len(result.candidates)} candidates in {summary['search_seconds']:.0f} s "
            f"({result.candidates_per_s:.1f} costed/s)")

