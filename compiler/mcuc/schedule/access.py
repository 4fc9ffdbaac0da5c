"""Who touches which buffer when: the checks the memory passes share.

A pass may only move a write onto bytes nobody reads later, so it needs, per root
buffer, the steps that touch it; child buffers are folded into their root.
"""

from __future__ import annotations

from mcuc import memory
from mcuc.schedule.schedule import Schedule


class Touches:
    """Steps touching each root buffer (the input at -1, the output at len(steps))."""

    def __init__(self, s: Schedule) -> None:
        self.s = s
        self.at: dict[str, list[int]] = {}
        self._add(s.input_buffer, -1)
        for i, st in enumerate(s.steps):
            for op in st.inputs:
                if op.kind == "buf":
                    self._add(op.name, i)
            self._add(st.output, i)
        self._add(s.output_buffer, len(s.steps))
        self.parents = {b.parent for b in s.buffers.values() if b.parent is not None}

    def _add(self, name: str, i: int) -> None:
        lst = self.at.setdefault(self.s.root(name)[0], [])
        if not lst or lst[-1] != i:
            lst.append(i)

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


def arena(s: Schedule) -> int:
    """Planned arena bytes: passes compare candidates with it (planning takes ms)."""
    return memory.plan(s.liveness()).arena_bytes
