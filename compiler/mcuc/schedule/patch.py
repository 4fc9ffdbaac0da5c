"""Patch-embedding decomposition (technique "patch-decomp").

Why: the patch embedding is the one step where the whole image and all patch tokens are
live together, and lowering adds a CHW conv output plus a transpose copy on top. A
non-overlapping patch conv (kernel == stride, no padding) reads image band j (rows
[j*ph, (j+1)*ph) of each channel) only to produce token band j (tokens [j*wp, (j+1)*wp)),
so it can run band by band and write tokens over image rows already consumed.

The pass replaces conv2d + the transpose copy to tokens by one `patch_embed` step
writing tokens [N, D] directly, and when the image dies there, places both in one parent
buffer: tokens y at offset 0, image x at offset `a`.

Proof that no image byte is overwritten before it is read. Let Bo = wp*d (bytes of one
token band), Bx = ph*w_in (bytes of one band of one channel), and C = c_in. The kernel
processes bands j = 0, 1, ...; while it works on band j it writes only [j*Bo, (j+1)*Bo)
and still needs exactly the image bands j.. of every channel. In CHW layout the lowest
of those bytes is channel 0's band j, at a + j*Bx (every other channel lies above it).
So it suffices that (j+1)*Bo <= a + j*Bx for every j in [0, hp), i.e.

    a = max over j of ((j+1)*Bo - j*Bx) = Bo + (hp-1)*max(0, Bo - Bx).

(The DSP kernel's token pairs may join band j's last patch to band j+1's first; they
read both before writing either, and their writes end below (j+2)*Bo <= a + (j+1)*Bx,
band j+1's lowest byte, by the same inequality for j+1.)

The parent holds max(N*d, a + C*h_in*w_in) bytes. The bound holds for every channel
plane: channel c's band j sits at a + c*h_in*w_in + j*Bx, above channel 0's. For C == 1
that is max(image, tokens) + min(Bx, Bo) up to the band rounding, instead of image +
tokens (+ tokens again for the transpose). For C > 1 the tokens, being contiguous below
the image, can only take channel 0's consumed rows (the consumed rows of the other planes
lie above channel 0's live ones), so the parent is image + a, and a == Bo (one token
band) whenever Bo <= Bx, e.g. 3x128x96 with 16x16 patches and d = 128: 36,864 + 768.
An HWC input would make the consumed rows of all channels one block (Bx -> C*Bx, which
only matters when Bo > Bx), but the model's input is CHW and converting it would cost a
full copy.

The parent is a container: no step names it, only its children, so its liveness
(Schedule.liveness) keeps the bytes above the tokens only until the image dies here, as
a tail the planner keeps directly on top of the tokens' bytes and reuses afterwards. So
the image's bytes are not held while the tokens live on (through a class-token concat or
the whole encoder): the patch step's peak is image + a, and after it the tokens alone.

The planner is a heuristic, so the pass still plans the schedule unchanged, fused, and
fused + overlapped, and keeps the most decomposed variant among those with the smallest
arena (the token-overwrite pass, which runs later and changes the other peaks, re-checks
the overlap the same way).
"""

from __future__ import annotations

from dataclasses import replace

from mcuc.kernels import patch_embed as k_patch
from mcuc.kernels import registry
from mcuc.schedule.access import arena
from mcuc.schedule.copies import copy_params
from mcuc.schedule.edit import Edit
from mcuc.schedule.schedule import BufferInfo, Schedule, Step
from mcuc.text import fresh


def decompose_patches(schedule: Schedule) -> Schedule:
    """Fuse each patch conv + transpose into patch_embed, and overlap it with its image."""
    s = schedule
    i = 0
    while i < len(s.steps) - 1:
        fused = fuse(s, i)
        if fused is not None:
            # Each variant needs less memory at every step than the one before, but the
            # planner is a heuristic: keep the most decomposed one with the least arena.
            options = [s, fused]
            if (both := _overlap(fused, i)) is not None:
                options.append(both)
            sizes = [arena(o) for o in options]
            s = options[max(range(len(options)), key=lambda k: (-sizes[k], k))]
        i += 1
    return s


def is_patch_conv(p: dict) -> bool:
    """conv2d params of a non-overlapping patch conv: kernel == stride, no padding."""
    return (p["kh"] == p["stride_h"] and p["kw"] == p["stride_w"] and p["pad_top"] == 0
            and p["pad_left"] == 0 and p["h_out"] * p["kh"] <= p["h_in"]
            and p["w_out"] * p["kw"] <= p["w_in"])


