"""The stages of `make bench-search`, each cached under OUT so that a rerun, or the same
stage in another process or on another machine, picks up what is already there:
the teacher (teacher.npz), the supernet (supernet.pt), each budget's search
(sram<B>k/search.json), each trained model (models/<kind>_<config>.pt, with the recipe
that trained it) and its measurements (beside it, .measure.json)."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench_search_measure import Limits, measure
from mcuc.nas.space import SubnetConfig
from mcuc.resize import resize_images

KB = 1024
FLASH = 256 * KB
BASELINE_LR = 2e-3  # models/train.train's default, tuned for training from scratch


# Bumped when the compiler's int8 numerics change, so that cached measurements are redone:
# 2 = weight scales lifted where an int32 bias would overflow (quant.qparams.quantize_weighted).
NUMERICS = 2


# ----------------------------------------------------------------------------- the run

def budget_limits(b: int) -> Limits:
    """SRAM budget b KB on the F746 with the bench's 256 KB of flash and no time limit."""
    return Limits("stm32f746", b * KB, FLASH, None, f"sram{b}k")


@dataclass
class Ctx:
    """What every stage shares: the data split, the cost models, the teacher's labels.

    Each stage caches its result under `out` (supernet.pt, sram<B>k/search.json,
    models/<kind>_<config>.pt), so the stages can run as separate processes (several at
    once on one GPU: bench/search_gpu.sh) and a rerun picks up what is already there."""
    a: argparse.Namespace
    out: Path
    space: object
    x: np.ndarray
    y: np.ndarray
    tr: np.ndarray
    va: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    val: int
    models: dict
    teacher: dict | None
    limits: dict = field(default_factory=dict)  # key (budget KB, or a row's name) -> Limits
    first: dict = field(default_factory=dict)   # (kind, config) -> first budget using it
    sn: object = None                           # the supernet, once loaded or trained

    @property
    def labels(self) -> np.ndarray | None:
        return None if self.teacher is None else self.teacher["labels"]


