"""Finalists by a short training from scratch: the supernet narrows, a proxy decides.

Why: a briefly trained supernet's inherited accuracy cannot separate its top candidates
(a 16 KB search's best 20 lie within 0.4 points on 5,000 held-out images, where one
standard error is 0.6), and it prefers narrow, deep models that converge fast inside
the supernet, while wide ones gain the most from a long training (measured: after 50
epochs from scratch the uniform p7 d64 L4 beat the search's p7 d48 L7 by 1.1 points).
So the search keeps the best candidate of each shape (resolution, patch, dim, depth), the K
with the best inherited accuracy, each is trained from scratch for a few epochs, and
the best on held-out images is the finalist.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuc.nas.space import SubnetConfig


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
