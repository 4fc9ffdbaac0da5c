"""The Schedule: ordered kernel calls over named buffers; what both C and the reference run.

Step k of the schedule runs at time k + 1: time 0 copies the input into its buffer and
time len(steps) + 1 copies the output out, so the planner sees both ends alive.
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


@dataclass
class BufferInfo:
    name: str
    size: int                 # bytes (int8 elements)
    shape: tuple[int, ...]


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

    @property
    def n_times(self) -> int:
        return len(self.steps) + 2

    def liveness(self) -> list[Buffer]:
        """First and last time each buffer is touched (inclusive), for the planner."""
        first: dict[str, int] = {self.input_buffer: 0}
        last: dict[str, int] = {self.input_buffer: 0}
        for k, st in enumerate(self.steps, start=1):
            for op in st.inputs:
                if op.kind == "buf":
                    last[op.name] = k
            first.setdefault(st.output, k)
            last[st.output] = k
        last[self.output_buffer] = self.n_times - 1
        return [
            Buffer(name, self.buffers[name].size, first[name], last[name], 4)
            for name in self.buffers
            if name in first
        ]

    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def weights_bytes(self) -> int:
        """Bytes of constant data (weights, biases, tables, constant tensors) in flash."""
        total = sum(int(a.nbytes) for a in self.consts.values())
        for st in self.steps:
            for f in registry.get(st.kernel).fields:
                v = st.params.get(f.name)
                if f.ctype.endswith("[]") and v is not None:
                    total += int(np.asarray(v).nbytes)
        return total
