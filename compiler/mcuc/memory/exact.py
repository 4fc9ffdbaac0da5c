"""Branch-and-bound search for the smallest arena (dynamic storage allocation, exactly).

Why this search space is complete
---------------------------------
Buffers are placed one at a time in nondecreasing order of offset (ties broken by a fixed
rank), each at the lowest aligned offset that is at or above the previous buffer's offset
(the *floor*) and above every already placed buffer that shares a step with it. Because all
placed buffers start at or below the floor, the occupied bytes at step t above the floor
form one block ending at `sky[t]` (the highest end placed at t), so that placement is simply
`align_up(max(floor, max(sky over the lifetime)))` -- no gap scan needed.

Every optimum is reachable: take an optimal plan, re-place its buffers first-fit in order of
offset; no buffer moves up (its old offset is still free), so the result is optimal too.
Repeat until nothing moves; in that fixed point each buffer sits exactly where the rule
above puts it, in (offset, rank) order. So exhausting this tree proves optimality, and the
symmetry breaking "(offset, rank) strictly increases" loses nothing.

A buffer with a tail (Buffer.above) is placed together with it, the pair at the lowest
offset where both fit; the tail lives within its base's lifetime, so at every step the
pair occupies one block starting at the base's offset, like a buffer whose size varies
by step, and the argument above holds for it unchanged (tails are never children of
their own; the bounds below treat them as unplaced buffers until their base is placed).

Pruning: every unplaced buffer goes at or above the floor and above `sky` on its lifetime,
and buffers live at one step are disjoint, so the arena is at least
`max_t(max(floor, sky[t]) + unplaced bytes live at t)` and at least
`max_j(earliest offset of j + size of j)`. A child that puts buffer i at p is hopeless when
`p + max_t(unplaced bytes at t)` already reaches the incumbent.

The search runs in three phases, all pruned against the incumbent: (A) one dive per
child ordering (lowest offset first, then larger / larger bytes x steps / busier / longer
lived buffers first); (B) randomized dives for up to a quarter of the time limit; (C) limited
discrepancy search (budget 0, 1, 2, 4, ...; taking the k-th child costs k; deviating
children before the heuristic one, so decisions near the root get revised first). Only (C)
proves optimality, by finishing an iteration without cutting a child for lack of budget.
On a few dozen buffers that usually happens; on hundreds the dives do the work.
The incumbent is seeded with the best greedy plan, so the result never loses to greedy.
Steps are compressed to the steps where some buffer starts: live bytes only peak there.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcuc.memory.buffers import (
    ARENA_ALIGN,
    Buffer,
    Plan,
    align_up,
    check_tails,
    lower_bound,
)

DEFAULT_NODE_LIMIT = 2_000_000
DIVE_DEVIATION = 0.1
"""Phase B: chance of skipping the heuristic's current favourite child, per choice."""
DIVES_PER_BUFFER = 20
DIVE_SHARE = 0.25
"""Phase B's share of the time limit; the rest goes to the systematic phase C."""


@dataclass
class SearchStats:
    """What the search did: for reports and tests, and to tell "proved" from "gave up"."""

    nodes: int = 0
    dives: int = 0  # randomized dives (phase B)
    iterations: int = 0  # discrepancy budgets tried
    exhausted: bool = False  # the whole tree was searched (or the bound was met)
    improved: bool = False  # found a plan smaller than the seed
    elapsed_s: float = 0.0
    stopped_by: str = ""  # "", "time", "nodes"


class _Stop(Exception):
    """Unwinds the recursion: limit hit or provably optimal plan found."""


