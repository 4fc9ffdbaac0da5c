"""Attention writes its output over its queries (technique "token-overwrite").

Why: after fusion and head-split a ViT block's peak is the attention step, where the
residual [N, D], the qkv projection [N, 3D] and the attention output [N, D] are all
live: 5 N D bytes. The fused kernel handles one (head, query row) at a time and has
read all of q[h, i] into its scores before it writes any of o[h, i] (attention.c), and
nothing else reads q, so o[h, i] can take q[h, i]'s bytes. The output then costs nothing
and the peak drops to 4 N D. Its rows are as far apart as the qkv rows (3D bytes), which
the tokenwise consumers take through their row stride `x_rs`.

`overwrite_queries` does this for each attention step where it is safe:
- the output is a plain buffer written first there, read afterwards only as the chain
  input `x` of tokenwise steps that read it as contiguous [rows][k] rows (and as their
  residual operand only where they have no residual add: then it is not read);
- the output is laid out [row][head * dv + c] and the queries are heads side by side in
  each row (q_cs == 1, q_bs == dv == d), so every output element has a query element;
- the queries' bytes overlap neither the keys' nor the values', and no step after the
  attention touches the queries' buffer.
It never returns a schedule with a larger planned arena than it was given.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcuc.kernels import attention as k_att
from mcuc.kernels import tokenwise as k_tw
from mcuc.schedule.access import arena
from mcuc.schedule.edit import Edit
from mcuc.schedule.schedule import Schedule


def overwrite_queries(schedule: Schedule) -> Schedule:
    w = Edit(schedule)
    for a, st in list(w.steps.items()):
        if st.kernel == "attention":
            _overwrite(w, a)
    s = w.result()
    return s if arena(s) <= arena(schedule) else schedule


def root_index(s: Schedule, name: str, p: dict, slot: str) -> np.ndarray:
    """Byte offsets, within its root buffer, of every element of view `slot`."""
    return _index(s.root(name)[1], p, slot)


def _index(offset: int, p: dict, slot: str) -> np.ndarray:
    return offset + k_att.view_index(p, slot).reshape(-1)


def _readers(w: Edit, o: str, a: int) -> list[int] | None:
    """The tokenwise steps after `a` that read `o` as contiguous chain input; None if
    anything else touches it (or it is touched before `a`)."""
    out = []
    for j in w.touches(o):
        if j == a:
            continue
        st = w.steps[j]
        if j < a or st.kernel != "tokenwise" or st.output == o or st.inputs[0].name != o \
                or st.params["x_rs"] != st.params["k"]:
            return None
        if st.inputs[1].name == o and st.params["has_res"]:  # without one, r is unused
            return None
        out.append(j)
    return out


def _overwrite(w: Edit, a: int) -> None:
    """Put attention step a's output over its queries."""
    st = w.steps[a]
    p = st.params
    o, q = st.output, st.inputs[0].name
    if not w.plain(o) or w.touches(o)[0] != a or o in (w.s.input_buffer, w.s.output_buffer):
        return
    bt, m, d, dv = p["batch"], p["q_len"], p["d"], p["dv"]
    width = bt * dv
    o_bs, q_bs = (p["o_bs"], p["q_bs"]) if bt > 1 else (dv, dv)  # one head: no stride
    if (p["o_off"], o_bs, p["o_rs"], p["o_cs"]) != (0, dv, width, 1) \
            or w.buffers[o].size != m * width:
        return
    if (q_bs, p["q_cs"]) != (dv, 1) or d != dv or p["q_rs"] < width:
        return
    root = w.root(q)
    if w.io(root) or not w.dies_at(root, a):
        return
    qi = _index(w.offset(q), p, "q")
    for slot, op in (("k", st.inputs[1]), ("v", st.inputs[2])):
        if w.root(op.name) == root and np.intersect1d(qi, _index(w.offset(op.name), p, slot)).size:
            return
    readers = _readers(w, o, a)
    if readers is None or any(w.steps[j].params["k"] != width
                              or w.steps[j].params["rows"] != m for j in readers):
        return
    start, rs = w.offset(q) + p["q_off"], p["q_rs"]  # q[0, 0, 0]; strides are positive
    span = (m - 1) * rs + width
    w.reparent(o, replace(w.buffers[o], parent=root, offset=start, size=span, shape=(span,)))
    w.replace(a, (), replace(st, params=dict(p, o_off=0, o_bs=dv, o_rs=rs, o_cs=1)))
    for j in readers:
        tp = dict(w.steps[j].params, x_rs=rs)
        w.replace(j, (), replace(w.steps[j], params=tp, scratch=int(k_tw.scratch_bytes(tp))))
