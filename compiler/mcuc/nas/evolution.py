"""Evolutionary search over a SearchSpace under the compiler's memory budget.

AutoFormer/SPOS style: a random feasible population, then generations of mutation and
crossover children of the most accurate candidates so far. Feasibility comes from the
compiler-backed CostModel, so only configs `mcuc build` would accept are ever scored;
accuracy comes from a plain callable, which keeps this module free of torch (the CLI
passes inherited-weight supernet accuracy, tests pass a synthetic function).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcuc import McucError
from mcuc.nas.cost import Cost, CostModel
from mcuc.nas.space import SearchSpace, SubnetConfig

# Children tried per wanted child before a generation gives up on filling up: mutation
# of a small space keeps producing configs already seen, and we must not loop forever.
_CHILD_TRIES = 20


@dataclass
class Candidate:
    """One evaluated, budget-feasible config."""
    config: SubnetConfig
    cost: Cost
    accuracy: float
    generation: int
    origin: str  # "random" | "mutation" | "crossover" | "plain" (mcuc.nas.proxy)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "cost": self.cost.to_dict(),
                "accuracy": self.accuracy, "generation": self.generation,
                "origin": self.origin}


def rank_key(c: Candidate) -> tuple[float, int, int]:
    """Sort key, best first: accuracy, then the cheaper in RAM, then in MACs."""
    return (-c.accuracy, c.cost.ram_bytes, c.cost.macs)


@dataclass
class SearchResult:
    """Everything a search produced; `rejected` counts distinct configs over budget."""
    candidates: list[Candidate]
    best: Candidate
    pareto: list[Candidate]
    rejected: int
    cost_evals: int
    candidates_per_s: float
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, meta: dict | None = None) -> dict[str, Any]:
        stats = {"candidates": len(self.candidates), "rejected": self.rejected,
                 "cost_evals": self.cost_evals, "candidates_per_s": self.candidates_per_s,
                 "seconds": self.seconds, "pareto_size": len(self.pareto),
                 "generations_run": 1 + max(c.generation for c in self.candidates),
                 **({"settings": self.settings} if self.settings else {})}
        return {"meta": dict(meta or {}), "stats": stats, "best": self.best.to_dict(),
                "pareto": [c.to_dict() for c in self.pareto],
                "candidates": [c.to_dict() for c in self.candidates]}


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on both accuracy (max) and RAM (min), sorted by RAM.

    Textbook dominance: exact ties on both objectives dominate neither, so all are kept.
    """
    order = sorted(cands, key=lambda c: (c.cost.ram_bytes, -c.accuracy, c.cost.macs))
    front: list[Candidate] = []
    best_below = -math.inf  # highest accuracy among strictly smaller RAM
    i = 0
    while i < len(order):
        ram = order[i].cost.ram_bytes
        j = i
        while j < len(order) and order[j].cost.ram_bytes == ram:
            j += 1
        top = order[i].accuracy  # group sorted by accuracy, descending
        if top > best_below:
            front.extend(c for c in order[i:j] if c.accuracy == top)
            best_below = top
        i = j
    return front


def _check_accuracy(value: float, cfg: SubnetConfig) -> float:
    acc = float(value)
    if not (0.0 <= acc <= 1.0):  # also rejects NaN
        raise McucError(f"accuracy_fn returned {value!r} for {cfg.to_dict()}; "
                        f"it must be a fraction in [0, 1]")
    return acc


def evolve(space: SearchSpace, cost_model: CostModel,
           accuracy_fn: Callable[[SubnetConfig], float], population: int = 20,
           generations: int = 10, parents: int = 8, mutations: int | None = None,
           crossovers: int | None = None, mutation_prob: float = 0.3, seed: int = 0,
           progress: bool = True, max_draws: int = 5000) -> SearchResult:
    """Search for the most accurate config that fits `cost_model`'s budget.

    `generations` counts generation 0 (the random population), so at most
    population x generations configs are scored. `max_draws` bounds the rejection
    sampling of generation 0; later generations try a bounded number of children and
    go on with fewer when the budget or the space's size leaves no new ones.
    """
    mutations = population // 2 if mutations is None else mutations
    crossovers = population - mutations if crossovers is None else crossovers
    for name, v, lo in (("population", population, 1), ("generations", generations, 1),
                        ("parents", parents, 1), ("mutations", mutations, 0),
                        ("crossovers", crossovers, 0), ("max_draws", max_draws, 1)):
        if v < lo:
            raise McucError(f"evolution {name} must be at least {lo}, not {v}")
    if not 0.0 <= mutation_prob <= 1.0:
        raise McucError(f"mutation probability must be in [0, 1], not {mutation_prob}")
    from tqdm import tqdm

    t0 = time.perf_counter()
    misses0, compute0 = cost_model.misses, cost_model.compute_s
    rng = random.Random(seed)
    cands: list[Candidate] = []
    seen: set[SubnetConfig] = set()  # every config costed: evaluated or rejected
    rejected = 0

    def consider(cfg: SubnetConfig, gen: int, origin: str) -> None:
        """Cost an unseen config and score it if it fits."""
        nonlocal rejected
        if cfg in seen:
            return
        seen.add(cfg)
        cost = cost_model.cost(cfg)
        if not cost.fits:
            rejected += 1
            return
        cands.append(Candidate(cfg, cost, _check_accuracy(accuracy_fn(cfg), cfg), gen, origin))

    bar = tqdm(total=generations, desc="evolution", unit="gen", disable=not progress)

    def report() -> None:
        bar.set_postfix(best=f"{100 * max(c.accuracy for c in cands):.2f}%",
                        candidates=len(cands), refresh=False)
        bar.update(1)

    try:
        # Generation 0: rejection-sample distinct feasible configs.
        draws = 0
        while len(cands) < population and draws < max_draws:
            draws += 1
            consider(space.sample(rng), 0, "random")
        if not cands:
            raise cost_model.no_fit_error(draws)
        report()
        for gen in range(1, generations):
            pool = [c.config for c in sorted(cands, key=rank_key)[:parents]]
            for origin, want in (("mutation", mutations), ("crossover", crossovers)):
                target = len(cands) + want
                for _ in range(_CHILD_TRIES * want):
                    if len(cands) >= target:
                        break
                    if origin == "mutation":
                        child = space.mutate(rng.choice(pool), rng, mutation_prob)
                    else:
                        child = space.crossover(rng.choice(pool), rng.choice(pool), rng)
                    consider(child, gen, origin)
            report()
    finally:
        bar.close()

    evals = cost_model.misses - misses0
    spent = cost_model.compute_s - compute0
    return SearchResult(
        candidates=cands, best=min(cands, key=rank_key), pareto=pareto_front(cands),
        rejected=rejected, cost_evals=evals,
        candidates_per_s=evals / spent if evals and spent > 0 else cost_model.candidates_per_s,
        seconds=time.perf_counter() - t0,
        settings={"population": population, "generations": generations, "parents": parents,
                  "mutations": mutations, "crossovers": crossovers,
                  "mutation_prob": mutation_prob, "seed": seed, "max_draws": max_draws})


