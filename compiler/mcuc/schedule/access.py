"""Who touches which buffer when: the checks the memory passes share.

A pass may only move a write onto bytes nobody reads later, so it needs, per root
buffer, the steps that touch it; child buffers are folded into their root.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from mcuc import memory
from mcuc.schedule.schedule import Schedule


class Touches:
    """Steps touching each root buffer (the input at -1, the output at len(steps))."""

    def __init__(self, s: Schedule) -> None:
        self.s = s
        self.at: dict[str, list[int]] = {}
        touches = [(s.input_buffer, -1)]
        for i, st in enumerate(s.steps):
            touches.extend((op.name, i) for op in st.inputs if op.kind == "buf")
            touches.append((st.output, i))
        touches.append((s.output_buffer, len(s.steps)))
        at = self.at
        roots: dict[str, str] = {}  # name -> root, each resolved once
        for name, i in touches:
            if (root := roots.get(name)) is None:
                root = roots[name] = s.root(name)[0]
            if (lst := at.get(root)) is None:
                at[root] = [i]
            elif lst[-1] != i:
                lst.append(i)
        self.parents = {b.parent for b in s.buffers.values() if b.parent is not None}

    def reparent(self, name: str) -> None:
        """Update for `name`, until now a root without children, having become a child
        (its touches join its new root's): as if rebuilt."""
        root = self.s.root(name)[0]
        moved = self.at.pop(name, [])
        self.at[root] = sorted(set(self.at.get(root, [])) | set(moved))
        self.parents.add(self.s.buffers[name].parent)

    def fused(self, s: Schedule, i: int, last: int) -> None:
        """Update for steps i..last of the schedule having become the one step i of `s`,
        dropping only buffers that nothing else touches (so no root changes): as if
        rebuilt on `s`."""
        st = s.steps[i]
        names = [op.name for op in st.inputs if op.kind == "buf"] + [st.output]
        touched = {s.root(n)[0] for n in names}
        shift = last - i
        for root in touched:
            self.at.setdefault(root, [])
        for root, lst in self.at.items():
            hit = root in touched
            if not hit and (not lst or lst[-1] < i):
                continue
            new = lst[:bisect_left(lst, i)]
            if hit:
                new.append(i)
            new.extend([t - shift for t in lst[bisect_right(lst, last):]])
            self.at[root] = new
        self.s = s

    def of(self, name: str) -> list[int]:
        return self.at.get(self.s.root(name)[0], [])

    def plain(self, name: str) -> bool:
        """A root buffer with no children: all its accesses are under its own name."""
        return self.s.buffers[name].parent is None and name not in self.parents

    def dies_at(self, name: str, i: int) -> bool:
        return all(t <= i for t in self.of(name))


def span(s: Schedule, name: str) -> tuple[str, int, int]:
    root, off = s.root(name)
    return root, off, off + s.buffers[name].size


def overlaps(s: Schedule, a: str, b: str) -> bool:
    ra, la, ha = span(s, a)
    rb, lb, hb = span(s, b)
    return ra == rb and la < hb and lb < ha


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
