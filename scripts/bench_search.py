"""`make bench-search`: searched ViTs against a uniform-ViT baseline at four SRAM budgets.

One supernet is trained for all budgets, on a pool of subnets feasible at each budget:
each budget's share gets an equal part of the draws (so the 16 KB subnets are not
drowned by the 128 KB ones), weighted by MACs within it (`--sampling`). For each budget
`mcuc search` runs on it (evolution scored on held-out training images); the best
candidate of each of the `--finalists` token families (patch sizes), with its inherited
weights, is fine-tuned alone for E epochs (or, with `--init scratch`, retrained from
scratch with the baselines' recipe: the search then picks the architecture only), and
the finalist with the best held-out accuracy after its training is the searched model
(a model that two budgets share is trained once). With `--shared-finalists` a budget
also weighs the other budgets' finalists that fit it: the budgets nest, so one run's
searches pool what they found, and the choice is still made on held-out images only.
The baseline is the uniform ViT (2 heads, MLP ratio 2, full rank in every block) of a
small grid (patch 4/7 x dim 32-128 x depth 2/4/6) with the most MACs that fits the
same budget -- the usual "scale it up until it no longer fits" rule -- trained from
scratch for the same E epochs with the same recipe (and, with `--distill-epochs`, the
same CNN teacher's labels). With `--baseline best` it is instead the grid model that
fits with the best held-out accuracy after the proxy training the search's shapes get
(every grid model that fits, trained --proxy-epochs from scratch): the best uniform ViT
of the grid, picked the way the search picks. The supernet's own epochs are the
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
from pathlib import Path

from bench_search_proxy import proxy_pick
from bench_search_report import NATIVE
from bench_search_report import report as _report
from bench_search_stages import (
    BASELINE_LR,
    KB,
    Ctx,
    finalists,
    measured,
    search,
    search_score,
    setup,
    supernet,
    trained,
)
from mcuc import McucError
from mcuc.nas.recipe import add_recipe_args, resolve
from mcuc.nas.space import SubnetConfig, load_space

__all__ = ["BASELINE_LR", "KB", "main", "run"]

BUDGETS_KB = (16, 32, 64, 128)
GRID = {"patch": (4, 7), "dim": (32, 48, 64, 96, 128), "depth": (2, 4, 6)}
PARTS = ("all", "train", "supernet", "search", "proxy", "finetune", "baselines", "grid")


def uniform_grid(space, dims=None) -> list[SubnetConfig]:
    """Uniform ViTs: 2 heads, MLP ratio 2, full rank in every block (`dims`: the widths,
    default GRID's)."""
    return [SubnetConfig(NATIVE, p, d, n, (2,) * n, (2.0,) * n, (1.0,) * n,
                         space.in_chans, space.num_classes)
            for p in GRID["patch"] for d in dims or GRID["dim"] for n in GRID["depth"]]


def baseline_config(space, cost_model, dims=None) -> SubnetConfig | None:
    fits = [c for c in uniform_grid(space, dims) if cost_model.cost(c).fits]
    return max(fits, key=lambda c: cost_model.cost(c).macs) if fits else None


def grid_fits(c: Ctx, budgets) -> list[SubnetConfig]:
    """The grid models that fit any of `budgets`, in grid order (`--part grid` indices)."""
    return [g for g in uniform_grid(c.space, getattr(c.a, "grid_dims", None))
            if any(c.models[b].cost(g).fits for b in budgets)]


def pick_baseline(c: Ctx, b: int) -> tuple[SubnetConfig | None, list[dict] | None]:
    """Budget b's baseline and, with --baseline best, the grid's proxy records (every
    grid model that fits, trained --proxy-epochs; the best held-out one is the pick, the
    first in grid order on a tie)."""
    if c.a.baseline == "rule":
        return baseline_config(c.space, c.models[b], getattr(c.a, "grid_dims", None)), None
    fits = grid_fits(c, [b])
    recs = [{"config": g.to_dict(), **trained(c, "proxy", g)[1]} for g in fits]
    if not recs:
        return None, recs
    best = max(range(len(recs)), key=lambda i: (recs[i]["val_acc"], -i))
    return fits[best], recs


def run(a: argparse.Namespace) -> str | None:
    """Run `a.part` of the bench; the report (for parts "all") or None."""
    import torch

    torch.set_num_threads(a.threads)
    c = setup(a)
    budgets = a.only or a.budgets
    if a.part == "grid":   # --baseline best's proxies, one or all (no supernet needed)
        grid = grid_fits(c, budgets)
        for g in grid if a.finalist is None else grid[a.finalist:a.finalist + 1]:
            trained(c, "proxy", g)
        return None
    if a.part in ("all", "train", "supernet"):
        supernet(c)
    rows = []
    founds: dict[int, dict] = {}
    if a.part in ("all", "train", "search", "finetune", "proxy"):
        # pooled picks need every budget's search; a search or one finalist only its own
        pooled = a.shared_finalists and a.part != "search" and (
            a.finalist is None or a.proxy_epochs > 0)
        founds = {b: search(c, b) for b in (a.budgets if pooled else budgets)}
    fins = {b: finalists(c, f) for b, f in founds.items()}
    for b in budgets:
        row: dict = {"budget_kb": b}
        if a.part == "proxy":
            proxy_pick(c, b, founds, a.finalist)
        elif founds:
            if a.part == "all":
                Path(a.bench_dir).mkdir(parents=True, exist_ok=True)
                shutil.copy(c.out / f"sram{b}k" / "pareto.png",
                            Path(a.bench_dir) / f"search_pareto_{b}k.png")
            proxies = None
            if a.part == "search":   # the searches only: proxies and picks are later parts
                picks = []
            elif a.proxy_epochs:
                best, proxies = proxy_pick(c, b, founds)
                picks = [best] if best is not None else []
            elif a.finalist is not None:
                picks = fins[b][a.finalist:a.finalist + 1]
            else:
                picks = candidates(c, b, fins)
            if picks:   # a budget may have fewer families
                row["searched"] = pick_searched(c, b, founds, fins, picks, proxies)
        if a.part in ("all", "train", "baselines"):
            cfg, grid = pick_baseline(c, b)
            row["baseline"] = None
            if cfg is not None and only_repeat(c):   # that seed alone, no row to report
                row["baseline"] = {"repeats": again(c, "baseline", cfg)}
            elif cfg is not None:
                base = (measured(c, "baseline", cfg) if a.part == "all"
                        else trained(c, "baseline", cfg)[1])
                row["baseline"] = {**base, "repeats": again(c, "baseline", cfg),
                                   "first_budget": c.first.setdefault(("baseline", cfg), b)}
                if grid is not None:
                    row["baseline"]["grid"] = grid
                if a.proxy_check:   # how the proxy would rank the baseline
                    row["baseline"]["proxy"] = trained(c, "proxy", cfg)[1]
        rows.append(row)
    if a.part != "all":
        return None
    (c.out / "bench.json").write_text(json.dumps(rows, indent=1))
    sn = supernet(c)
    return report(a, rows, sn.train_seconds, sn.pool_size, c.teacher, machine=a.machine)


def report(a, rows: list[dict], supernet_s: float, pool: int, teacher: dict | None = None,
           **kw) -> str:
    """bench/search.md's text, with this module's docstring as the method section."""
    return _report(a, rows, supernet_s, pool, teacher, method=__doc__, **kw)


def train_config(a: argparse.Namespace, cfg: SubnetConfig, rep: int = 0) -> dict:
    """Train and measure one given config as this bench trains a searched model (same
    recipe, teacher, split and cache), for a pick made outside a full run, e.g. by a
    one-budget `--proxy-plain` run. Its table row plus the predicted arena."""
    import torch

    load_space(a.space).check(cfg)   # before setup, which may train the teacher
    torch.set_num_threads(a.threads)
    c = setup(a)
    if a.part == "all":
        row = measured(c, "searched", cfg, rep)
    else:   # train: no measuring
        row = trained(c, "searched", cfg, rep)[1]
    cost = c.models[max(a.budgets)].cost(cfg)
    return {"config": cfg.to_dict(), "arena": cost.arena_bytes, "fits": cost.fits, **row}


def only_repeat(c: Ctx) -> bool:
    """--repeat I > 0 outside --part all: train that seed alone (another process may be
    training seed 0 at the same time)."""
    return c.a.part != "all" and bool(c.a.repeat)


def again(c: Ctx, kind: str, cfg: SubnetConfig, board: str | None = None) -> list[dict]:
    """Repeats 1.. of a table model (--repeats: the same recipe, another training seed),
    measured (on `board`: stages.measured) when the part is "all"; with --repeat only that
    one is trained."""
    if c.a.repeat is None:
        reps = range(1, c.a.repeats)
    else:   # repeat 0 is the table row itself
        reps = [c.a.repeat] if c.a.repeat > 0 else []
    if c.a.part == "all":
        return [measured(c, kind, cfg, r, board) for r in reps]
    return [trained(c, kind, cfg, r)[1] for r in reps]


def candidates(c: Ctx, b: int, fins: dict[int, list[SubnetConfig]]) -> list[SubnetConfig]:
    """Budget b's finalists; with --shared-finalists also every other budget's finalist
    that fits b (budgets nest: a 16 KB model fits 32 KB, and a 64 KB search may find a
    model that fits 32 KB which the 32 KB search missed). Own finalists first."""
    if not c.a.shared_finalists:
        return fins[b]
    fits = c.models[b].cost
    others = [g for bb, gs in sorted(fins.items()) if bb != b for g in gs if fits(g).fits]
    return list(dict.fromkeys(fins[b] + others))


def pick_searched(c: Ctx, b: int, founds: dict[int, dict], fins: dict[int, list[SubnetConfig]],
                  picks: list[SubnetConfig], proxies: list[dict] | None = None,
                  board: str | None = None) -> dict:
    """Fine-tune each finalist; the searched model is the best on held-out images after
    it (the search's own order breaks ties), measured (on `board`: stages.measured) when
    the part is "all". With `proxies` (their records) the one pick is the proxies' best."""
    if only_repeat(c):
        if len(picks) != 1:
            raise McucError(f"{b} KB: --repeat {c.a.repeat} needs the pick made: run "
                            "--repeat 0 first, or pick with --proxy-epochs or --finalist")
        return {"repeats": again(c, "searched", picks[0], board)}
    recs = [(cfg, trained(c, "searched", cfg)[1]) for cfg in picks]
    cfg, rec = max(recs, key=lambda r: r[1]["val_acc"])
    row = measured(c, "searched", cfg, 0, board) if c.a.part == "all" else dict(rec)
    row["repeats"] = again(c, "searched", cfg, board)
    # a proxy's record has its inherited accuracy (a plain variant is in no search)
    scored = {SubnetConfig.from_dict(p["config"]): p["inherited_acc"] for p in proxies or []}
    found_at = dict.fromkeys(fins[b], b)   # the search each came from: own first
    for p in proxies or []:
        found_at.setdefault(SubnetConfig.from_dict(p["config"]), p["found_at"])
    for bb, gs in sorted(fins.items()):
        for g in gs:
            found_at.setdefault(g, bb)
    row.update(config=cfg.to_dict(), search_s=founds[b]["meta"]["search_seconds"],
               inherited_acc=scored[cfg] if cfg in scored
               else search_score(founds[found_at[cfg]], cfg),
               candidates=len(founds[b]["candidates"]),
               finalists=[{"config": g.to_dict(), "found_at": found_at[g], **r}
                          for g, r in recs],
               first_budget=c.first.setdefault(("searched", cfg), b))
    if proxies is not None:
        row["proxies"] = proxies
    return row


def arg_parser() -> argparse.ArgumentParser:
    """The bench's flags: its own, and the search recipe's (mcuc.nas.recipe, the same
    definition `mcuc search` adds)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS_KB),
                    help="SRAM budgets in KB (the supernet is trained for all of them)")
    ap.add_argument("--only", type=int, nargs="+", default=None,
                    help="run these of --budgets only (parts run as separate processes)")
    ap.add_argument("--part", choices=PARTS, default="all",
                    help="all: train what is not cached, measure, write the report; train: "
                         "no measuring; the others: one stage (for parallel runs)")
    ap.add_argument("--finalist", type=int, default=None,
                    help="with --part finetune or proxy: only this finalist or proxy shape "
                         "(0 = the best)")
    ap.add_argument("--shared-finalists", action="store_true",
                    help="each budget also weighs the other budgets' finalists that fit it")
    ap.add_argument("--baseline", choices=("rule", "best"), default="rule",
                    help="rule: the grid model with the most MACs that fits; best: the grid "
                         "model that fits with the best held-out proxy (needs --proxy-epochs)")
    ap.add_argument("--grid-dims", type=int, nargs="+", default=None,
                    help=f"the baselines' grid widths (default {' '.join(map(str, GRID['dim']))})")
    ap.add_argument("--proxy-check", action="store_true",
                    help="train each baseline as a proxy too, to report whether the proxy "
                         "orders searched and baseline as their full training does")
    ap.add_argument("--repeats", type=int, default=1,
                    help="train each table model (searched and baseline) this many times, "
                         "training seeds --seed, --seed+1, ...; the table gives the means")
    ap.add_argument("--repeat", type=int, default=None,
                    help="train only this repeat (0 = --seed) of each table model "
                         "(for parallel processes)")
    ap.add_argument("--test-limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--fw-images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where supernet, teacher and fine-tunes train")
    ap.add_argument("--machine", default="this project's 2-core CPU machine",
                    help="where the run was made, for the report")
    ap.add_argument("--out", default="runs/bench-search")
    ap.add_argument("--bench-dir", default="bench")
    ap.add_argument("--space", default=None,
                    help="search space TOML (default: the bundled Fashion-MNIST space); the "
                         "baselines' grid stays at the native 28x28")
    add_recipe_args(ap)   # the training and search recipe: the options mcuc search has
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's flags, checked, the recipe resolved (scripts/bench_config.py reuses
    them)."""
    ap = arg_parser()
    a = ap.parse_args(argv)
    resolve(a)
    if a.only and not set(a.only) <= set(a.budgets):
        ap.error(f"--only {a.only} must be among --budgets {a.budgets}")
    if a.finalist is not None and a.part not in ("finetune", "proxy", "grid"):
        ap.error("--finalist goes with --part finetune, proxy or grid")
    if a.baseline == "best" and a.proxy_epochs <= 0:
        ap.error("--baseline best needs --proxy-epochs")
    if a.part == "grid" and a.baseline != "best":
        ap.error("--part grid goes with --baseline best")
    if a.part == "proxy" and a.proxy_epochs <= 0:
        ap.error("--part proxy needs --proxy-epochs")
    if a.proxy_check and a.proxy_epochs <= 0:
        ap.error("--proxy-check needs --proxy-epochs")
    if a.proxy_plain and a.proxy_epochs <= 0:
        ap.error("--proxy-plain needs --proxy-epochs")
    if a.repeats < 1 or (a.repeat is not None and not 0 <= a.repeat < a.repeats):
        ap.error("--repeats must be >= 1 and --repeat in 0..repeats-1")
    if a.repeat is not None and a.part == "all":
        ap.error("--repeat goes with a part other than all (all measures every repeat)")
    if a.proxy_epochs < 0 or a.proxy_shapes < 1:
        ap.error("--proxy-epochs must be >= 0 and --proxy-shapes >= 1")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    try:
        text = run(a)
    except McucError as e:
        raise SystemExit(f"mcuc: error: {e}") from None
    if text is None:
        return
    path = Path(a.bench_dir) / "search.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
