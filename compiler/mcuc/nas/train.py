"""Train the one-shot supernet: one sampled subnet per step (AutoFormer-style).

Why one subnet a step and not the sandwich rule: on a CPU every forward counts, and the
sandwich rule's largest/smallest subnets are mostly ones the budget rules out anyway.
Subnets are drawn from a *pool of configs that fit the budget* (sized by the compiler's
own cost model), so the shared weights are trained for the subnets the search can pick.
The draw is weighted by each subnet's MACs (`sampling="macs"`, the default) or uniform:
under a uniform draw the small subnets, which converge fastest, end up better trained
than the large ones, and inherited-weight accuracy then ranks small subnets too high
(measured: bench/search.md). The subnet of step k is drawn from a RNG seeded by
(seed, k): every DDP rank trains the same subnet on its own shard of the batch, and a
resumed run draws what the original would have drawn.

No augmentation by default: a supernet is far from overfitting (each subnet sees a
small share of the steps), and random crops and flips slowed short runs down (3 epochs
of the default ViT: 79.5% test accuracy with them, 84.6% without).

Runs in one process or under torchrun (DistributedDataParallel; gloo on CPU, nccl on
CUDA):  torchrun --nproc_per_node=2 -m mcuc.nas.train --out runs/supernet
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mcuc import McucError
from mcuc.models.train import (
    Batches,
    check_distill,
    distilled,
    load_state,
    make_optimizer,
    one_cycle,
    optimizer_step,
    resolve_device,
    save_checkpoint,
    seed_everything,
)
from mcuc.nas.space import (
    SAMPLING,
    SearchSpace,
    SubnetConfig,
    check_sampling,
    load_space,
    parse_space,
)
from mcuc.nas.supernet import SuperViT

CHECKPOINT = "supernet.pt"


@dataclass
class TrainSettings:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: bool = False
    warmup_frac: float = 0.1
    seed: int = 0
    sampling: str = "macs"   # "macs" (weighted by each subnet's MACs) or "uniform"
    distill_weight: float = 0.0  # share of the loss on a teacher's labels (models/teacher.py)

    def __post_init__(self) -> None:
        check_sampling(self.sampling)
        check_distill(None, 0, self.distill_weight)


# ----------------------------------------------------------------------------- helpers

def holdout_split(n: int, val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded permutation's last `val` images are held out for
    scoring candidates, so the search never looks at the test set."""
    if not 0 < val < n:
        raise McucError(f"held-out split of {val} images needs 0 < val < {n} training images")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - val]), np.sort(perm[n - val:])


def arch_rng(seed: int, step: int) -> random.Random:
    return random.Random(seed * 1_000_003 + step)


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(dist.get_rank(), dist.get_world_size())