def write_search_json(result: SearchResult, path: Path | str, meta: dict) -> None:
    """search.json: meta, stats, best, pareto and every candidate (configs rebuild with
    SubnetConfig.from_dict)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result.to_dict(meta), indent=1) + "\n")


def plot_pareto(result: SearchResult, path: Path | str, sram_limit: int,
                title: str = "", instructions_limit: int | None = None,
                clock_hz: int | None = None) -> None:
    """pareto.png: accuracy vs RAM of every candidate, the front, the budget, the winner;
    beside it, where the candidates have predicted instructions (mcuc.latency), accuracy
    vs instructions (milliseconds at `clock_hz` and one cycle per instruction, assumed)
    with the time budget."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    timed = all(c.cost.instructions is not None for c in result.candidates)
    fig = Figure(figsize=(13.5 if timed else 7.5, 4.8))
    ax = fig.add_subplot(1, 2 if timed else 1, 1)
    _pareto_panel(fig, ax, result, lambda c: c.cost.ram_bytes / 1024.0, result.pareto,
                  sram_limit / 1024.0, f"SRAM budget {sram_limit / 1024:,.1f} KB", "KB")
    ax.set_xlabel("RAM (KB: arena + board overhead)")
    if title:
        ax.set_title(title)
    if timed:
        ax2 = fig.add_subplot(1, 2, 2)
        mega = 1e6
        limit = None if instructions_limit is None else instructions_limit / mega
        label = "" if limit is None else f"time budget {limit:,.2f} M instructions"
        if limit is not None and clock_hz:
            label += f" ({instructions_limit / clock_hz * 1000:,.0f} ms)"
        _pareto_panel(fig, ax2, result, lambda c: c.cost.instructions / mega,
                      time_front(result.candidates), limit, label, "M")
        ax2.set_xlabel("predicted instructions per inference (millions)")
        if clock_hz:   # the same axis in ms at the board's clock
            ms = 1000.0 * mega / clock_hz
            top = ax2.secondary_xaxis("top", functions=(lambda v: v * ms, lambda v: v / ms))
            top.set_xlabel(f"ms at {clock_hz / 1e6:g} MHz, 1 cycle per instruction (assumed)")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)


def time_front(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on both accuracy and predicted instructions."""
    order = sorted(cands, key=lambda c: (c.cost.instructions, -c.accuracy))
    front, best = [], -math.inf
    for c in order:
        if c.accuracy > best:
            front.append(c)
            best = c.accuracy
    return front


def _pareto_panel(fig, ax, result: SearchResult, x, front: list[Candidate],
                  limit: float | None, limit_label: str, unit: str) -> None:
    """One accuracy-vs-cost panel: candidates by generation, the front, the budget line
    and the winner, with x(candidate) the cost axis."""
    cands = result.candidates
    pts = ax.scatter([x(c) for c in cands], [100 * c.accuracy for c in cands],
                     c=[c.generation for c in cands], cmap="viridis", s=18, alpha=0.8,
                     linewidths=0, label="candidates", zorder=2)
    if max(c.generation for c in cands) > 0:
        from matplotlib.ticker import MaxNLocator

        bar = fig.colorbar(pts, ax=ax, label="generation")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    ax.step([x(c) for c in front], [100 * c.accuracy for c in front],
            where="post", color="tab:orange", lw=1.5, marker="o", ms=4,
            label=f"Pareto front ({len(front)})", zorder=3)
    if limit is not None:
        ax.axvline(limit, color="tab:red", ls="--", lw=1.2, label=limit_label, zorder=1)
    b = result.best
    ax.scatter([x(b)], [100 * b.accuracy], marker="*", s=220,
               color="tab:red", edgecolors="black", linewidths=0.6, zorder=4,
               label=f"best: {100 * b.accuracy:.2f}% at {x(b):,.1f} {unit}")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
