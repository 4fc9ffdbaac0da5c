"""Attention passes: operator integration ("fusion") and copy elimination ("head-split").

Why: in an int8 ViT the [heads, N, N] score matrix and the transposed/sliced copies of
Q, K, V and of the attention output set the peak memory. Two passes remove them:

- `fuse_attention` (technique "fusion") turns each matmul -> softmax -> matmul chain
  into one `attention` step that keeps a single row of scores in per-step scratch. The
  kernel reproduces the chain's integer math exactly, so results do not change.
- `split_heads` (technique "head-split") walks back from each attention step's q, k and
  v through the `copy` steps (transposes, head slices) and in-place elementwise steps
  (the per-operand scale some exporters apply) that only feed it, composes their index
  maps into the kernel's strided views and deletes them; it likewise absorbs a copy that
  transposes the attention output. The kernel then reads the qkv Linear's output head
  by head and writes [N, D] directly. A copy whose composed map is not one (offset, batch
  stride, row stride, column stride) view stays.

Both passes work on buffers and index maps, not on op names, so every exporter's spelling
of attention is handled alike. They return new Schedules; the input is not modified.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from mcuc.kernels import attention as k_att
from mcuc.kernels import registry
from mcuc.kernels.copy import index_maps
from mcuc.schedule.edit import Edit
from mcuc.schedule.schedule import Operand, Schedule, Step
from mcuc.text import fresh

SLOTS = ("q", "k", "v")          # attention inputs, in order
ELEMENTWISE = ("rescale", "lut")  # int8 -> int8 maps a 256-entry table can stand for
INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------- fusion

def fuse_attention(schedule: Schedule) -> Schedule:
    """Replace every matmul -> softmax -> matmul chain by one attention step."""
    w = Edit(schedule)
    while (found := _find_chain(w)) is not None:
        a, b, c = found
        drop = {w.steps[a].output, w.steps[b].output}
        w.replace(c, (a, b), _fused_step(w, a, b, c), drop)
    return w.result()


def _find_chain(w: Edit) -> tuple[int, int, int] | None:
    for a, mm1 in w.steps.items():
        if mm1.kernel != "matmul":
            continue
        x1 = mm1.output
        if not w.plain(x1, io_ok=False) or not w.reads(x1):
            continue
        b = w.reads(x1)[0]
        sm = w.step(b)
        if (sm.kernel != "softmax" or sm.inputs[0].name != x1 or b <= a
                or sm.params["cols"] != mm1.params["n"]
                or sm.params["rows"] != mm1.params["batch"] * mm1.params["m"]):
            continue
        # Scores are read by the softmax only, probabilities by the second matmul only
        # (the softmax usually runs in place: then both live in one buffer).
        x2 = sm.output
        if not w.plain(x2, io_ok=False) or not set(w.writes(x2)) <= {a, b} \
                or not set(w.writes(x1)) <= {a, b} or not w.reads(x2):
            continue
        c = w.reads(x2)[-1]
        if w.reads(x2) != ([b, c] if x2 == x1 else [c]) or (x2 != x1 and w.reads(x1) != [b]):
            continue
        mm2 = w.step(c)
        p1, p2 = mm1.params, mm2.params
        if (mm2.kernel != "matmul" or c <= b or mm2.inputs[0].name != x2
                or mm2.inputs[1].name == x2 or p2["a_zp"] != k_att.P_ZP
                or (p2["batch"], p2["m"], p2["k"]) != (p1["batch"], p1["m"], p1["n"])):
            continue
        # q and k are read at c instead of a: nothing may overwrite them in between.
        if any(w.written_between(r, a, c) for r in w.roots(mm1)):
            continue
        if w.root(mm2.output) in w.roots(mm1) | w.roots(mm2):
            continue
        return a, b, c
    return None


def _fused_name(names: list[str], taken: set[str]) -> str:
    """`blocks_0_attn_MatMul`, `..._Softmax`, `..._MatMul_1` -> `blocks_0_attn_attention`."""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("_") + 1] if "_" in prefix else ""
    return fresh(prefix + "attention", taken)


def _fused_step(w: Edit, a: int, b: int, c: int) -> Step:
    mm1, sm, mm2 = w.step(a), w.step(b), w.step(c)
    p1, p2 = mm1.params, mm2.params
    bt, m, d, n, dv = p1["batch"], p1["m"], p1["k"], p1["n"], p2["n"]
    params = {
        "batch": bt, "q_len": m, "kv_len": n, "d": d, "dv": dv,
        # The unfused operands, contiguous: q [b, m, d], kT [b, d, n], v [b, n, dv].
        "q_off": 0, "q_bs": m * d, "q_rs": d, "q_cs": 1,
        "k_off": 0, "k_bs": d * n, "k_rs": 1, "k_cs": n,
        "v_off": 0, "v_bs": n * dv, "v_rs": dv, "v_cs": 1,
        "o_off": 0, "o_bs": m * dv, "o_rs": dv, "o_cs": 1,
        "q_zp": p1["a_zp"], "k_zp": p1["b_zp"], "s_zp": p1["y_zp"],
        "s_mult": p1["mult"], "s_shift": p1["shift"],
        "v_zp": p2["b_zp"], "o_zp": p2["y_zp"], "o_mult": p2["mult"], "o_shift": p2["shift"],
        "exp_table": sm.params["exp_table"], "q_table": None, "k_table": None, "v_table": None,
    }
    kdef = registry.get("attention")
    kdef.check_params(params)
    # Step, buffer and constant names all become C identifiers: avoid every one of them.
    taken = w.step_names() | set(w.buffers) | set(w.s.consts)
    return Step(_fused_name([mm1.name, sm.name, mm2.name], taken), "attention", params,
                [mm1.inputs[0], mm1.inputs[1], mm2.inputs[1]], mm2.output, "Attention",
                int(kdef.macs(params)), int(kdef.scratch(params)))


# --------------------------------------------------------------------------- head-split

_Rewrite = tuple[int, Step, set[str]]  # (step deleted, new attention step, buffers dropped)


def split_heads(schedule: Schedule) -> Schedule:
    """Fold the copies around each attention step into its strided views, to a fixpoint.

    Attention steps are tried in order and the scan restarts after every rewrite; a step
    whose attempts all failed is skipped until a rewrite changes something they read."""
    w = Edit(schedule)
    # Fixed: rewrites delete only copy and elementwise steps, and keep attention ones so.
    attention = [k for k, st in w.steps.items() if st.kernel == "attention"]
    done: dict[int, set[int | str]] = {}  # attention key -> what its failed attempts read
    changed = True
    while changed:
        changed = False
        for a in attention:
            if a in done:
                continue
            w.deps = deps = set()
            found = _attempt(w, a)
            w.deps = None
            if found is None:
                done[a] = deps
                continue
            gone, att, drop = found
            touched = w.replace(a, (gone,), att, drop)
            done = {k: d for k, d in done.items() if d.isdisjoint(touched)}
            changed = True
            break  # as if step indices moved: rescan
    return w.result()


def _attempt(w: Edit, a: int) -> _Rewrite | None:
    """The first rewrite of attention step `a`: its inputs in order, then its output."""
    st = w.step(a)
    for x in dict.fromkeys(op.name for op in st.inputs if op.kind == "buf"):
        for absorb in (_absorb_elementwise, _absorb_copy):
            new = absorb(w, a, x)
            if new is not None:
                return new
    return _absorb_output(w, a)


def _slots(st: Step, x: str) -> list[str]:
    return [slot for slot, op in zip(SLOTS, st.inputs, strict=True)
            if op.kind == "buf" and op.name == x]


def fit_view(idx: np.ndarray) -> tuple[int, int, int, int] | None:
    """(off, bs, rs, cs) with idx[b, r, c] = off + b*bs + r*rs + c*cs exactly, or None."""
    off = int(idx[0, 0, 0])
    st = [int(idx[1, 0, 0]) - off if idx.shape[0] > 1 else 0,
          int(idx[0, 1, 0]) - off if idx.shape[1] > 1 else 0,
          int(idx[0, 0, 1]) - off if idx.shape[2] > 1 else 0]
    b, r, c = (np.arange(n, dtype=np.int64) for n in idx.shape)
    pred = off + b[:, None, None] * st[0] + r[None, :, None] * st[1] + c[None, None, :] * st[2]
    if not np.array_equal(pred, idx) or max(abs(off), *map(abs, st)) > INT32_MAX:
        return None
    return off, st[0], st[1], st[2]


def _distinct(idx: np.ndarray, size: int) -> bool:
    """No index repeats; all of them lie in [0, size)."""
    seen = np.zeros(size, dtype=bool)
    seen[idx] = True
    return int(np.count_nonzero(seen)) == idx.size


def _set_view(params: dict, slot: str, view: tuple[int, int, int, int]) -> None:
    for key, v in zip(("off", "bs", "rs", "cs"), view, strict=True):
        params[f"{slot}_{key}"] = v


def _absorb_copy(w: Edit, a: int, x: str) -> _Rewrite | None:
    """Attention reads x, x is one copy of y read by nobody else: read y directly."""
    att = w.step(a)
    if not w.plain(x, io_ok=False) or w.reads(x) != [a] or len(w.writes(x)) != 1:
        return None
    ci = w.writes(x)[0]
    cp = w.step(ci)
    if cp.kernel != "copy" or cp.params["requant"] or ci > a or cp.inputs[0].kind != "buf":
        return None
    y = cp.inputs[0].name
    ry = w.root(y)
    if ry == x or w.written_between(ry, ci, a) or ry == w.root(att.output):
        return None
    src, dst = index_maps(cp.params)
    size = w.buffers[x].size
    if dst.min() < 0 or dst.max() >= size or not _distinct(dst, size):
        return None
    inv = np.full(size, -1, dtype=np.int64)
    inv[dst] = src
    params = dict(att.params)
    for slot in _slots(att, x):
        g = inv[k_att.view_index(params, slot)]
        view = fit_view(g) if g.min() >= 0 else None
        if view is None:
            return None
        _set_view(params, slot, view)
    inputs = [Operand("buf", y) if op.kind == "buf" and op.name == x else op
              for op in att.inputs]
    return ci, replace(att, params=params, inputs=inputs), {x}


def _absorb_elementwise(w: Edit, a: int, x: str) -> _Rewrite | None:
    """Attention reads x = f(x0) elementwise (in place or not): apply f as a read table."""
    att = w.step(a)
    if not w.plain(x, io_ok=False) or not w.writes(x) or max(w.writes(x)) > a:
        return None
    wi = max(w.writes(x))
    ew = w.step(wi)
    if ew.kernel not in ELEMENTWISE or ew.inputs[0].kind != "buf" \
            or ew.params["size"] != w.buffers[x].size:
        return None
    x0 = ew.inputs[0].name
    if x0 == x:
        if w.reads(x) != [wi, a]:
            return None
    elif (w.reads(x) != [a] or w.writes(x) != [wi] or not w.plain(x0)
          or w.buffers[x0].size != w.buffers[x].size or w.written_between(x0, wi, a)
          or x0 == w.root(att.output)):
        return None
    table = k_att.table_of(ew.kernel, ew.params)
    params = dict(att.params)
    for slot in _slots(att, x):
        old = params[f"{slot}_table"]
        params[f"{slot}_table"] = table if old is None else \
            np.asarray(old, dtype=np.int8)[table.astype(np.int64) + 128]
    inputs = [Operand("buf", x0) if op.kind == "buf" and op.name == x else op
              for op in att.inputs]
    return wi, replace(att, params=params, inputs=inputs), {x} if x0 != x else set()


def _absorb_output(w: Edit, a: int) -> _Rewrite | None:
    """The attention output is only permuted by one copy: write it permuted directly."""
    att = w.step(a)
    o = att.output
    if not w.plain(o, io_ok=False) or w.writes(o) != [a] or len(w.reads(o)) != 1:
        return None
    t = w.reads(o)[0]
    cp = w.step(t)
    if cp.kernel != "copy" or cp.params["requant"] or t <= a or cp.inputs[0].name != o:
        return None
    z = cp.output
    if (not w.plain(z) or z == w.s.input_buffer or w.writes(z) != [t]
            or any(r <= t for r in w.reads(z)) or z in w.roots(att)):
        return None
    src, dst = index_maps(cp.params)
    n_o, n_z = w.buffers[o].size, w.buffers[z].size
    # A bijection from o onto all of z: every element attention writes lands once, and
    # z holds nothing else the copy would have left untouched.
    if not (src.size == n_o == n_z and np.array_equal(np.sort(src), np.arange(n_o))
            and np.array_equal(np.sort(dst), np.arange(n_z))):
        return None
    fwd = np.empty(n_o, dtype=np.int64)
    fwd[src] = dst
    view = fit_view(fwd[k_att.view_index(att.params, "o")])
    if view is None:
        return None
    params = dict(att.params)
    _set_view(params, "o", view)
    return t, replace(att, params=params, output=z), {o}


__all__ = ["fit_view", "fuse_attention", "split_heads"]
