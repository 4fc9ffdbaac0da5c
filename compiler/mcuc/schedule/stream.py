"""Streaming input: the image arrives band by band from a user callback (issue 4).

Why: with patch decomposition the tokens already overwrite consumed image rows, but
the whole image is still resident when the patch embedding starts, and for a large
image (mcuformer-t: 3x240x240) that is the arena's peak. A non-overlapping patch conv
reads band j (rows [j*ph, (j+1)*ph) of every channel) only to produce token row j, so
the image never has to exist in full: one band buffer of c_in*ph*w_in bytes is filled
by the caller, consumed, and refilled for the next band.

The rewrite keeps the step's kernel (patch_embed) but gives it the params of one band
(h_in = ph, hp = 1) plus `stream` = the number of bands; the C loop and the reference
call it once per band with the output pointer moved by one token row (wp*d bytes).
The planner then sees only the band buffer, never the image.
"""

from __future__ import annotations

from dataclasses import replace

from mcuc import McucError
from mcuc.schedule.patch import separate
from mcuc.schedule.schedule import BufferInfo, Operand, Schedule, Step

ERROR = "--stream-input needs a patch-embedding first layer (kernel == stride)"


def stream_input(s: Schedule) -> Schedule:
    """Rewrite the first step (patch_embed on the graph input) to read bands."""
    x = s.input_buffer
    readers = [k for k, st in enumerate(s.steps)
               if any(op.kind == "buf" and op.name == x for op in st.inputs)]
    if (not s.steps or s.steps[0].kernel != "patch_embed" or readers != [0]
            or s.steps[0].inputs[0].name != x or s.output_buffer == x):
        raise McucError(ERROR)
    st = s.steps[0]
    if s.buffers[x].parent is not None:
        if s.buffers[x].parent != s.buffers[st.output].parent:
            raise McucError(ERROR)
        s = separate(s, 0)
    if any(b.parent == x for b in s.buffers.values()):
        raise McucError(ERROR)
    p = st.params
    band = dict(p, h_in=p["ph"], hp=1, stream=p["hp"])
    name, k = f"{x}_band", 0
    while name in s.buffers:
        k += 1
        name = f"{x}_band_{k}"
    size = p["c_in"] * p["ph"] * p["w_in"]
    bufs = {n: b for n, b in s.buffers.items() if n != x}
    bufs[name] = BufferInfo(name, size, (p["c_in"], p["ph"], p["w_in"]))
    step = Step(st.name, st.kernel, band, [Operand("buf", name)], st.output, st.op,
                st.macs, st.scratch)
    return replace(s, steps=[step] + s.steps[1:], buffers=bufs, input_buffer=name,
                   stream=True)


def band_rows(s: Schedule) -> tuple[int, int, int, int]:
    """(bands, channels, rows per band, row width) of a streaming schedule."""
    p = s.steps[0].params
    return p["stream"], p["c_in"], p["ph"], p["w_in"]