class _Search:
    """Mutable search state with in-place place/undo, so a node costs a few numpy ops."""

    def __init__(self, bufs: list[Buffer], best_arena: int, target: int,
                 deadline: float, node_limit: int) -> None:
        n = len(bufs)
        self.n = n
        tails = check_tails(bufs)
        index = {b.name: i for i, b in enumerate(bufs)}
        self.tail = np.full(n, -1, dtype=np.int64)  # index of each base's tail
        self.tail[[index[name] for name in tails]] = list(tails.values())
        self.is_tail = np.array([b.above is not None for b in bufs], dtype=bool)
        self.has_tails = bool(tails)  # else skip their per-node work
        self.size = np.array([b.size for b in bufs], dtype=np.int64)
        self.align = np.array([b.align for b in bufs], dtype=np.int64)
        first = np.array([b.first for b in bufs], dtype=np.int64)
        last = np.array([b.last for b in bufs], dtype=np.int64)
        starts = np.unique(first)
        self.lo = np.searchsorted(starts, first, side="left").tolist()
        self.hi = np.searchsorted(starts, last, side="right").tolist()
        self.rem = np.zeros(len(starts), dtype=np.int64)
        for i in range(n):
            self.rem[self.lo[i]:self.hi[i]] += self.size[i]
        self.sky = np.zeros(len(starts), dtype=np.int64)
        self.skymax = np.zeros(n, dtype=np.int64)  # max of sky over each lifetime
        self.remaining = np.ones(n, dtype=bool)
        overlap = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
        np.fill_diagonal(overlap, False)
        self.conf = [np.flatnonzero(overlap[i]) for i in range(n)]
        self.offsets = np.zeros(n, dtype=np.int64)
        self.best_arena = best_arena
        self.best_offsets: np.ndarray | None = None
        self.target = target
        self.deadline = deadline
        self.node_limit = node_limit
        self.nodes = 0
        self.cut = False  # some child skipped for lack of discrepancy budget
        self.stopped_by = ""
        self.dive_q = 0.0
        self.prio = np.arange(n)
        self.rng = random.Random(0)

    def dfs(self, floor: int, last_rank: int, budget: int, depth: int) -> None:
        self.nodes += 1
        if self.nodes >= self.node_limit:
            self.stopped_by = "nodes"
            raise _Stop
        if not self.nodes & 31 and time.perf_counter() > self.deadline:
            self.stopped_by = "time"
            raise _Stop
        limit = self.best_arena - ARENA_ALIGN  # highest end that still beats the incumbent
        if depth == self.n:
            end = int(self.sky.max()) if len(self.sky) else 0
            if end <= limit:
                self.best_arena = align_up(end, ARENA_ALIGN)
                self.best_offsets = self.offsets.copy()
                if self.best_arena <= self.target:
                    raise _Stop
            return
        rem = self.rem
        if int((np.maximum(self.sky, floor) + rem).max()) > limit:
            return
        idx = np.flatnonzero(self.remaining)
        al = self.align[idx]
        p = np.maximum(self.skymax[idx], floor)
        p = (p + al - 1) & -al
        canon = (p > floor) | (idx > last_rank)
        # A buffer that may not go at the floor any more goes at least one alignment higher.
        if int((np.where(canon, p, p + al) + self.size[idx]).max()) > limit:
            return
        maxrem = int(rem.max())
        ok = canon & (p + maxrem <= limit)
        if self.has_tails:
            ok &= ~self.is_tail[idx]  # tails go with their base
        idx, p = idx[ok], p[ok]
        order = np.lexsort((idx, self.prio[idx], p)).tolist()
        if self.dive_q and order:
            k = 0
            while k < len(order) - 1 and self.rng.random() < self.dive_q:
                k += 1
            order = [order[k]]
        elif len(order) > budget + 1:
            self.cut = True
            del order[budget + 1:]
        sky, size, skymax, remaining = self.sky, self.size, self.skymax, self.remaining
        # Deviations first, then the heuristic child: the search then varies decisions near
        # the root before those near the leaves, which is where changes pay off.
        for k in [*range(1, len(order)), 0][:len(order)]:
            j = order[k]
            pos = int(p[j])
            if pos + maxrem > self.best_arena - ARENA_ALIGN:
                continue  # the incumbent improved meanwhile; this child cannot beat it
            # Place buffer i at pos (and its tail right above it), recurse, undo. The
            # tail lives within i's lifetime, so at each step the pair is one block from
            # pos, and its steps' sky is at most i's: pos >= skymax[i] clears both.
            i = int(idx[j])
            t = int(self.tail[i])
            lo, hi = self.lo[i], self.hi[i]
            old_sky = sky[lo:hi].copy()
            undo = [self._put(i, pos)]
            if t >= 0:
                undo.append(self._put(t, pos + int(size[i])))
            try:
                self.dfs(pos, i, budget - k, depth + len(undo))
            finally:
                for u, old_skymax in reversed(undo):
                    remaining[u] = True
                    skymax[self.conf[u]] = old_skymax
                    rem[self.lo[u]:self.hi[u]] += size[u]
                sky[lo:hi] = old_sky

    def _put(self, i: int, pos: int) -> tuple[int, np.ndarray]:
        """Place buffer i at pos; returns what undoing it needs. Everything placed at its
        steps so far ends at or below pos (pos >= skymax[i])."""
        s_i = int(self.size[i])
        lo, hi = self.lo[i], self.hi[i]
        self.sky[lo:hi] = pos + s_i
        self.rem[lo:hi] -= s_i
        c = self.conf[i]
        old_skymax = self.skymax[c]
        self.skymax[c] = np.maximum(old_skymax, pos + s_i)
        self.remaining[i] = False
        self.offsets[i] = pos
        return i, old_skymax


