"""Activation buffers, plans, and the liveness arithmetic shared by planners and reports.

This module holds the data types and the step-wise accounting (what is live when, how many
bytes that is). It contains no placement logic, so the validator can depend on it without
depending on the planners it checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ARENA_ALIGN = 16
"""The arena size is rounded up to this, so the C side can place the arena at any 16-aligned
address and every buffer alignment (<= 16 in practice) still holds."""


class PlanError(Exception):
    """A buffer set or a plan is inconsistent; the message names the buffers involved."""


@dataclass(frozen=True)
class Buffer:
    """One activation buffer: `size` bytes, live from step `first` to step `last` inclusive.

    Frozen so a buffer can be shared between candidate plans without defensive copies.
    Construction rejects impossible values early (ValueError), because a planner handed a
    negative size or an inverted lifetime would otherwise produce a plausible-looking arena.

    `above` names another buffer this one must sit directly on top of (offset = that
    buffer's offset + its size): the tail of a buffer whose upper bytes die before its
    lower ones (a patch embedding's image above its tokens, schedule.liveness). The pair
    is one block while both live, and the lower part alone afterwards, so the tail's
    lifetime must lie within its base's (check_tails).
    """

    name: str
    size: int
    first: int
    last: int
    align: int = 4
    above: str | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"buffer {self.name!r}: size {self.size} < 0")
        if self.first < 0:
            raise ValueError(f"buffer {self.name!r}: first step {self.first} < 0")
        if self.last < self.first:
            raise ValueError(
                f"buffer {self.name!r}: last step {self.last} < first step {self.first}"
            )
        if self.align < 1 or self.align & (self.align - 1):
            raise ValueError(f"buffer {self.name!r}: align {self.align} is not a power of two")


@dataclass
class Plan:
    """Where each buffer lives in the arena, and how that compares to the best possible."""

    offsets: dict[str, int]
    arena_bytes: int
    lower_bound_bytes: int
    planner: str
    optimal: bool = False
    """True when no valid plan has a smaller (ARENA_ALIGN-rounded) arena: the arena meets the
    rounded lower bound, or the exact search exhausted its tree. False means "not proven"."""

    @property
    def overhead(self) -> float:
        """Arena bytes wasted relative to the lower bound, as a fraction (0.0 = optimal)."""
        if self.lower_bound_bytes == 0:
            return 0.0
        return self.arena_bytes / self.lower_bound_bytes - 1.0


def align_up(value: int, align: int) -> int:
    """Smallest multiple of `align` (a power of two) that is >= value."""
    return (value + align - 1) & -align


def arena_size(buffers: Iterable[Buffer], offsets: dict[str, int]) -> int:
    """End of the highest buffer, rounded up to ARENA_ALIGN (0 for no buffers)."""
    end = 0
    for b in buffers:
        end = max(end, offsets[b.name] + b.size)
    return align_up(end, ARENA_ALIGN)


def check_unique_names(buffers: Sequence[Buffer]) -> None:
    """Plans are keyed by name, so two buffers with one name would silently share an offset."""
    seen: set[str] = set()
    dupes: list[str] = []
    for b in buffers:
        if b.name in seen:
            dupes.append(b.name)
        seen.add(b.name)
    if dupes:
        raise PlanError(f"duplicate buffer names: {sorted(set(dupes))}")


def check_tails(buffers: Sequence[Buffer]) -> dict[str, int]:
    """Index of the tail of each buffer that has one (the buffer `above` names), after
    checking what planners rely on: the base exists, is no tail itself, has one tail;
    neither is empty; the base ends where the tail's alignment allows and lives as long
    as its tail."""
    index = {b.name: i for i, b in enumerate(buffers)}
    tails: dict[str, int] = {}
    for i, b in enumerate(buffers):
        if b.above is None:
            continue
        base = buffers[index[b.above]] if b.above in index else None
        if base is None or base.above is not None or base.size == 0 or b.above in tails \
                or b.size == 0:
            raise PlanError(f"buffer {b.name!r} sits above {b.above!r}, which is missing, "
                            "empty, a tail itself, or has another tail (or the tail is empty)")
        if base.size % b.align or base.align % b.align:
            raise PlanError(f"buffer {b.name!r} needs alignment {b.align}, which the end of "
                            f"{b.above!r} may lack")
        if not base.first <= b.first <= b.last <= base.last:
            raise PlanError(f"buffer {b.name!r} (steps {b.first}..{b.last}) outlives "
                            f"{b.above!r} (steps {base.first}..{base.last}), below it")
        tails[b.above] = i
    return tails


def live_at(buffers: Iterable[Buffer], step: int) -> list[Buffer]:
    """Buffers live at `step` (first <= step <= last), in input order."""
    return [b for b in buffers if b.first <= step <= b.last]


def lower_bound(buffers: Iterable[Buffer]) -> int:
    """Max over steps of the bytes live at that step; no plan can use a smaller arena.

    Computed by an event sweep, so the cost depends on the number of buffers, not on how
    far apart their step numbers are. Not rounded to ARENA_ALIGN.
    """
    events: list[tuple[int, int]] = []
    for b in buffers:
        if b.size:
            events.append((b.first, b.size))
            events.append((b.last + 1, -b.size))
    # At equal steps the frees (negative) sort first: a buffer ending at s-1 and one starting
    # at s never coexist.
    events.sort()
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def usage_timeline(buffers: Iterable[Buffer], n_steps: int) -> list[int]:
    """Bytes live at each step 0..n_steps-1, for memory reports and plots."""
    diff = [0] * (n_steps + 1)
    for b in buffers:
        if b.last >= n_steps:
            raise PlanError(f"buffer {b.name!r} is live until step {b.last} >= n_steps {n_steps}")
        diff[b.first] += b.size
        diff[b.last + 1] -= b.size
    out: list[int] = []
    live = 0
    for step in range(n_steps):
        live += diff[step]
        out.append(live)
    return out
