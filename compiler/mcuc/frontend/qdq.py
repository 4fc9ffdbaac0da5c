"""QuantizeLinear/DequantizeLinear (QDQ) models: strip the pairs, keep what they state.

A QDQ model (onnxruntime's `quantize_static` in QDQ format, PyTorch's quantized exports)
is a float graph with a Q -> DQ pair on each quantized activation and a DQ on each
quantized constant. mcuc keeps the float graph and records the quantization beside it
(`Graph.given`), so canonicalization sees the float model it already knows and
quant/given.py can use the stated scales instead of calibrating:

- Q(x) -> DQ on an activation: x gets the pair's (scale, zero point), per tensor only.
- DQ of an int8/uint8/int32 constant: folded to float ((q - zp) * scale); symmetric
  int8 grids (uint8 with zero point 128 shifted to int8) are kept to match weights later.
- Q of a float constant: a weight (more than one element, as PyTorch exports them) is
  quantized as ONNX says and read by its DQ as above; a scalar (attention's 1/sqrt(d),
  GELU's 0.5) is dropped with its DQ, since mcuc folds scalars into its own integer
  parameters exactly.

Every scale, zero point and attribute comes from an untrusted file: anything but a
finite positive scale of the right shape, an int8/uint8 (int32 for constants) zero point
and a plain per-tensor or per-axis layout is a one-line McucError.
"""

from __future__ import annotations

import numpy as np

from mcuc import McucError, limits
from mcuc.frontend.rewrite import fold_constants
from mcuc.ir.graph import GivenQuant, Graph, Node, Tensor
from mcuc.text import one_line

OPS = ("QuantizeLinear", "DequantizeLinear")
ACT_SCALE_RANGE = (1e-12, 1e6)   # calibrated scales never leave it; kernels' tables need it
_INT_TYPES = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-(2**31), 2**31 - 1)}
_ALLOWED_ATTRS = {"axis", "block_size", "saturate"}


def _where(node: Node) -> str:
    return f"{node.op} '{one_line(node.name)}'"


