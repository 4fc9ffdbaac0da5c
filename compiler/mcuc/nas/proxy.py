"""Finalists by a short training from scratch: the supernet narrows, a proxy decides.

Why: a briefly trained supernet's inherited accuracy cannot separate its top candidates
(a 16 KB search's best 20 lie within 0.4 points on 5,000 held-out images, where one
standard error is 0.6), and it prefers narrow, deep models that converge fast inside
the supernet, while wide ones gain the most from a long training (measured: after 50
epochs from scratch the uniform p7 d64 L4 beat the search's p7 d48 L7 by 1.1 points).
So the search keeps the best candidate of each shape (resolution, patch, dim, depth), the K
with the best inherited accuracy, each is trained from scratch for a few epochs, and
the best on held-out images is the finalist.

With plain variants (`--proxy-plain`) each shape is also trained in its plain form: the
same resolution, patch, dim and depth with one MLP ratio and one low-rank ratio in every
block, the most MACs that fit. Why: inside a shape the supernet prefers the variants
that converge fastest in it (small MLPs, low rank), while training from scratch rewards
capacity; measured at 32 KB, the picks (variants of p4 d64 L4) trained 0.5 points below
the plain p4 d64 L4 of the baseline grid (90.50% vs 90.99% int8 on the test set, two
seeds each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from mcuc.nas.space import SearchSpace, SubnetConfig


@dataclass(frozen=True)
class Shape:
    """A candidate: its config, inherited accuracy and the search (budget) that found it."""
    config: SubnetConfig
    inherited: float
    found_at: int = 0


def shapes(cands: list[Shape], fits, k: int) -> list[Shape]:
    """The best-inherited candidate of each (resolution, patch, dim, depth) that `fits`,
    the k best shapes, best first; on equal accuracy the earlier candidate in `cands` wins."""
    best: dict[tuple[int, int, int, int], Shape] = {}
    for s in sorted(cands, key=lambda s: -s.inherited):   # stable sort
        c = s.config
        key = (c.resolution, c.patch, c.dim, c.depth)
        if key not in best and fits(s.config):
            best[key] = s
    return list(best.values())[:k]


def best_of(scores: list[float]) -> int:
    """Index of the best score, the first of equals (the search's order breaks ties)."""
    return max(range(len(scores)), key=lambda i: scores[i])


def plain_variant(space: SearchSpace, cfg: SubnetConfig, fits: Callable[[SubnetConfig], bool],
                  macs: Callable[[SubnetConfig], int]) -> SubnetConfig | None:
    """`cfg`'s shape with one MLP ratio and one low-rank ratio in every block and the
    heads `cfg` uses most (heads cost no MACs: the supernet's choice stands), the one
    with the most MACs that `fits`; on equal MACs the higher rank, then the larger MLP.
    None when no plain form fits."""
    heads = Counter(cfg.heads).most_common(1)[0][0]
    n = cfg.depth
    forms = [replace(cfg, heads=(heads,) * n, mlp_ratio=(m,) * n, lowrank=(r,) * n)
             for m in space.mlp_ratio for r in space.lowrank_ratio]
    fitting = [f for f in forms if fits(f)]
    if not fitting:
        return None
    return max(fitting, key=lambda f: (macs(f), f.lowrank[0], f.mlp_ratio[0]))


def with_plain(picked: list[Shape], plain: Callable[[SubnetConfig], SubnetConfig | None]
               ) -> list[tuple[SubnetConfig, Shape]]:
    """The proxy's trainees: each shape's candidate, then its plain variant (when it is
    another config, not already listed); each with the shape it stands for."""
    out: list[tuple[SubnetConfig, Shape]] = []
    seen: set[SubnetConfig] = set()
    for s in picked:
        for g in (s.config, plain(s.config)):
            if g is not None and g not in seen:
                seen.add(g)
                out.append((g, s))
    return out
