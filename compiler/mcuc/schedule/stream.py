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

Only patch_embed can run band by band (a conv2d writes channels-first, so one band's
output is strided over the whole [d, hp, wp] tensor). So when the patch conv is still a
conv2d + transpose (patch-decomp disabled, or it found the unfused schedule smaller),
the rewrite fuses the pair itself; the fused kernel is bit-identical to the pair. The
image/token overlap, the other half of patch-decomp, is undone: the image is gone.

Tile sizes of tokenwise steps were chosen for the arena without streaming (they may
use whatever the image peak left free); once the image is a band that room is gone, so
unless token-overwrite is disabled they are chosen again, keeping whichever of the two
tilings plans smaller.

Every refusal names the condition that failed, so a user knows what to change.
"""

from __future__ import annotations

from dataclasses import replace

from mcuc import McucError
from mcuc.schedule import patch
from mcuc.schedule.access import arena
from mcuc.schedule.edit import Edit
from mcuc.schedule.schedule import BufferInfo, Operand, Schedule, Step
from mcuc.text import fresh

ERROR = "--stream-input needs a patch-embedding first layer (kernel == stride, no padding)"


def _refuse(why: str) -> McucError:
    return McucError(f"{ERROR}: {why}")


def _readers(s: Schedule, name: str) -> list[int]:
    return [k for k, st in enumerate(s.steps)
            if any(op.kind == "buf" and op.name == name for op in st.inputs)]


def _what(st: Step) -> str:
    return f"'{st.name}' ({st.op}, kernel {st.kernel})"


def stream_input(s: Schedule) -> Schedule:
    """Rewrite the patch embedding (the one step reading the image) to read bands."""
    x = s.input_buffer
    readers = _readers(s, x)
    if not readers:
        raise _refuse("no step reads the input image")
    i = readers[0]
    first = s.steps[i]
    _check_conv(first)
    if len(readers) > 1:
        raise _refuse(f"the input image is also read by step {_what(s.steps[readers[1]])}, "
                      f"not only by the patch embedding '{first.name}'")
    writers = [k for k, st in enumerate(s.steps) if st.output == x]
    if writers:
        raise _refuse(f"step {_what(s.steps[writers[0]])} writes over the input image")
    if s.output_buffer == x:
        raise _refuse("the model's output is its input")
    if first.kernel == "conv2d":
        s, i = _fuse_patch(s, i)
    st = s.steps[i]
    if s.buffers[x].parent is not None:
        if i not in patch.overlapped(s):
            raise _refuse(f"the input image shares its bytes with buffer "
                          f"'{s.buffers[x].parent}'")
        s = patch.separate(s, i)
    kids = sorted(n for n, b in s.buffers.items() if b.parent == x)
    if kids:
        raise _refuse(f"buffer '{kids[0]}' lives inside the input image's bytes")
    p = st.params
    band = dict(p, h_in=p["ph"], hp=1, stream=p["hp"])
    name = fresh(f"{x}_band", s.buffers)
    bufs = {n: b for n, b in s.buffers.items() if n != x}
    bufs[name] = BufferInfo(name, p["c_in"] * p["ph"] * p["w_in"],
                            (p["c_in"], p["ph"], p["w_in"]))
    step = Step(st.name, st.kernel, band, [Operand("buf", name)], st.output, st.op,
                st.macs, st.scratch)
    out = replace(s, steps=s.steps[:i] + [step] + s.steps[i + 1:], buffers=bufs,
                  input_buffer=name, stream=True)
    return _retile(out)


def _check_conv(st: Step) -> None:
    """Refuse, naming the reason, unless `st` is a patch conv or patch_embed."""
    if st.kernel == "patch_embed":
        return
    if st.kernel != "conv2d":
        raise _refuse(f"the first layer reading the input image is {_what(st)}, not a Conv")
    p = st.params
    k, stride = f"{p['kh']}x{p['kw']}", f"{p['stride_h']}x{p['stride_w']}"
    if k != stride:
        raise _refuse(f"the first layer '{st.name}' is a Conv with kernel {k} but stride "
                      f"{stride}")
    if p["pad_top"] or p["pad_left"]:
        raise _refuse(f"the first layer '{st.name}' is a Conv with kernel {k}, stride "
                      f"{stride} but padding (top {p['pad_top']}, left {p['pad_left']})")
    if not patch.is_patch_conv(p):
        raise _refuse(f"the first layer '{st.name}' is a Conv padded at the bottom or right: "
                      f"its {p['h_out']}x{p['w_out']} patches of {k} cover "
                      f"{p['h_out'] * p['kh']}x{p['w_out'] * p['kw']} pixels of a "
                      f"{p['h_in']}x{p['w_in']} image")


def _fuse_patch(s: Schedule, i: int) -> tuple[Schedule, int]:
    """Fuse patch conv i and its transpose to tokens into patch_embed (moving the
    transpose up to i + 1 when steps between touch neither of its buffers)."""
    conv = s.steps[i]
    c = conv.output
    w = Edit(s)
    if not w.plain(c):
        raise _refuse(f"the patch conv '{conv.name}' writes into a buffer shared with "
                      f"other tensors ('{s.root(c)[0]}')")
    readers = _readers(s, c)
    if not readers:
        raise _refuse(f"nothing reads the output of the patch conv '{conv.name}'")
    t = next((k for k in readers if patch.is_token_transpose(conv, s.steps[k], s)), None)
    if t is None:
        raise _refuse(f"the patch conv '{conv.name}' is read by step "
                      f"{_what(s.steps[readers[0]])}, not by a transpose of its [d, h, w] "
                      f"output to tokens [h*w, d]")
    tr = s.steps[t]
    if w.touches(c) != [i, t]:
        other = next(k for k in w.touches(c) if k not in (i, t))
        raise _refuse(f"the channels-first output of the patch conv '{conv.name}' is also "
                      f"used by step {_what(s.steps[other])}, not only by its transpose")
    between = [k for k in w.touches(tr.output) if k < t]
    if between:
        raise _refuse(f"step {_what(s.steps[between[0]])} uses the tokens buffer "
                      f"'{tr.output}' before the patch embedding writes it")
    steps = s.steps[:i + 1] + [tr] + [st for k, st in enumerate(s.steps) if i < k != t]
    fused = patch.fuse(replace(s, steps=steps), i)
    if fused is None:  # the checks above are fuse's conditions; this is a bug guard
        raise _refuse(f"the patch conv '{conv.name}' and its transpose could not be fused")
    return fused, i


def _retile(s: Schedule) -> Schedule:
    """Tokenwise tiles chosen again for the streamed arena (module doc)."""
    if "token-overwrite" in s.disabled:
        return s
    from mcuc.schedule.tokenwise import choose_tiles, mark_free_inputs

    alt = choose_tiles(s)
    return mark_free_inputs(alt) if arena(alt) < arena(s) else s


def band_rows(s: Schedule) -> tuple[int, int, int, int]:
    """(bands, channels, rows per band, row width) of a streaming schedule."""
    p = next(st.params for st in s.steps if st.params.get("stream"))
    return p["stream"], p["c_in"], p["ph"], p["w_in"]