def setup(a: argparse.Namespace, limits: dict | None = None) -> Ctx:
    """The shared context; `limits` by key (default: --budgets on the F746)."""
    from mcuc.datasets import load_fashion_mnist
    from mcuc.nas.space import load_space
    from mcuc.nas.train import holdout_split

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_fashion_mnist("train", limit=a.limit)
    x_test, y_test = load_fashion_mnist("test", limit=a.test_limit)
    val = max(1, len(x) // 12)
    tr, va = holdout_split(len(x), val, a.seed)
    limits = limits if limits is not None else {b: budget_limits(b) for b in a.budgets}
    models = {k: lim.cost_model() for k, lim in limits.items()}
    teacher = distill_labels(a, out, x[tr], y[tr], x_test, y_test)
    return Ctx(a, out, load_space(a.space), x, y, tr, va, x_test, y_test, val, models, teacher,
               limits)


def supernet_settings(c: Ctx):
    from mcuc.nas.train import TrainSettings

    return TrainSettings(epochs=c.a.epochs, seed=c.a.seed, augment=c.a.augment,
                         sampling=c.a.sampling,
                         distill_weight=0.5 if c.a.distill_supernet and c.teacher else 0.0)


def _pool(c: Ctx) -> dict[SubnetConfig, float]:
    """The supernet's training pool and draw weights: each budget's share of configs
    that fit it, by the compiler's cost (so a compiler that allocates differently draws
    a different pool)."""
    from mcuc.nas.train import feasible_pool, sampling_weights

    a = c.a
    draw: dict[SubnetConfig, float] = {}
    n = len(c.models)
    for b, model in c.models.items():
        cost = model.cost
        # a budget's draw seed is --seed + its KB; a row's, + a digest of its name
        offset = b if isinstance(b, int) else zlib.crc32(str(b).encode()) % 100_000
        share = feasible_pool(c.space, lambda g, f=cost: f(g).fits, max(1, a.pool // n),
                              a.seed + offset)
        for g, w in zip(share, sampling_weights(share, lambda g, f=cost: f(g).macs, a.sampling),
                        strict=True):
            draw[g] = draw.get(g, 0.0) + w / n
    return draw


def supernet(c: Ctx):
    """The trained supernet: loaded when OUT/supernet.pt has all its epochs under the
    same settings and pool (the pool is drawn again, seconds), else trained or resumed."""
    import dataclasses

    from mcuc.nas.train import CHECKPOINT, load_checkpoint, load_supernet, train_supernet

    if c.sn is not None:
        return c.sn
    settings = supernet_settings(c)
    path = c.out / CHECKPOINT
    draw = _pool(c)
    resume = True
    if path.is_file():
        ck = load_checkpoint(path)
        # A pool the compiler no longer draws (it allocates differently now): start anew.
        resume = ck["pool"] == [g.to_dict() for g in draw]
        if resume and ck["epoch"] >= settings.epochs \
                and ck["settings"] == dataclasses.asdict(settings):
            c.sn, _ = load_supernet(path)
            c.sn.train_seconds = ck["seconds"]
            c.sn.pool_size = len(ck["pool"] or ())
            return c.sn
        if not resume:
            print(f"{path}: trained on a pool the compiler's costs no longer give; "
                  "training the supernet anew")
    a = c.a
    lims = c.limits.values()
    meta = {"dataset": "fashion-mnist", "limit": a.limit, "val": c.val,
            "board": ",".join(sorted({m.board for m in lims})),
            "sram": max(m.sram for m in lims), "flash": max(m.flash for m in lims),
            "device": device_name(a.device)}
    model = train_supernet(c.space, c.x[c.tr], c.y[c.tr], settings, list(draw), a.device,
                           path, resume=resume, meta=meta, weights=list(draw.values()),
                           distill=c.labels if settings.distill_weight else None)
    model.pool_size = len(draw)
    c.sn = model
    return model


def search(c: Ctx, b: int) -> dict:
    """`mcuc search` under limits b (cached in OUT/sram<b>k, or OUT/<row name>, when run
    with these options)."""
    from mcuc.nas.search import SearchOptions, run_search
    from mcuc.nas.train import CHECKPOINT

    a = c.a
    lim = c.limits[b]
    work = c.out / lim.name
    opts = SearchOptions(board=lim.board, sram=lim.sram, flash=lim.flash, latency_ms=lim.ms,
                         limit=a.limit, val=c.val,
                         supernet=str(c.out / CHECKPOINT), population=a.population,
                         generations=a.generations, seed=a.seed, device=a.device,
                         space=a.space, extra={"command": "bench-search"})
    found = _cached_search(work, opts)
    if found is not None and _costs_agree(c, b, found):
        return found
    supernet(c)   # trained (or checked complete) before the search loads it
    run_search(opts, work)
    return json.loads((work / "search.json").read_text())


_NOT_COMPARED = ("device", "progress")   # how a search ran, not what it found


def _costs_agree(c: Ctx, b: int, found: dict) -> bool:
    """Does the compiler still give every candidate of a cached search the cost it
    recorded? (A compiler change that allocates differently makes the search stale.)"""
    model = c.models[b]
    for cand in found["candidates"]:
        now = model.cost(SubnetConfig.from_dict(cand["config"])).to_dict()
        if any(now[k] != v for k, v in cand["cost"].items()):
            return False
    return True


def _cached_search(work: Path, opts) -> dict | None:
    from dataclasses import asdict

    from mcuc.nas.search import SearchOptions

    path = work / "search.json"
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    old = found["meta"].get("options", {})
    default = asdict(SearchOptions())   # an option newer than the file ran at its default
    same = all(old.get(k, default[k]) == v for k, v in asdict(opts).items()
               if k not in _NOT_COMPARED + ("extra",))
    return found if same else None


def finalists(c: Ctx, found: dict) -> list[SubnetConfig]:
    """The configs to fine-tune for one budget: each token family's best candidate."""
    from mcuc.nas.search import family_finalists

    cands = [SimpleNamespace(config=SubnetConfig.from_dict(d["config"]), accuracy=d["accuracy"],
                             cost=SimpleNamespace(**d["cost"]))   # ties: evolution.rank_key
             for d in found["candidates"]]
    return [f.config for f in family_finalists(cands, c.a.finalists)]


def _inherits(c: Ctx, kind: str) -> bool:
    """Does this model start from the supernet's weights (else from scratch)?"""
    return kind == "searched" and c.a.finetune_init == "inherited"


def model_path(c: Ctx, kind: str, cfg: SubnetConfig, rep: int = 0) -> Path:
    """Where a bench model is cached; repeat `rep` > 0 (--repeats) gets its own file."""
    tag = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    stem = "searched-scratch" if kind == "searched" and not _inherits(c, kind) else kind
    suffix = f"_r{rep}" if rep else ""
    return c.out / "models" / f"{stem}_p{cfg.patch}_d{cfg.dim}_L{cfg.depth}_{tag}{suffix}.pt"


def partial_path(path: Path) -> Path:
    """Where a bench model's training keeps its state after each epoch until it ends."""
    return path.with_name(path.stem + ".partial.pt")


def recipe(c: Ctx, kind: str, rep: int = 0) -> dict:
    """Everything that decides a trained model's weights: a cached model is reused only
    under the same recipe. Repeat `rep` differs in its training seed only (the held-out
    split, teacher and supernet keep --seed)."""
    a = c.a
    inherit = _inherits(c, kind)
    epochs = a.proxy_epochs if kind == "proxy" else a.finetune_epochs
    r = {"epochs": epochs, "augment": a.augment, "seed": a.seed + rep,
         "distill_epochs": a.distill_epochs, "limit": a.limit,
         "lr": a.finetune_lr if inherit else BASELINE_LR, "teacher": teacher_tag(c)}
    if inherit:
        r["supernet"] = {**vars(supernet_settings(c)), "pool": a.pool,
                         "budgets": list(c.models)}
    return r


def teacher_tag(c: Ctx) -> str | None:
    """A digest of the teacher's labels: models trained on one teacher's labels are not
    reused under another's (two runs of the teacher's recipe once gave 92.24% and 91.98%)."""
    if c.labels is None:
        return None
    return hashlib.sha1(np.ascontiguousarray(c.labels, dtype=np.int64).tobytes()).hexdigest()[:12]


def load_trained(path: Path):
    """(net in eval mode, checkpoint: config, recipe, record) of a cached bench model."""
    from mcuc.models.train import load_state
    from mcuc.nas.subnet import SubnetViT

    ck = load_state(path, "bench model")
    net = SubnetViT(SubnetConfig.from_dict(ck["config"]))
    net.load_state_dict(ck["state_dict"])
    return net.eval(), ck


def trained(c: Ctx, kind: str, cfg: SubnetConfig, rep: int = 0):
    """(net, record): `cfg` trained for the bench (from its inherited weights when
    searched with --init inherited, else from scratch; a "proxy" for --proxy-epochs;
    with training seed --seed + rep), or the cached result of an earlier run."""

    from mcuc.models.train import evaluate, seed_everything, train
    from mcuc.nas.subnet import SubnetViT
    from mcuc.nas.train import save_checkpoint

    path = model_path(c, kind, cfg, rep)
    want = recipe(c, kind, rep)
    if path.is_file():
        net, ck = load_trained(path)
        if ck["recipe"] == want:
            return net, ck["record"]
    inherit = _inherits(c, kind)
    if not inherit:
        seed_everything(want["seed"])  # torch seeds each process at random: seed the init
    net = supernet(c).extract(cfg) if inherit else SubnetViT(cfg)
    x = resize_images(c.x, cfg.resolution)
    inherited = evaluate(net, x[c.va], c.y[c.va]) if inherit else None
    t0 = time.perf_counter()
    # an interrupted training (a session's end) goes on from its last epoch on a rerun
    path.parent.mkdir(parents=True, exist_ok=True)
    train(net, x[c.tr], c.y[c.tr], want["epochs"], lr=want["lr"], seed=want["seed"],
          augment=c.a.augment, distill=c.labels, device=c.a.device,
          resume=partial_path(path), resume_key={"config": cfg.to_dict(), "recipe": want})
    record = {"train_s": time.perf_counter() - t0, "device": device_name(c.a.device),
              "val_acc": evaluate(net, x[c.va], c.y[c.va]), "inherited_val_acc": inherited}
    save_checkpoint(path, {"config": cfg.to_dict(), "state_dict": net.state_dict(),
                           "recipe": want, "record": record})
    return net.eval(), record


def measured(c: Ctx, kind: str, cfg: SubnetConfig, rep: int = 0, board: str | None = None
             ) -> dict:
    """`trained` plus `measure`, the measurement cached beside the model. `board`: build
    for that board (the board rows' measurements, cached apart); None: the F746 as
    --budgets measures."""
    net, record = trained(c, kind, cfg, rep)
    model = next(m for m in c.models.values() if m.board.name == (board or "stm32f746"))
    path = model_path(c, kind, cfg, rep).with_suffix(
        ".measure.json" if board is None else f".{board}.measure.json")
    # The predicted arena stands for the compiler's memory plan: when it changes, the
    # measured RAM would too.
    key = {"recipe": recipe(c, kind, rep), "fw_images": c.a.fw_images, "test_limit": c.a.test_limit,
           "numerics": NUMERICS, "arena": model.cost(cfg).arena_bytes}
    if board is not None:
        key["board"] = board
    if path.is_file():
        old = json.loads(path.read_text())
        if old["key"] == key:
            return {**old["row"], **record}
    calib = c.x[c.tr][np.random.default_rng(c.a.seed).choice(len(c.tr), 64, replace=False)]
    t0 = time.perf_counter()
    row = measure(net, cfg, path.with_suffix("").with_suffix(""),
                  resize_images(calib, cfg.resolution), resize_images(c.x_test, cfg.resolution),
                  c.y_test, c.a.fw_images, board or "stm32f746")
    row["measure_s"] = time.perf_counter() - t0
    path.write_text(json.dumps({"key": key, "row": row}, indent=1))
    return {**row, **record}


def device_name(device: str) -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if device == "cuda" else "cpu"


def search_score(found: dict, cfg: SubnetConfig) -> float:
    """The held-out accuracy the search gave `cfg` with inherited weights."""
    want = cfg.to_dict()
    return next(d["accuracy"] for d in found["candidates"]
                if SubnetConfig.from_dict(d["config"]).to_dict() == want)


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
    net, labels = distill_targets(x, y, a.distill_epochs, seed=a.seed,
                                  device=getattr(a, "device", "cpu"))
    found = {"labels": labels, "key": key,
             "test_acc": np.float64(evaluate(net, x_test, y_test)),
             "seconds": np.float64(time.perf_counter() - t0)}
    np.savez(path, **found)
    return found
