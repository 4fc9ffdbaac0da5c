"""Finalists ranked by a short training from scratch (`--proxy-epochs`).

Why: the supernet's inherited accuracy cannot separate the top candidates (the best 20
of a 16 KB search lie within 0.4 points on 5,000 held-out images, where one standard
error is 0.6), and it prefers narrow, deep models that converge fast inside the supernet
while wide ones gain the most from a long training (measured: after 50 epochs the
uniform p7 d64 L4 beat the search's p7 d48 L7 by 1.1 points). So the search narrows the
space to a few shapes -- the best candidate of each (patch, dim, depth), the K shapes
with the best inherited accuracy -- and each is trained from scratch for a few epochs
with the final recipe; the best on held-out images is trained in full. The test set is
never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuc.nas.space import SubnetConfig


@dataclass(frozen=True)
class Shape:
    """One shape's best candidate: its config, inherited accuracy and the search (budget)
    that found it."""
    config: SubnetConfig
    inherited: float
    found_at: int


def shapes(founds: dict[int, dict], fits, k: int, own: int) -> list[Shape]:
    """The best-inherited candidate of each (patch, dim, depth) among the searches'
    candidates that `fits`, the k best shapes, best first (ties: budget `own`'s search)."""
    best: dict[tuple[int, int, int], Shape] = {}
    order = sorted(founds, key=lambda b: (b != own, b))
    cands = [Shape(SubnetConfig.from_dict(d["config"]), d["accuracy"], b)
             for b in order for d in founds[b]["candidates"]]
    for s in sorted(cands, key=lambda s: -s.inherited):   # stable: own search first on ties
        key = (s.config.patch, s.config.dim, s.config.depth)
        if key not in best and fits(s.config):
            best[key] = s
    return list(best.values())[:k]


def budget_shapes(c, b: int, founds: dict[int, dict]) -> list[Shape]:
    """Budget b's proxy shapes: from its own search, or every search with
    --shared-finalists (the budgets nest)."""
    pool = founds if c.a.shared_finalists else {b: founds[b]}
    fits = c.models[b].cost
    return shapes(pool, lambda g: fits(g).fits, c.a.proxy_shapes, b)


def proxy_pick(c, b: int, founds: dict[int, dict], only: int | None = None
               ) -> tuple[SubnetConfig | None, list[dict]]:
    """Train budget b's proxy shapes (cached: a shape two budgets share is trained once);
    (the best on held-out images or None when `only` picks one, their records)."""
    from mcuc.bench_search_stages import trained

    chosen = budget_shapes(c, b, founds)
    if only is not None:
        chosen = chosen[only:only + 1]
    recs = [{"config": s.config.to_dict(), "found_at": s.found_at,
             "inherited_acc": s.inherited, "epochs": c.a.proxy_epochs,
             **trained(c, "proxy", s.config)[1]}
            for s in chosen]
    if only is not None or not recs:
        return None, recs
    best = max(range(len(recs)), key=lambda i: recs[i]["val_acc"])   # first on ties
    return chosen[best].config, recs