def _params(g: Graph, node: Node, rank: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(scale float64, zero point int64, axis or None for per tensor) of a Q/DQ node,
    checked: constant, finite, positive, int8/uint8/int32, shapes that fit."""
    bad = set(node.attrs) - _ALLOWED_ATTRS
    if bad or node.attrs.get("block_size", 0) or node.attrs.get("saturate", 1) != 1:
        raise McucError(f"{_where(node)}: attribute {one_line(sorted(bad or {'block_size'}))} "
                        "is not supported (per-tensor or per-axis quantization only)")
    if len(node.inputs) < 2 or not node.inputs[1] or g.const(node.inputs[1]) is None:
        raise McucError(f"{_where(node)}: its scale is not a constant")
    scale = g.const(node.inputs[1])
    if scale.dtype.kind != "f":
        raise McucError(f"{_where(node)}: scale has type {scale.dtype}, not a float type")
    scale = scale.astype(np.float64)
    if scale.size == 0 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        raise McucError(f"{_where(node)}: scale must be finite and positive "
                        f"(found {_show(scale)})")
    zname = node.inputs[2] if len(node.inputs) > 2 else ""
    if zname:
        zp = g.const(zname)
        if zp is None:
            raise McucError(f"{_where(node)}: its zero point is not a constant")
        if zp.dtype.name not in _INT_TYPES:
            raise McucError(f"{_where(node)}: zero point type {zp.dtype} is not supported "
                            "(int8, uint8; int32 for constants)")
        if zp.shape != scale.shape and not zp.size == scale.size == 1:
            raise McucError(f"{_where(node)}: zero point shape {list(zp.shape)} differs "
                            f"from the scale's {list(scale.shape)}")
    else:
        zp = np.zeros(scale.shape, np.uint8)
    if scale.size == 1:   # per tensor, whatever rank the file gave ([] or [1])
        return scale.reshape(()), zp.reshape(()), None
    if scale.ndim != 1:
        raise McucError(f"{_where(node)}: scale has shape {list(scale.shape)}; "
                        "expected a scalar or a vector (blocked quantization)")
    axis = node.attrs.get("axis", 1)
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise McucError(f"{_where(node)}: axis {one_line(axis)} is out of range for "
                        f"rank {rank}")
    return scale, zp, axis % rank


def _show(a: np.ndarray) -> str:
    return one_line(np.array2string(a.reshape(-1)[:4], precision=3), 60)


def _broadcast(v: np.ndarray, axis: int | None, shape: tuple[int, ...], node: Node) -> np.ndarray:
    """A per-tensor or per-axis parameter shaped to broadcast against `shape`."""
    if axis is None:
        return v.reshape(())
    if v.size != shape[axis]:
        raise McucError(f"{_where(node)}: {v.size} scales for axis {axis} of size "
                        f"{shape[axis]}")
    return v.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def _fold_dq(g: Graph, node: Node, given: GivenQuant) -> None:
    """DQ of a constant: its float value becomes a constant; an int8/uint8 grid is kept
    for quant/given.py (weights)."""
    q = g.const(node.inputs[0])
    if q.dtype.name not in _INT_TYPES:
        raise McucError(f"{_where(node)}: input type {q.dtype} is not supported "
                        "(int8, uint8, int32)")
    scale, zp, axis = _params(g, node, q.ndim)
    if len(node.inputs) > 2 and node.inputs[2] and q.dtype != zp.dtype:
        raise McucError(f"{_where(node)}: input type {q.dtype} differs from its zero "
                        f"point's ({zp.dtype})")
    s = _broadcast(scale, axis, q.shape, node)
    z = _broadcast(zp.astype(np.int64), axis, q.shape, node)
    value = ((q.astype(np.int64) - z) * s).astype(np.float32)
    limits.check_weight_values(one_line(node.outputs[0]), value)
    out = node.outputs[0]
    g.tensors[out] = Tensor(out, tuple(value.shape), "float32", value)
    if q.dtype != np.int32:
        shift = 128 if q.dtype == np.uint8 else 0
        given.weights.append((value, scale, zp.astype(np.int64) - shift, axis))


def _fold_q(g: Graph, node: Node) -> None:
    """Q of a float constant with more than one element: its int8/uint8 values (ONNX:
    round half to even, saturate), which the DequantizeLinear after it reads."""
    x = g.const(node.inputs[0])
    if x.dtype.kind != "f":
        raise McucError(f"{_where(node)}: input type {x.dtype} is not a float type")
    scale, zp, axis = _params(g, node, x.ndim)
    if zp.dtype == np.int32:
        raise McucError(f"{_where(node)}: output type int32 is not supported")
    lo, hi = _INT_TYPES[zp.dtype.name]
    s = _broadcast(scale, axis, x.shape, node)
    z = _broadcast(zp.astype(np.int64), axis, x.shape, node)
    with np.errstate(all="ignore"):
        q = np.clip(np.rint(x.astype(np.float64) / s) + z, lo, hi)
    if not np.all(np.isfinite(q)):
        raise McucError(f"{_where(node)}: quantizing its constant gave non-finite values")
    out = node.outputs[0]
    q = q.astype(zp.dtype)
    g.tensors[out] = Tensor(out, tuple(q.shape), q.dtype.name, q)


def _pair(g: Graph, q: Node, dqs: list[Node], given: GivenQuant) -> None:
    """Q(x) -> DQ...: x's per-tensor (scale, int8 zero point); readers of each DQ read x."""
    x = q.inputs[0]
    if q.inputs[1:2] and g.const(q.inputs[1]) is not None and g.const(q.inputs[1]).size != 1:
        raise McucError(f"{_where(q)}: activations must be quantized per tensor "
                        f"(scale has {g.const(q.inputs[1]).size} values)")
    sq, zq, _ = _params(g, q, 1)
    for d in dqs:
        sd, zd, _ = _params(g, d, 1)
        if sd.tolist() != sq.tolist() or zd.tolist() != zq.tolist() or zd.dtype != zq.dtype:
            raise McucError(f"{_where(d)}: scale or zero point differs from its "
                            f"QuantizeLinear's")
    if zq.dtype.name not in ("int8", "uint8"):
        raise McucError(f"{_where(q)}: activations must be int8 or uint8, not {zq.dtype}")
    s, z = float(sq.reshape(-1)[0]), int(zq.reshape(-1)[0])
    if not ACT_SCALE_RANGE[0] <= s <= ACT_SCALE_RANGE[1]:
        raise McucError(f"{_where(q)}: activation scale {s:.3g} is outside "
                        f"[{ACT_SCALE_RANGE[0]:g}, {ACT_SCALE_RANGE[1]:g}]")
    if zq.dtype == np.uint8:
        z -= 128
        given.uint8 += 1
    old = given.acts.get(x)
    if old is not None and old != (s, z):
        raise McucError(f"tensor '{one_line(x)}' is quantized twice with different scales")
    given.acts[x] = (s, z)


def strip_qdq(g: Graph) -> None:
    """Remove every Q/DQ node of a raw graph (nodes in file order, before shapes are
    inferred), recording what they state in `g.given`; no-op for a float model."""
    if not any(n.op in OPS for n in g.nodes):
        return
    _fold_around(g)
    given = GivenQuant()
    users = g.consumers()
    rename: dict[str, str] = {}      # a DQ output -> the tensor its readers read instead
    done: set[int] = set()
    kept: list[Node] = []
    for node in g.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        if id(node) in done:
            continue
        if node.op == "QuantizeLinear":
            if not node.inputs or not node.inputs[0]:
                raise McucError(f"{_where(node)} has no input")
            dqs = _readers(g, node, users)
            x = node.inputs[0]
            c = g.const(x)
            if c is not None and c.size > 1:   # a weight, as PyTorch exports them
                _fold_q(g, node)
                continue
            if c is not None:   # a scalar: mcuc folds it into integer parameters exactly
                _params(g, node, c.ndim)
                given.constants += 1
            else:
                _pair(g, node, dqs, given)
            rename.update((d.outputs[0], x) for d in dqs)
            done.update(id(d) for d in dqs)
        elif node.op == "DequantizeLinear":
            if not node.inputs or g.const(node.inputs[0]) is None:
                raise McucError(f"{_where(node)} reads a tensor that is neither a constant "
                                "nor a QuantizeLinear output")
            _fold_dq(g, node, given)
        else:
            kept.append(node)
    for node in kept:   # readers placed before their pair, in a file out of order
        node.inputs = [rename.get(i, i) for i in node.inputs]
    g.nodes = kept
    g.outputs = [rename.get(o, o) for o in g.outputs]
    g.given = given


def _fold_around(g: Graph) -> None:
    """Fold the constant computations the Q/DQ nodes read (an exporter may route a zero
    point through Identity), leaving the Q/DQ nodes themselves in place."""
    order = list(g.nodes)
    g.nodes = [n for n in order if n.op not in OPS]
    with np.errstate(all="ignore"):
        fold_constants(g)
    left = {id(n) for n in g.nodes}
    g.nodes = [n for n in order if n.op in OPS or id(n) in left]


def _readers(g: Graph, q: Node, users: dict[str, list[Node]]) -> list[Node]:
    """The DequantizeLinear nodes reading a QuantizeLinear; anything else is refused."""
    out = q.outputs[0] if q.outputs else ""
    readers = users.get(out, [])
    if out in g.outputs:
        raise McucError(f"{_where(q)}: the model's output is quantized; mcuc needs a "
                        "float output (end the model with DequantizeLinear)")
    odd = [r for r in readers if r.op != "DequantizeLinear" or r.inputs[0] != out]
    if not readers or odd:
        what = f"{odd[0].op} '{one_line(odd[0].name)}'" if odd else "nothing"
        raise McucError(f"{_where(q)} feeds {what}; mcuc reads only QuantizeLinear -> "
                        "DequantizeLinear pairs (QDQ format)")
    return readers
