"""The planned arena of a candidate schedule: what the memory passes compare.

Who touches which buffer when is the editing layer's job (schedule/edit.py).
"""

from __future__ import annotations

from mcuc import memory
from mcuc.schedule.schedule import Schedule

_ARENAS: dict[tuple[memory.Buffer, ...], int] = {}  # liveness -> planned arena
_ARENAS_MAX = 1024


def arena(s: Schedule) -> int:
    """Planned arena bytes: passes compare candidates with it (planning takes ms).

    Planning is a function of the liveness alone, and passes plan the same candidate
    more than once (the best variant again, the next pass's input), so plans are
    remembered by liveness."""
    return arena_of(s.liveness())


def arena_of(bufs: list[memory.Buffer]) -> int:
    """`arena` of a schedule whose liveness is `bufs`."""
    key = tuple(bufs)
    got = _ARENAS.get(key)
    if got is None:
        got = memory.plan(bufs).arena_bytes
        if len(_ARENAS) >= _ARENAS_MAX:
            _ARENAS.clear()
        _ARENAS[key] = got
    return got
