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
from mcuc.kernels.copy import _indices
from mcuc.schedule.schedule import Operand, Schedule, Step

SLOTS = ("q", "k", "v")          # attention inputs, in order
ELEMENTWISE = ("rescale", "lut")  # int8 -> int8 maps a 256-entry table can stand for
INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------- access maps

class _Access:
    """Which steps read and write each root buffer, and which buffers are plain."""

    def __init__(self, s: Schedule) -> None:
        self.readers: dict[str, list[int]] = {}
        self.writers: dict[str, list[int]] = {}
        for i, st in enumerate(s.steps):
            for op in st.inputs:
                if op.kind == "buf":
                    _add(self.readers, s.root(op.name)[0], i)
            _add(self.writers, s.root(st.output)[0], i)
        parents = {b.parent for b in s.buffers.values() if b.parent is not None}
        self._plain = {n for n, b in s.buffers.items() if b.parent is None and n not in parents}
        self._io = {s.root(s.input_buffer)[0], s.root(s.output_buffer)[0]}

    def plain(self, name: str, io_ok: bool = False) -> bool:
        """A root without children (so its accesses are all listed under its own name)."""
        return name in self._plain and (io_ok or name not in self._io)

    def reads(self, name: str) -> list[int]:
        return self.readers.get(name, [])

    def writes(self, name: str) -> list[int]:
        return self.writers.get(name, [])

    def written_between(self, name: str, lo: int, hi: int) -> bool:
        return any(lo < w < hi for w in self.writes(name))


def _add(d: dict[str, list[int]], key: str, i: int) -> None:
    lst = d.setdefault(key, [])
    if not lst or lst[-1] != i:
        lst.append(i)


def _roots(s: Schedule, st: Step) -> set[str]:
    return {s.root(op.name)[0] for op in st.inputs if op.kind == "buf"}


def _unique_name(base: str, taken: set[str]) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _without(s: Schedule, drop_steps: set[int], new_steps: dict[int, Step],
             drop_bufs: set[str]) -> Schedule:
    steps = [new_steps.get(i, st) for i, st in enumerate(s.steps) if i not in drop_steps]
    used = {s.input_buffer, s.output_buffer}
    for st in steps:
        used.add(st.output)
        used.update(op.name for op in st.inputs if op.kind == "buf")
    bufs = {n: b for n, b in s.buffers.items() if n not in drop_bufs or n in used}
    return replace(s, steps=steps, buffers=bufs)


# --------------------------------------------------------------------------- fusion

def fuse_attention(schedule: Schedule) -> Schedule:
    """Replace every matmul -> softmax -> matmul chain by one attention step."""
    s = schedule
    while (found := _find_chain(s)) is not None:
        s = _fuse(s, *found)
    return s


def _find_chain(s: Schedule) -> tuple[int, int, int] | None:
    acc = _Access(s)
    for a, mm1 in enumerate(s.steps):
        if mm1.kernel != "matmul":
            continue
        x1 = mm1.output
        if not acc.plain(x1) or not acc.reads(x1):
            continue
        b = acc.reads(x1)[0]
        sm = s.steps[b]
        if (sm.kernel != "softmax" or sm.inputs[0].name != x1 or b <= a
                or sm.params["cols"] != mm1.params["n"]
                or sm.params["rows"] != mm1.params["batch"] * mm1.params["m"]):
            continue
        # Scores are read by the softmax only, probabilities by the second matmul only
        # (the softmax usually runs in place: then both live in one buffer).
        x2 = sm.output
        if not acc.plain(x2) or not set(acc.writes(x2)) <= {a, b} \
                or not set(acc.writes(x1)) <= {a, b} or not acc.reads(x2):
            continue
        c = acc.reads(x2)[-1]
        if acc.reads(x2) != ([b, c] if x2 == x1 else [c]) or (x2 != x1 and acc.reads(x1) != [b]):
            continue
        mm2 = s.steps[c]
        p1, p2 = mm1.params, mm2.params
        if (mm2.kernel != "matmul" or c <= b or mm2.inputs[0].name != x2
                or mm2.inputs[1].name == x2 or p2["a_zp"] != k_att.P_ZP
                or (p2["batch"], p2["m"], p2["k"]) != (p1["batch"], p1["m"], p1["n"])):
            continue
        # q and k are read at c instead of a: nothing may overwrite them in between.
        if any(acc.written_between(r, a, c) for r in _roots(s, mm1)):
            continue
        if s.root(mm2.output)[0] in _roots(s, mm1) | _roots(s, mm2):
            continue
        return a, b, c
    return None


def _fused_name(names: list[str], taken: set[str]) -> str:
    """`blocks_0_attn_MatMul`, `..._Softmax`, `..._MatMul_1` -> `blocks_0_attn_attention`."""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("_") + 1] if "_" in prefix else ""
    return _unique_name(prefix + "attention", taken)


def _fuse(s: Schedule, a: int, b: int, c: int) -> Schedule:
    mm1, sm, mm2 = s.steps[a], s.steps[b], s.steps[c]
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
    taken = {st.name for st in s.steps} | set(s.buffers) | set(s.consts)
    step = Step(_fused_name([mm1.name, sm.name, mm2.name], taken), "attention", params,
                [mm1.inputs[0], mm1.inputs[1], mm2.inputs[1]], mm2.output, "Attention",
                int(kdef.macs(params)), int(kdef.scratch(params)))
    return _without(s, {a, b}, {c: step}, {mm1.output, sm.output})