def is_token_transpose(conv: Step, tr: Step, s: Schedule) -> bool:
    """`tr` is the copy that turns conv's CHW output [d, n] into tokens [n, d]."""
    cp = conv.params
    d, n = cp["c_out"], cp["h_out"] * cp["w_out"]
    return (tr.kernel == "copy" and tr.params == copy_params([n, d], [1, n], 0, [d, 1], 0)
            and s.buffers[tr.output].size == n * d)


def fuse(s: Schedule, i: int) -> Schedule | None:
    """Steps i (patch conv) and i + 1 (its transpose to tokens) as one patch_embed step,
    without the overlap; None when they are not that pair."""
    conv, tr = s.steps[i], s.steps[i + 1]
    if conv.kernel != "conv2d" or tr.kernel != "copy" or not is_patch_conv(conv.params):
        return None
    c = conv.output
    if tr.inputs[0].kind != "buf" or tr.inputs[0].name != c or conv.inputs[0].kind != "buf":
        return None
    w = Edit(s)
    if not w.plain(c) or w.touches(c) != [i, i + 1] or w.touches(tr.output) and \
            w.touches(tr.output)[0] < i + 1:
        return None
    if not is_token_transpose(conv, tr, s):
        return None
    cp = conv.params
    d = cp["c_out"]
    p = {"c_in": cp["c_in"], "h_in": cp["h_in"], "w_in": cp["w_in"], "d": d,
         "ph": cp["kh"], "pw": cp["kw"], "hp": cp["h_out"], "wp": cp["w_out"],
         "x_zp": cp["x_zp"], "y_zp": cp["y_zp"], "weights": cp["weights"],
         "bias": cp.get("bias"), "mult": cp["mult"], "shift": cp["shift"]}
    p = k_patch.fold_zero_point(p)  # exact; the DSP loop then skips the subtraction
    kdef = registry.get("patch_embed")
    kdef.check_params(p)
    name = fresh(f"{conv.name}_patch_embed", w.step_names())
    step = Step(name, "patch_embed", p, list(conv.inputs), tr.output, "Conv+Transpose",
                int(kdef.macs(p)), 0)
    w.replace(i, (i + 1,), step, {c})  # c: touched by these two steps only
    return w.result()


def image_offset(p: dict) -> int:
    """Offset `a` of the image above the tokens (module doc): the write frontier of band
    j, (j+1)*Bo, stays at or below the lowest live image byte, a + j*Bx."""
    bo, bx = p["wp"] * p["d"], p["ph"] * p["w_in"]
    return max(((j + 1) * bo - j * bx for j in range(p["hp"])), default=0)


def _overlap(s: Schedule, i: int) -> Schedule | None:
    st = s.steps[i]
    x, y = st.inputs[0].name, st.output
    w = Edit(s)
    if not (w.plain(x) and w.plain(y) and w.dies_at(x, i) and w.touches(y)[0] == i):
        return None
    a = image_offset(st.params)
    size = max(w.buffers[y].size, a + w.buffers[x].size)
    name = fresh(f"patch_{y}", w.buffers)
    w.add_buffer(BufferInfo(name, size, (size,)))
    w.reparent(x, replace(w.buffers[x], parent=name, offset=a))
    w.reparent(y, replace(w.buffers[y], parent=name, offset=0))
    return w.result()


def overlapped(s: Schedule) -> list[int]:
    """Indices of patch_embed steps whose image and tokens share a parent."""
    out = []
    for i, st in enumerate(s.steps):
        if st.kernel == "patch_embed":
            bx, by = s.buffers[st.inputs[0].name], s.buffers[st.output]
            if bx.parent is not None and bx.parent == by.parent:
                out.append(i)
    return out


def separate(s: Schedule, i: int) -> Schedule:
    """Undo the overlap of step i (for a later pass that finds it no longer pays)."""
    st = s.steps[i]
    x, y = st.inputs[0].name, st.output
    bufs = dict(s.buffers)
    parent = bufs[x].parent
    bufs[x] = replace(bufs[x], parent=None, offset=0)
    bufs[y] = replace(bufs[y], parent=None, offset=0)
    if parent is not None:
        del bufs[parent]
    return replace(s, buffers=bufs)
