"""Offset assignment for the activation arena.

Each strategy is an ordering of the buffers; placement is then the same first-fit rule TFLite
Micro's GreedyMemoryPlanner uses: put the buffer at the lowest aligned offset that does not
overlap any already-placed buffer whose lifetime overlaps its own (a buffer with a tail,
Buffer.above, goes with it, at the lowest offset where both fit). Finding the optimum is
NP-hard (it is dynamic storage allocation), and the architecture search calls this for every
candidate, so "best" runs a couple of cheap orderings and keeps the smallest arena.

For final builds, "exact" adds a branch-and-bound search (mcuc.memory.exact) seeded with the
best greedy plan, and "auto" runs that search briefly only where greedy is visibly off.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Sequence
from dataclasses import replace

from mcuc.memory.buffers import (
    ARENA_ALIGN,
    Buffer,
    Plan,
    align_up,
    check_tails,
    check_unique_names,
    lower_bound,
)
from mcuc.memory.exact import DEFAULT_NODE_LIMIT, search_exact

Order = Callable[[Sequence[Buffer]], list[int]]


def _place(buffers: Sequence[Buffer], order: list[int], name: str, lb: int) -> Plan:
    """First-fit placement of `buffers` in the given order.

    `placed` is kept sorted by offset, so the scan for the lowest gap is one pass that stops
    at the first gap large enough: O(n) per buffer, O(n^2) overall, with small constants.
    A buffer with a tail (Buffer.above) is placed together with it, where both fit, when
    the first of the two comes up in the order.
    """
    tails = check_tails(buffers)
    index = {b.name: i for i, b in enumerate(buffers)} if tails else {}
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last), by offset
    offsets: dict[str, int] = {}
    end_max = 0
    for i in order:
        b = buffers[i]
        if b.above is not None:  # a tail: its base goes now, with it
            b = buffers[index[b.above]]
        if b.name in offsets:
            continue  # placed with its tail
        size, first, last, align = b.size, b.first, b.last, b.align
        if size == 0:
            offsets[b.name] = 0  # occupies no bytes, so conflicts with nothing
            continue
        if b.name in tails:
            t = buffers[tails[b.name]]
            cand = _fit_pair(placed, b, t)
            offsets[t.name] = cand + size
            insort(placed, (cand + size, cand + size + t.size, t.first, t.last))
            end_max = max(end_max, cand + size + t.size)
        else:
            cand = 0
            for off, end, pfirst, plast in placed:
                if pfirst > last or plast < first:
                    continue  # lifetimes disjoint: may share bytes
                if off >= cand + size:
                    break  # gap [cand, off) fits; later buffers start at >= off
                if end > cand:
                    cand = align_up(end, align)
        offsets[b.name] = cand
        insort(placed, (cand, cand + size, first, last))
        end_max = max(end_max, cand + size)
    arena = align_up(end_max, ARENA_ALIGN)
    return Plan(
        offsets=offsets,
        arena_bytes=arena,
        lower_bound_bytes=lb,
        planner=name,
        optimal=arena == align_up(lb, ARENA_ALIGN),
    )


def _fit_pair(placed: list[tuple[int, int, int, int]], b: Buffer, t: Buffer) -> int:
    """Lowest offset (b's alignment) for b with its tail t directly above it: raise the
    candidate past every conflict until none is left (offsets only grow, so it ends)."""
    parts = ((0, b.size, b.first, b.last), (b.size, t.size, t.first, t.last))
    cand, moved = 0, True
    while moved:
        moved = False
        for delta, size, first, last in parts:
            lo = cand + delta
            for off, end, pfirst, plast in placed:
                if pfirst <= last and plast >= first and off < lo + size and end > lo:
                    cand = align_up(end - delta, b.align)
                    lo, moved = cand + delta, True
    return cand


def _order_by_size(buffers: Sequence[Buffer]) -> list[int]:
    """Largest first (big buffers are hardest to fit later), ties by earlier first step."""
    return sorted(
        range(len(buffers)),
        key=lambda i: (-buffers[i].size, buffers[i].first, buffers[i].name),
    )


def _order_by_breadth(buffers: Sequence[Buffer]) -> list[int]:
    """Buffers that live through the most crowded step first, then by size.

    The peak step determines the arena; packing its residents tightly first, before smaller
    peaks constrain them, often beats pure size order when a big buffer lives in a quiet
    part of the schedule.
    """
    if not buffers:
        return []
    lo = min(b.first for b in buffers)
    hi = max(b.last for b in buffers)
    diff = [0] * (hi - lo + 2)
    for b in buffers:
        diff[b.first - lo] += b.size
        diff[b.last - lo + 1] -= b.size
    usage: list[int] = []
    live = 0
    for d in diff[:-1]:
        live += d
        usage.append(live)
    breadth = [max(usage[b.first - lo : b.last - lo + 1]) for b in buffers]
    return sorted(
        range(len(buffers)),
        key=lambda i: (-breadth[i], -buffers[i].size, buffers[i].first, buffers[i].name),
    )


STRATEGIES: dict[str, Order] = {
    "greedy-size": _order_by_size,
    "greedy-breadth": _order_by_breadth,
}


def plan_greedy_by_size(buffers: Sequence[Buffer]) -> Plan:
    """TFLite Micro's GreedyMemoryPlanner: size-descending first-fit."""
    buffers = list(buffers)
    check_unique_names(buffers)
    return _place(buffers, _order_by_size(buffers), "greedy-size", lower_bound(buffers))


def plan_greedy_by_breadth(buffers: Sequence[Buffer]) -> Plan:
    """First-fit ordered by the peak live bytes over each buffer's lifetime, then size."""
    buffers = list(buffers)
    check_unique_names(buffers)
    return _place(buffers, _order_by_breadth(buffers), "greedy-breadth", lower_bound(buffers))


AUTO_MAX_BUFFERS = 400
""""auto" skips the exact search above this many buffers: nodes get slow and greedy is
usually within a few percent on big schedules anyway."""
AUTO_MIN_OVERHEAD = 0.01
""""auto" searches only when the greedy arena exceeds the lower bound by more than this."""
AUTO_TIME_LIMIT_S = 0.2
EXACT_TIME_LIMIT_S = 1.0


def _best_greedy(buffers: list[Buffer], lb: int) -> Plan:
    """Every strategy; where some buffers have tails, each also on the buffers with every
    tail merged into its base as one block (the tail held as long as the base): a valid
    plan too, and never worse than planning the block the tail was split from."""
    best: Plan | None = None
    tails = check_tails(buffers)
    inputs = [buffers, _merged(buffers, tails)] if tails else [buffers]
    size = {b.name: b.size for b in buffers}
    for bufs in inputs:
        for name, order in STRATEGIES.items():
            p = _place(bufs, order(bufs), name, lb)
            if bufs is not buffers:  # each tail goes right above its base's own bytes
                for base, t in tails.items():
                    p.offsets[buffers[t].name] = p.offsets[base] + size[base]
            if best is None or p.arena_bytes < best.arena_bytes:
                best = p
            if best.optimal:
                return best  # meets the rounded bound; no strategy can do better
    assert best is not None
    return best


def _merged(buffers: list[Buffer], tails: dict[str, int]) -> list[Buffer]:
    """`buffers` with each tail folded into its base (base size + tail size, base life)."""
    extra = {base: buffers[t].size for base, t in tails.items()}
    return [replace(b, size=b.size + extra.get(b.name, 0)) for b in buffers
            if b.above is None]


def plan_exact(
    buffers: Sequence[Buffer],
    time_limit_s: float = EXACT_TIME_LIMIT_S,
    node_limit: int = DEFAULT_NODE_LIMIT,
) -> Plan:
    """Best greedy plan, then branch and bound until optimal or a limit is hit.

    Never worse than "best". `planner` is "exact" when the search found the returned plan,
    else the greedy strategy that did; `optimal` says whether optimality was proven.
    """
    buffers = list(buffers)
    check_unique_names(buffers)
    seed = _best_greedy(buffers, lower_bound(buffers))
    return search_exact(buffers, seed, time_limit_s, node_limit)[0]


def plan(
    buffers: Sequence[Buffer],
    strategy: str = "best",
    *,
    time_limit_s: float | None = None,
    node_limit: int = DEFAULT_NODE_LIMIT,
) -> Plan:
    """Plan with one named strategy, or a combination:

    - "best" (default, milliseconds): every greedy strategy, smallest arena wins; ties go to
      the first strategy in STRATEGIES, so results are deterministic. The architecture
      search calls this for every candidate.
    - "exact": "best", then branch and bound (plan_exact) for up to `time_limit_s`
      (default 1 s) / `node_limit` nodes.
    - "auto": "best", then, only if its arena exceeds the lower bound by more than 1% and
      there are at most 400 buffers, the exact search for `time_limit_s` (default 0.2 s).
      Costs nothing extra where greedy already meets the bound (most real schedules).

    With a time limit, "exact" and "auto" may return different plans on machines of
    different speed; pass a node limit and a generous time limit for reproducible output.
    """
    buffers = list(buffers)
    check_unique_names(buffers)
    lb = lower_bound(buffers)
    if strategy == "best":
        return _best_greedy(buffers, lb)
    if strategy in ("exact", "auto"):
        seed = _best_greedy(buffers, lb)
        if strategy == "auto":
            if (seed.optimal or len(buffers) > AUTO_MAX_BUFFERS
                    or seed.arena_bytes <= (1 + AUTO_MIN_OVERHEAD) * lb):
                return seed
            limit = AUTO_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        else:
            limit = EXACT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        return search_exact(buffers, seed, limit, node_limit)[0]
    if strategy not in STRATEGIES:
        valid = ", ".join(["best", "exact", "auto", *STRATEGIES])
        raise ValueError(f"unknown planning strategy {strategy!r} (valid: {valid})")
    return _place(buffers, STRATEGIES[strategy](buffers), strategy, lb)