# --------------------------------------------------------------------------- head-split

def split_heads(schedule: Schedule) -> Schedule:
    """Fold the copies around each attention step into its strided views, to a fixpoint."""
    s = schedule
    changed = True
    while changed:
        changed = False
        for a, st in enumerate(s.steps):
            if st.kernel != "attention":
                continue
            for x in dict.fromkeys(op.name for op in st.inputs if op.kind == "buf"):
                for absorb in (_absorb_elementwise, _absorb_copy):
                    new = absorb(s, a, x)
                    if new is not None:
                        s, changed = new, True
                        break
                if changed:
                    break
            if not changed and (new := _absorb_output(s, a)) is not None:
                s, changed = new, True
            if changed:
                break  # step indices moved: rescan
    return s


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


def _copy_maps(st: Step) -> tuple[np.ndarray, np.ndarray]:
    """(source index, destination index) of every element a copy step moves."""
    p = st.params
    nd = p["ndim"]
    shape = [int(v) for v in p["shape"][:nd]]
    src = _indices(shape, [int(v) for v in p["in_strides"][:nd]], p["in_offset"])
    dst = _indices(shape, [int(v) for v in p["out_strides"][:nd]], p["out_offset"])
    return src, dst


def _set_view(params: dict, slot: str, view: tuple[int, int, int, int]) -> None:
    for key, v in zip(("off", "bs", "rs", "cs"), view, strict=True):
        params[f"{slot}_{key}"] = v


def _absorb_copy(s: Schedule, a: int, x: str) -> Schedule | None:
    """Attention reads x, x is one copy of y read by nobody else: read y directly."""
    acc, att = _Access(s), s.steps[a]
    if not acc.plain(x) or acc.reads(x) != [a] or len(acc.writes(x)) != 1:
        return None
    ci = acc.writes(x)[0]
    cp = s.steps[ci]
    if cp.kernel != "copy" or cp.params["requant"] or ci > a or cp.inputs[0].kind != "buf":
        return None
    y = cp.inputs[0].name
    ry = s.root(y)[0]
    if ry == x or acc.written_between(ry, ci, a) or ry == s.root(att.output)[0]:
        return None
    src, dst = _copy_maps(cp)
    size = s.buffers[x].size
    if dst.min() < 0 or dst.max() >= size or np.unique(dst).size != dst.size:
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
    return _without(s, {ci}, {a: replace(att, params=params, inputs=inputs)}, {x})


def _absorb_elementwise(s: Schedule, a: int, x: str) -> Schedule | None:
    """Attention reads x = f(x0) elementwise (in place or not): apply f as a read table."""
    acc, att = _Access(s), s.steps[a]
    if not acc.plain(x) or not acc.writes(x) or max(acc.writes(x)) > a:
        return None
    wi = max(acc.writes(x))
    ew = s.steps[wi]
    if ew.kernel not in ELEMENTWISE or ew.inputs[0].kind != "buf" \
            or ew.params["size"] != s.buffers[x].size:
        return None
    x0 = ew.inputs[0].name
    if x0 == x:
        if acc.reads(x) != [wi, a]:
            return None
    elif (acc.reads(x) != [a] or acc.writes(x) != [wi] or not acc.plain(x0, io_ok=True)
          or s.buffers[x0].size != s.buffers[x].size or acc.written_between(x0, wi, a)
          or x0 == s.root(att.output)[0]):
        return None
    table = k_att.table_of(ew.kernel, ew.params)
    params = dict(att.params)
    for slot in _slots(att, x):
        old = params[f"{slot}_table"]
        params[f"{slot}_table"] = table if old is None else \
            np.asarray(old, dtype=np.int8)[table.astype(np.int64) + 128]
    inputs = [Operand("buf", x0) if op.kind == "buf" and op.name == x else op
              for op in att.inputs]
    return _without(s, {wi}, {a: replace(att, params=params, inputs=inputs)},
                    {x} if x0 != x else set())


def _absorb_output(s: Schedule, a: int) -> Schedule | None:
    """The attention output is only permuted by one copy: write it permuted directly."""
    acc, att = _Access(s), s.steps[a]
    o = att.output
    if not acc.plain(o) or acc.writes(o) != [a] or len(acc.reads(o)) != 1:
        return None
    t = acc.reads(o)[0]
    cp = s.steps[t]
    if cp.kernel != "copy" or cp.params["requant"] or t <= a or cp.inputs[0].name != o:
        return None
    z = cp.output
    if (not acc.plain(z, io_ok=True) or z == s.input_buffer or acc.writes(z) != [t]
            or any(r <= t for r in acc.reads(z)) or z in _roots(s, att)):
        return None
    src, dst = _copy_maps(cp)
    n_o, n_z = s.buffers[o].size, s.buffers[z].size
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
    return _without(s, {t}, {a: replace(att, params=params, output=z)}, {o})


__all__ = ["fit_view", "fuse_attention", "split_heads"]