def finish_distributed(ok: bool) -> None:
    """Tear the process group down before the interpreter exits: a rank that exits with
    gloo's threads still running can abort ("terminate called without an active
    exception"), seen once in CI. On success the ranks first wait for each other, so
    none leaves while rank 0 still writes the checkpoint."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        if ok:
            td.barrier()
        td.destroy_process_group()


def from_rank0(make: Callable[[], object], dist: Dist):
    """`make()` on rank 0 only, its result (or its McucError, so no rank waits forever)
    sent to every rank: the budget pool costs minutes of compiling, once is enough."""
    if dist.world == 1:
        return make()
    import torch.distributed as td

    box: list[object] = [None]
    if dist.main:
        try:
            box = [make()]
        except McucError as e:
            box = [e]
    td.broadcast_object_list(box, src=0)
    if isinstance(box[0], McucError):
        raise box[0]
    return box[0]


def feasible_pool(space: SearchSpace, fits: Callable[[SubnetConfig], bool], size: int,
                  seed: int, max_draws: int | None = None,
                  progress: bool = False) -> list[SubnetConfig]:
    """Up to `size` distinct configs of `space` that `fits` accepts, drawn uniformly."""
    rng = random.Random(seed)
    pool: dict[SubnetConfig, None] = {}
    draws = 0
    limit = max_draws if max_draws is not None else 50 * size
    with tqdm(total=size, desc="budget pool", disable=not progress, leave=False) as bar:
        while len(pool) < size and draws < limit:
            draws += 1
            cfg = space.sample(rng)
            if cfg not in pool and fits(cfg):
                pool[cfg] = None
                bar.update(1)
    if not pool:
        raise McucError(f"no config of the search space fits the budget ({draws} drawn)")
    return list(pool)


def sampling_weights(pool: list[SubnetConfig], macs: Callable[[SubnetConfig], int],
                     sampling: str) -> list[float]:
    """Draw probabilities for `pool` (summing to 1): proportional to MACs, or equal."""
    raw = [float(macs(c)) if sampling == "macs" else 1.0 for c in pool]
    total = sum(raw)
    return [w / total for w in raw]


# ----------------------------------------------------------------------------- checkpoint

def load_checkpoint(path: Path) -> dict:
    """A supernet checkpoint (models.train.load_state: plain data only, never code)."""
    return load_state(path, "supernet checkpoint")


def load_supernet(path: Path | str) -> tuple[SuperViT, dict]:
    """The trained supernet and its checkpoint metadata (space, settings, split, pool)."""
    ck = load_checkpoint(Path(path))
    space = parse_space(ck["space"], path)
    model = SuperViT(space)
    model.load_state_dict(ck["model"])
    return model.eval(), ck


# ----------------------------------------------------------------------------- training

def train_supernet(space: SearchSpace, x: np.ndarray, y: np.ndarray, settings: TrainSettings,
                   pool: list[SubnetConfig] | None = None, device: str = "cpu",
                   checkpoint: Path | None = None, resume: bool = False,
                   progress: bool = True, meta: dict | None = None,
                   weights: list[float] | None = None,
                   distill: np.ndarray | None = None) -> SuperViT:
    """Train a SuperViT on (x, y); checkpoint after each epoch; resume from `checkpoint`.

    `pool` is the list of subnets to sample from (None: the whole space, uniformly) and
    `weights` their draw probabilities (None: equal; see `sampling_weights`). `meta` is
    stored in the checkpoint (dataset, split) so the search can check it reuses the
    same held-out images. `distill` is a teacher's label per image, mixed into the loss
    with `settings.distill_weight` (as models.train.train does for one model), so every
    subnet learns from the teacher and the ranking reflects a distilled fine-tune.
    """
    if (distill is not None) != (settings.distill_weight > 0):
        raise McucError("a distillation weight needs teacher labels, and labels a weight")
    check_distill(distill, len(x), settings.distill_weight)
    if settings.epochs <= 0:
        raise McucError(f"epochs must be positive, not {settings.epochs}")
    if weights is not None and (pool is None or len(weights) != len(pool)):
        raise McucError("sampling weights need a pool of the same length")
    dev = resolve_device(device)
    dist = init_distributed(dev)
    seed_everything(settings.seed)
    model = SuperViT(space).to(dev)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    data = Batches(x, y, distill, dev)
    per_rank = len(data) // dist.world
    steps = math.ceil(per_rank / settings.batch_size)
    if per_rank == 0:
        raise McucError(f"{len(data)} training images cannot be split over {dist.world} processes")
    opt = make_optimizer(model, settings.lr, settings.weight_decay)
    sched = one_cycle(opt, settings.lr, settings.epochs * steps, settings.warmup_frac)
    gen = torch.Generator().manual_seed(settings.seed)
    start, losses, seconds = 0, [], 0.0
    epoch_seconds: list[float] = []   # per epoch: the first one holds the warm-up
    if resume and checkpoint is not None and checkpoint.is_file():
        ck = load_checkpoint(checkpoint)
        if (ck["space"] != _space_dict(space) or ck["settings"] != dataclasses.asdict(settings)
                or ck.get("weights") != weights):
            raise McucError(f"checkpoint {checkpoint} was trained with another space or "
                            "settings; delete it or drop --resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        start, losses, seconds = ck["epoch"], list(ck["losses"]), ck["seconds"]
        epoch_seconds = list(ck.get("epoch_seconds", []))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    model.train()
    for epoch in range(start, settings.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(data), generator=gen)[: per_rank * dist.world]
        mine = perm[dist.rank::dist.world]
        total, seen = torch.zeros((), device=dev, dtype=torch.float64), 0
        bar = tqdm(range(steps), desc=f"supernet epoch {epoch + 1}/{settings.epochs}",
                   disable=not (progress and dist.main), dynamic_ncols=True)
        for step in bar:
            rng = arch_rng(settings.seed, epoch * steps + step)
            cfg = (space.sample(rng) if pool is None else rng.choice(pool) if weights is None
                   else rng.choices(pool, weights)[0])
            idx = mine[step * settings.batch_size:(step + 1) * settings.batch_size]
            xb, yb, tb = data.get(idx, gen if settings.augment else None)
            out = net(xb, cfg)
            loss = distilled(loss_fn(out, yb), out, tb, settings.distill_weight)
            total += optimizer_step(model, loss, opt, sched).double() * len(idx)
            seen += len(idx)
            if not bar.disable and (step % 20 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{total.item() / seen:.4f}", dim=cfg.dim, depth=cfg.depth)
        losses.append(total.item() / max(seen, 1))
        epoch_seconds.append(time.perf_counter() - t0)
        seconds += epoch_seconds[-1]
        if checkpoint is not None and dist.main:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1,
                "losses": losses, "seconds": seconds, "epoch_seconds": epoch_seconds,
                "space": _space_dict(space),
                "settings": dataclasses.asdict(settings), "world": dist.world,
                "pool": [c.to_dict() for c in pool] if pool is not None else None,
                "weights": weights,
                "meta": meta or {}})
    model.eval()
    model.train_losses = losses  # type: ignore[attr-defined]
    model.train_seconds = seconds  # type: ignore[attr-defined]
    return model


def _space_dict(space: SearchSpace) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(space).items()}


@torch.no_grad()
def subnet_accuracy(model: SuperViT, cfg: SubnetConfig, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int = 1000) -> float:
    """Top-1 accuracy of one subnet with inherited weights (no retraining: the
    supernet has no BatchNorm, so no statistics to recalibrate)."""
    model.eval()
    hits = 0
    for i in range(0, len(x), batch_size):
        hits += int((model(x[i:i + batch_size], cfg).argmax(1) == y[i:i + batch_size]).sum())
    return hits / len(x)


# ----------------------------------------------------------------------------- torchrun CLI

def main(argv: list[str] | None = None) -> int:
    from mcuc.datasets import load_dataset
    from mcuc.nas.cost import CostModel
    from mcuc.nas.units import size_arg

    ap = argparse.ArgumentParser(prog="python -m mcuc.nas.train",
                                 description="train the mcuc one-shot supernet "
                                             "(one process, or several under torchrun)")
    ap.add_argument("--dataset", default="fashion-mnist",
                    help="fashion-mnist or an image-folder path")
    ap.add_argument("--limit", type=int, default=None, help="use the first N training images")
    ap.add_argument("--val", type=int, default=None,
                    help="images held out for the search (default: 1/12 of the train split)")
    ap.add_argument("--space", default=None, help="search-space TOML (default: bundled)")
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--sram", type=size_arg, default=None)
    ap.add_argument("--flash", type=size_arg, default=None)
    ap.add_argument("--pool", type=int, default=500, help="budget-feasible subnets to train")
    ap.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    ap.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    ap.add_argument("--lr", type=float, default=TrainSettings.lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action="store_true",
                    help="random crops and flips (pays off only in long runs)")
    ap.add_argument("--sampling", choices=SAMPLING, default=TrainSettings.sampling,
                    help="subnet draw: weighted by MACs (default) or uniform")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", type=Path, required=True, help="folder for supernet.pt")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/supernet.pt")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    ok = False
    try:
        space = load_space(a.space)
        x, y, _ = load_dataset(a.dataset, "train", limit=a.limit)
        val = a.val if a.val is not None else max(1, len(x) // 12)
        tr, _ = holdout_split(len(x), val, a.seed)
        cm = CostModel(a.board, a.sram, a.flash)
        settings = TrainSettings(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                                 augment=a.augment, sampling=a.sampling)
        dist = init_distributed(resolve_device(a.device))

        def costed_pool() -> tuple[list[SubnetConfig], list[float]]:
            pool = feasible_pool(space, lambda c: cm.cost(c).fits, a.pool, a.seed,
                                 progress=not a.no_progress)
            return pool, sampling_weights(pool, lambda c: cm.cost(c).macs, a.sampling)

        pool, weights = from_rank0(costed_pool, dist)
        a.out.mkdir(parents=True, exist_ok=True)
        meta = {"dataset": str(a.dataset), "limit": a.limit, "val": val,
                "board": a.board, "sram": cm.sram_limit, "flash": cm.flash_limit}
        train_supernet(space, x[tr], y[tr], settings, pool, a.device, a.out / CHECKPOINT,
                       a.resume, not a.no_progress, meta, weights)
        ok = True
    except McucError as e:
        print(f"mcuc: error: {e}", file=sys.stderr)
        return 2
    finally:
        finish_distributed(ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
