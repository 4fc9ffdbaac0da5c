"""The integer reference: runs a Schedule with the numpy kernels. This is the spec.

With a Plan it runs inside one int8 arena at the planned offsets, exactly as <name>.c
does, so a wrong plan corrupts the reference as it would corrupt the firmware; without a
plan every buffer has its own array.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import registry
from mcuc.kernels.registry import Bands
from mcuc.memory import Plan
from mcuc.quant.qparams import prepare_input
from mcuc.schedule.schedule import Schedule, Step

SCRATCH_FILL = np.int8(0x5A)


def quantize_input(schedule: Schedule, x: np.ndarray) -> np.ndarray:
    return prepare_input(x, schedule.input_shape, schedule.input_qp)


def _run_bands(schedule: Schedule, st: Step, bands: Bands, x_q: np.ndarray, view) -> None:
    """A streamed step: copy band r of the full image into the band buffer (as the
    user callback does in C), then run the kernel for that band's output rows."""
    c, h, w = schedule.input_shape[-3:]
    img = x_q.reshape(c, h, w)
    band, out = view(st.inputs[0].name), view(st.output)
    rows, size = bands.rows, bands.out_bytes
    kdef = registry.get(st.kernel)
    for r in range(bands.count):
        band[:] = img[:, r * rows: (r + 1) * rows, :].reshape(-1)
        res = np.asarray(kdef.ref(st.params, band.copy()), dtype=np.int8).reshape(-1)
        out[r * size: (r + 1) * size] = res[:size]


def run(schedule: Schedule, x_q: np.ndarray, plan: Plan | None = None,
        trace: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """int8 output of one inference; `trace` (if given) receives each step's output."""
    x_q = np.asarray(x_q, dtype=np.int8).reshape(-1)
    sizes = {n: b.size for n, b in schedule.buffers.items()}
    if plan is not None:
        arena = np.zeros(plan.arena_bytes, dtype=np.int8)

        def view(name: str) -> np.ndarray:
            off = schedule.offset_of(name, plan.offsets)
            return arena[off: off + sizes[name]]
    else:
        roots = {n: np.zeros(s, dtype=np.int8) for n, s in sizes.items()
                 if schedule.buffers[n].parent is None}

        def view(name: str) -> np.ndarray:
            r, off = schedule.root(name)
            return roots[r][off: off + sizes[name]]

    if not schedule.stream:
        view(schedule.input_buffer)[:] = x_q
    for st in schedule.steps:
        kdef = registry.get(st.kernel)
        if (bands := kdef.bands(st.params)) is not None:
            _run_bands(schedule, st, bands, x_q, view)
            if trace is not None:
                trace[st.name] = view(st.output).copy()
            continue
        args = [view(op.name) if op.kind == "buf" else schedule.consts[op.name]
                for op in st.inputs]
        out = view(st.output)
        # Copies into part of a buffer (Concat), and attention writing over its queries,
        # write through a view: they read the current contents and update them.
        extra = {"out": out.copy()} if kdef.writes_through else {}
        if st.scratch and plan is not None:
            # The kernel may scribble over its scratch; so does the reference, so a plan
            # that puts scratch over a live buffer changes the planned result.
            off = plan.offsets[schedule.scratch_name(st)]
            arena[off: off + st.scratch] = SCRATCH_FILL
        result = kdef.ref(st.params, *[a.copy() for a in args], **extra)
        out[:] = np.asarray(result, dtype=np.int8).reshape(-1)[: out.size]
        if trace is not None:
            trace[st.name] = out.copy()
    return view(schedule.output_buffer).copy()
