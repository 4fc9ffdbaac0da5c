"""The Schedule: ordered kernel calls over named buffers; what both C and the reference run.

Step k of the schedule runs at time k + 1: time 0 copies the input into its buffer and
time len(steps) + 1 copies the output out, so the planner sees both ends alive.

Two mechanisms let memory techniques share bytes on purpose:
- a step's `scratch` bytes exist only while that step runs (a per-step buffer);
- a buffer with a `parent` lives at a fixed byte offset inside its parent, so it may
  overlap its siblings by design (an output written over input already consumed). The
  planner places only root buffers; a root is live whenever any of its children is,
  except that a container's upper bytes may die first (liveness, _footprint).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcuc.kernels import registry
from mcuc.memory import Buffer
from mcuc.quant.qparams import QParams


@dataclass(frozen=True)
class Operand:
    """A kernel input: an arena buffer, or an int8 constant that lives in flash."""

    kind: str  # "buf" | "const"
    name: str


@dataclass
class Step:
    name: str                 # readable, unique; becomes a C identifier
    kernel: str               # registry key
    params: dict
    inputs: list[Operand]
    output: str               # buffer name
    op: str                   # the IR op it came from
    macs: int = 0
    scratch: int = 0          # bytes of per-step scratch passed after the output pointer


@dataclass
class BufferInfo:
    name: str
    size: int                 # bytes (int8 elements)
    shape: tuple[int, ...]
    parent: str | None = None  # lives inside this buffer, at `offset` bytes
    offset: int = 0


@dataclass
class Schedule:
    steps: list[Step]
    buffers: dict[str, BufferInfo]
    consts: dict[str, np.ndarray]          # int8 tensors read by kernels from flash
    input_buffer: str
    output_buffer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_qp: QParams
    output_qp: QParams
    disabled: tuple[str, ...] = field(default_factory=tuple)
    # Streaming input (schedule/stream.py): input_buffer holds one band of the image, and
    # the first step asks for each band in turn; input_shape stays the full image.
    stream: bool = False

    @property
    def n_times(self) -> int:
        return len(self.steps) + 2

    def root(self, name: str) -> tuple[str, int]:
        """The planned buffer that holds `name`, and the byte offset of `name` in it."""
        off = 0
        while (b := self.buffers[name]).parent is not None:
            off += b.offset
            name = b.parent
        return name, off

    @staticmethod
    def scratch_name(step: Step) -> str:
        return f"scratch_{step.name}"

    def liveness(self) -> list[Buffer]:
        """First and last time each root buffer is touched (inclusive), for the planner."""
        # First and last time of each name, then of each root: the min and max over its
        # names (times only grow along the walk, so first seen is the earliest).
        first_n: dict[str, int] = {self.input_buffer: 0}
        last_n: dict[str, int] = {self.input_buffer: 0}
        for k, st in enumerate(self.steps, start=1):
            for op in st.inputs:
                if op.kind == "buf":
                    n = op.name
                    if n not in first_n:
                        first_n[n] = k
                    last_n[n] = k
            n = st.output
            if n not in first_n:
                first_n[n] = k
            last_n[n] = k
        n, k = self.output_buffer, self.n_times - 1
        if n not in first_n:
            first_n[n] = k
        last_n[n] = k
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for n, t in first_n.items():
            r = self.root(n)[0]
            if r not in first or t < first[r]:
                first[r] = t
            if r not in last or last_n[n] > last[r]:
                last[r] = last_n[n]
        out = []
        for name in self.buffers:
            if name in first:
                out += self._footprint(name, first[name], last[name], first_n, last_n)
        for k, st in enumerate(self.steps, start=1):
            if st.scratch:
                out.append(Buffer(self.scratch_name(st), st.scratch, k, k, 4))
        return out

    def _footprint(self, root: str, first: int, last: int, first_n: dict[str, int],
                   last_n: dict[str, int]) -> list[Buffer]:
        """The planned buffer(s) of one root. A container (a parent no step names itself,
        only its children: patch.py's image + tokens) holds its upper bytes only while a
        child needs them: above the highest byte of the children alive after the first
        child dies, the bytes die with that child, so they become a tail of their own
        (Buffer.above) that the planner keeps directly on top and may reuse afterwards."""
        size = self.buffers[root].size
        whole = [Buffer(root, size, first, last, 4)]
        if root in first_n:
            return whole
        kids = [(n, *self.root(n)) for n in first_n if n != root]
        kids = [(n, off) for n, r, off in kids if r == root]
        if len(kids) < 2:
            return whole
        k = min(last_n[n] for n, _ in kids)
        top = max((off + self.buffers[n].size for n, off in kids if last_n[n] > k), default=0)
        if not 0 < top < size:
            return whole
        return [Buffer(root, top, first, last, 4),
                Buffer(f"{root}.tail", size - top, first, k, 1, above=root)]

    def offset_of(self, name: str, offsets: dict[str, int]) -> int:
        """Arena offset of any buffer (child buffers resolve through their root)."""
        r, off = self.root(name)
        return offsets[r] + off

    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def weights_bytes(self) -> int:
        """Bytes of constant data (weights, biases, tables, constant tensors) in flash."""
        total = sum(int(a.nbytes) for a in self.consts.values())
        for st in self.steps:
            for leaf in registry.leaves(registry.get(st.kernel), st.params):
                if leaf.field.ctype.endswith("[]") and leaf.value is not None:
                    total += int(np.asarray(leaf.value).nbytes)
        return total
