"""Independent check of a memory plan.

Shares no code with the planners (only the data types), so a bug in placement cannot hide
itself here. The overlap check sweeps over steps keeping the address ranges of live buffers in
a list sorted by offset: while no conflict has been found those ranges are disjoint, so a new
buffer can only collide with its neighbours in that order. Cost O(n log n) comparisons (plus
list inserts, which are memmoves), and it stops at the first conflict.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from mcuc.memory.buffers import Buffer, Plan, PlanError


def _describe(b: Buffer, offset: int) -> str:
    return f"{b.name!r} (steps {b.first}..{b.last}, bytes [{offset}, {offset + b.size}))"


def _check_each(buffers: Sequence[Buffer], plan: Plan) -> None:
    """Per-buffer checks: present, integer, aligned, non-negative, inside the arena, and
    a tail (`above`) directly on top of its base."""
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dupes = sorted({n for n in names if n in seen or seen.add(n)})
        raise PlanError(f"duplicate buffer names: {dupes}")
    missing = [n for n in names if n not in plan.offsets]
    if missing:
        raise PlanError(f"plan has no offset for {len(missing)} buffer(s): {missing[:10]}")
    unknown = sorted(set(plan.offsets) - set(names))
    if unknown:
        raise PlanError(f"plan has offsets for unknown buffer(s): {unknown[:10]}")
    if plan.arena_bytes < 0:
        raise PlanError(f"arena_bytes {plan.arena_bytes} < 0")
    for b in buffers:
        off = plan.offsets[b.name]
        if isinstance(off, bool) or not isinstance(off, int):
            raise PlanError(f"buffer {b.name!r}: offset {off!r} is not an int")
        if off < 0:
            raise PlanError(f"buffer {b.name!r}: negative offset {off}")
        if off % b.align:
            raise PlanError(f"buffer {b.name!r}: offset {off} is not a multiple of {b.align}")
        if off + b.size > plan.arena_bytes:
            raise PlanError(
                f"buffer {_describe(b, off)} ends past the arena ({plan.arena_bytes} bytes)"
            )
    sizes = {b.name: b.size for b in buffers}
    for b in buffers:
        if b.above is None:
            continue
        if b.above not in sizes:
            raise PlanError(f"buffer {b.name!r} sits above unknown buffer {b.above!r}")
        want = plan.offsets[b.above] + sizes[b.above]
        if plan.offsets[b.name] != want:
            raise PlanError(f"buffer {b.name!r} at offset {plan.offsets[b.name]}, not directly "
                            f"above {b.above!r} (offset {want})")


def validate(buffers: Sequence[Buffer], plan: Plan) -> None:
    """Raise PlanError unless `plan` is a correct placement of `buffers`.

    Two buffers conflict when their lifetimes share a step and their byte ranges share a
    byte; zero-size buffers never conflict. Touching ranges ([0, 8) and [8, 16)) are fine.
    """
    buffers = list(buffers)
    _check_each(buffers, plan)
    offsets = plan.offsets
    # Events: (step, kind, index). kind 0 = free before allocations at the same step, since
    # a buffer whose last step is s-1 is dead at s.
    events: list[tuple[int, int, int]] = []
    for i, b in enumerate(buffers):
        if b.size > 0:
            events.append((b.first, 1, i))
            events.append((b.last + 1, 0, i))
    events.sort()
    active: list[tuple[int, int, int]] = []  # (offset, end, index), sorted
    for _, kind, i in events:
        b = buffers[i]
        start = offsets[b.name]
        key = (start, start + b.size, i)
        if kind == 0:
            pos = bisect_left(active, key)
            del active[pos]
            continue
        pos = bisect_left(active, key)
        # Predecessor: the live range starting at or before `start` with the largest start.
        if pos > 0 and active[pos - 1][1] > start:
            _conflict(buffers, offsets, active[pos - 1][2], i)
        # Successor: starts at or after `start`; overlaps if it starts before our end.
        if pos < len(active) and active[pos][0] < key[1]:
            _conflict(buffers, offsets, active[pos][2], i)
        insort(active, key)


def _conflict(buffers: Sequence[Buffer], offsets: dict[str, int], i: int, j: int) -> None:
    a, b = buffers[i], buffers[j]
    raise PlanError(
        f"buffers {_describe(a, offsets[a.name])} and {_describe(b, offsets[b.name])} "
        "are live at the same step and overlap in memory"
    )
