"""The editing layer the schedule passes share: who reads and writes each buffer, the
liveness questions asked of it, and applying a replacement.

A pass matches a pattern by asking an `Edit` questions, then applies its rewrite
through it, so the access lists stay right without being rebuilt after every rewrite.

Steps are keyed by their index in the schedule the Edit was made from. A replacement
deletes steps and puts one new step at the key of one it replaces, so keys keep the
schedule's order: every comparison a pass makes between keys is the one it would make
between indices of the schedule of that moment. Child buffers are folded into their
root: the access lists are per root buffer. For `touches`, the model's input buffer is
touched at key -1 (before every step) and its output at key `end` (after every step).

While `deps` is a set, every read of what rewrites change (a step by key, an access list
by root) is recorded in it, so a pass can remember that an attempt failed until something
it read has changed (attempts are deterministic).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Set
from dataclasses import replace

from mcuc.schedule.schedule import BufferInfo, Schedule, Step


class Edit:
    """A working copy of a schedule, edited in place rewrite by rewrite."""

    def __init__(self, s: Schedule) -> None:
        self.s = s
        self.buffers: dict[str, BufferInfo] = dict(s.buffers)
        self.steps: dict[int, Step] = dict(enumerate(s.steps))
        self.end = len(s.steps)
        self.readers: dict[str, list[int]] = {}  # root -> sorted keys of steps reading it
        self.writers: dict[str, list[int]] = {}  # root -> sorted keys of steps writing it
        self.parents = {b.parent for b in s.buffers.values() if b.parent is not None}
        self.edits = 0
        self.deps: set[int | str] | None = None
        self._root: dict[str, str] = {}
        for k, st in self.steps.items():
            self._touch(k, st)

    # -- questions
    def root(self, name: str) -> str:
        """The planned buffer that holds `name`."""
        r = self._root.get(name)
        if r is None:
            r = name
            while (p := self.buffers[r].parent) is not None:
                r = p
            self._root[name] = r
        return r

    def offset(self, name: str) -> int:
        """Byte offset of `name` inside its root."""
        off = 0
        while (b := self.buffers[name]).parent is not None:
            off += b.offset
            name = b.parent
        return off

    def span(self, name: str) -> tuple[str, int, int]:
        """(root, first byte, end byte) of `name`."""
        off = self.offset(name)
        return self.root(name), off, off + self.buffers[name].size

    def overlaps(self, a: str, b: str) -> bool:
        ra, la, ha = self.span(a)
        rb, lb, hb = self.span(b)
        return ra == rb and la < hb and lb < ha

    def roots(self, st: Step) -> set[str]:
        """Roots of the buffers `st` reads."""
        return {self.root(op.name) for op in st.inputs if op.kind == "buf"}

    def step(self, k: int) -> Step:
        if self.deps is not None:
            self.deps.add(k)
        return self.steps[k]

    def io(self, name: str) -> bool:
        """`name` shares its root with the model's input or output buffer."""
        return self.root(name) in (self.root(self.s.input_buffer), self.root(self.s.output_buffer))

    def plain(self, name: str, io_ok: bool = True) -> bool:
        """A root without children (so all its accesses are under its own name)."""
        b = self.buffers[name]
        return b.parent is None and name not in self.parents and (io_ok or not self.io(name))

    def reads(self, name: str) -> list[int]:
        r = self.root(name)
        if self.deps is not None:
            self.deps.add(r)
        return self.readers.get(r, [])

    def writes(self, name: str) -> list[int]:
        r = self.root(name)
        if self.deps is not None:
            self.deps.add(r)
        return self.writers.get(r, [])

    def touches(self, name: str) -> list[int]:
        """Sorted keys of the steps reading or writing `name`'s root (see module doc)."""
        r = self.root(name)
        keys = set(self.reads(r)) | set(self.writes(r))
        if r == self.root(self.s.input_buffer):
            keys.add(-1)
        if r == self.root(self.s.output_buffer):
            keys.add(self.end)
        return sorted(keys)

    def written_between(self, name: str, lo: int, hi: int) -> bool:
        return any(lo < w < hi for w in self.writes(name))

    def dies_at(self, name: str, k: int) -> bool:
        """Nothing touches `name`'s bytes after step `k`."""
        return all(t <= k for t in self.touches(name))

    def step_names(self) -> set[str]:
        return {st.name for st in self.steps.values()}

    # -- rewriting
    def _touch(self, k: int, st: Step) -> set[str]:
        roots = self.roots(st)
        for r in roots:
            insort(self.readers.setdefault(r, []), k)
        out = self.root(st.output)
        insort(self.writers.setdefault(out, []), k)
        return roots | {out}

    def _untouch(self, k: int, st: Step) -> set[str]:
        roots = self.roots(st)
        for r in roots:
            self.readers[r].remove(k)
        out = self.root(st.output)
        self.writers[out].remove(k)
        return roots | {out}

    def replace(self, k: int, gone: tuple[int, ...], st: Step,
                drop: Set[str] = frozenset()) -> set[int | str]:
        """Delete steps `gone`, make `st` step `k`, drop those of the plain buffers `drop`
        that nothing uses any more; returns the keys and roots whose access lists changed."""
        changed: set[int | str] = {k, *gone}
        for g in gone:
            changed |= self._untouch(g, self.steps.pop(g))
        changed |= self._untouch(k, self.steps[k])
        self.steps[k] = st
        changed |= self._touch(k, st)
        io = (self.s.input_buffer, self.s.output_buffer)
        for n in drop:  # plain, so used exactly when its access lists are not empty
            if n not in io and not self.readers.get(n) and not self.writers.get(n):
                del self.buffers[n]
        self.edits += 1
        return changed

    def add_buffer(self, info: BufferInfo) -> None:
        """A new root buffer, touched by nothing yet."""
        self.buffers[info.name] = info
        self.edits += 1

    def reparent(self, name: str, info: BufferInfo) -> None:
        """Make `name`, until now a root without children, the child `info` describes;
        its accesses join its new root's."""
        self.buffers[name] = info
        self._root[name] = root = self.root(info.parent)
        for lists in (self.readers, self.writers):
            moved = lists.pop(name, [])
            lists[root] = sorted(set(lists.get(root, [])) | set(moved))
        self.parents.add(info.parent)
        self.edits += 1

    def result(self) -> Schedule:
        """The edited schedule (the input itself if nothing was edited)."""
        if not self.edits:
            return self.s
        return replace(self.s, steps=list(self.steps.values()), buffers=self.buffers)