def search_exact(
    buffers: Sequence[Buffer],
    incumbent: Plan,
    time_limit_s: float = 1.0,
    node_limit: int = DEFAULT_NODE_LIMIT,
) -> tuple[Plan, SearchStats]:
    """Improve on `incumbent` (a valid plan of `buffers`) by branch and bound.

    Returns the best plan found -- `incumbent` itself (with `optimal` updated) when nothing
    smaller exists or the limits hit first -- and statistics. `Plan.optimal` is True when
    the arena meets the rounded lower bound or the whole tree was searched. A found plan is
    named "exact". Deterministic for a given node limit; with a time limit the result can
    depend on machine speed.
    """
    t0 = time.perf_counter()
    buffers = list(buffers)
    lb = lower_bound(buffers)
    target = align_up(lb, ARENA_ALIGN)
    stats = SearchStats()
    # Rank: larger first, then earlier, then name -- the greedy-by-size order, so ties in
    # offset are broken the way the proven heuristic would.
    live = sorted((b for b in buffers if b.size),
                  key=lambda b: (-b.size, b.first, b.last, b.name))
    if incumbent.arena_bytes <= target or not live:
        stats.exhausted = True
        stats.elapsed_s = time.perf_counter() - t0
        return _copy(incumbent, optimal=True), stats
    deadline = t0 + time_limit_s
    # One Python frame per placed buffer; leave room above the caller's own frames.
    recursion_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(recursion_limit, len(live) + 1000))
    s = _Search(live, incumbent.arena_bytes, target, deadline, node_limit)
    prios = _priorities(live)
    try:
        # Phase A: one heuristic dive per child ordering -- cheap, and they disagree a lot.
        for prio in prios:
            s.prio = prio
            s.dfs(0, -1, 0, 0)
        # Phase B: randomized dives (mostly heuristic choices, some deviations) for up to a
        # quarter of the time: on big instances they find better plans than systematic
        # search, which cannot get past the first few decisions near the leaves.
        s.deadline = min(deadline, t0 + DIVE_SHARE * time_limit_s)
        s.dive_q = DIVE_DEVIATION
        try:
            for dive in range(DIVES_PER_BUFFER * len(live)):
                s.prio = prios[dive % len(prios)]
                s.dfs(0, -1, 0, 0)
                stats.dives += 1
        except _Stop:
            if s.stopped_by != "time" or time.perf_counter() >= deadline:
                raise
        s.dive_q, s.deadline, s.prio = 0.0, deadline, prios[1]
        # Phase C: limited discrepancy search; the only phase that can prove optimality.
        budget = 0
        while True:
            stats.iterations += 1
            s.cut = False
            s.dfs(0, -1, budget, 0)
            if not s.cut:
                stats.exhausted = True
                break
            budget = 2 * budget if budget else 1
    except _Stop:
        stats.exhausted = s.best_arena <= target
    finally:
        sys.setrecursionlimit(recursion_limit)
    stats.nodes = s.nodes
    stats.stopped_by = "" if stats.exhausted else s.stopped_by
    stats.elapsed_s = time.perf_counter() - t0
    if s.best_offsets is None:
        return _copy(incumbent, optimal=stats.exhausted), stats
    stats.improved = True
    offsets = {b.name: 0 for b in buffers}  # zero-size buffers share offset 0 harmlessly
    for b, off in zip(live, s.best_offsets.tolist(), strict=True):
        offsets[b.name] = int(off)
    return Plan(offsets, s.best_arena, lb, "exact", optimal=stats.exhausted), stats


def _priorities(live: list[Buffer]) -> list[np.ndarray]:
    """Child orderings for the dives, each a rank per buffer (lower = tried first).

    Among children at the same offset: larger first (the rank itself), larger
    bytes x steps first, busier peak over the lifetime first, longer-lived first. Each is a
    reasonable greedy on its own; none wins everywhere, so the search tries them all.
    """
    n = len(live)
    size = np.array([b.size for b in live], dtype=np.int64)
    length = np.array([b.last - b.first + 1 for b in live], dtype=np.int64)
    usage = np.zeros(max(b.last for b in live) + 2, dtype=np.int64)
    for b in live:
        usage[b.first:b.last + 1] += b.size
    breadth = np.array([usage[b.first:b.last + 1].max() for b in live], dtype=np.int64)
    keys = [np.arange(n), -size * length, -breadth, -length]
    out = []
    for key in keys:
        rank = np.empty(n, dtype=np.int64)
        rank[np.lexsort((np.arange(n), key))] = np.arange(n)
        out.append(rank)
    return out


def _copy(p: Plan, optimal: bool) -> Plan:
    return Plan(dict(p.offsets), p.arena_bytes, p.lower_bound_bytes, p.planner, optimal=optimal)
