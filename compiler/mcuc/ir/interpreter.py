"""The float reference: evaluate a Graph with numpy, one node at a time.

It runs both raw imported graphs (ONNX ops, opsets 17-20, shape arithmetic included) and
canonical graphs, so it doubles as the constant folder and the shape inferencer of the
frontend, and as the calibration engine of the quantizer. Activations stay float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuc import McucError
from mcuc.ir.graph import Graph, Node

Arr = np.ndarray
OpFn = Callable[[Node, list], list]
OPS: dict[str, OpFn] = {}

# ONNX TensorProto data type codes -> numpy (Cast's `to`, ConstantOfShape values)
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
               7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
               13: np.uint64}


def op(*names: str) -> Callable[[OpFn], OpFn]:
    def register(fn: OpFn) -> OpFn:
        for n in names:
            OPS[n] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    return sorted(OPS)


def erf(x: Arr) -> Arr:
    """erf to ~1e-7 (Numerical Recipes erfc, Chebyshev fit); numpy has none, scipy is no dep."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, r, -r).astype(x.dtype)


def gelu(x: Arr, approximate: str = "none") -> Arr:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axes(node: Node, ins: list, pos: int) -> list[int] | None:
    """Axes given as an input (newer opsets) or as an attribute (older ones)."""
    if len(ins) > pos and ins[pos] is not None:
        return _ints(ins[pos])
    a = node.attrs.get("axes")
    return None if a is None else [int(i) for i in a]


def _like(y, x: Arr) -> Arr:
    return np.asarray(y, dtype=x.dtype)


# --- elementwise -------------------------------------------------------------------------

def _binary(fn: Callable[[Arr, Arr], Arr]) -> OpFn:
    return lambda node, ins: [np.asarray(fn(ins[0], ins[1]))]


def _int_div(a: Arr, b: Arr) -> Arr:
    if np.issubdtype(np.asarray(a).dtype, np.integer):
        return np.trunc(np.asarray(a) / np.asarray(b)).astype(np.asarray(a).dtype)
    return np.asarray(a / b, dtype=np.result_type(a, b))


for _name, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _int_div,
                   "Equal": np.equal, "Less": np.less, "Greater": np.greater,
                   "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
                   "And": np.logical_and, "Or": np.logical_or, "Max": np.maximum,
                   "Min": np.minimum}.items():
    OPS[_name] = _binary(_fn)


_UNARY: dict[str, Callable[[Arr], Arr]] = {
    "Sqrt": np.sqrt, "Tanh": np.tanh, "Relu": lambda x: np.maximum(x, 0), "Exp": np.exp,
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "Erf": erf, "Neg": np.negative,
    "Abs": np.abs, "Log": np.log, "Reciprocal": lambda x: 1.0 / x, "Not": np.logical_not,
    "Floor": np.floor, "Ceil": np.ceil,
}
for _name, _u in _UNARY.items():
    OPS[_name] = (lambda f: lambda node, ins: [_like(f(ins[0]), ins[0])])(_u)


_SIMPLE: dict[str, OpFn] = {
    "Pow": lambda n, i: [_like(np.power(i[0], i[1]), i[0])],
    "Mod": lambda n, i: [(np.fmod if n.attrs.get("fmod", 0) else np.mod)(i[0], i[1])],
    "Gelu": lambda n, i: [_like(gelu(i[0], n.attrs.get("approximate", "none")), i[0])],
    "Where": lambda n, i: [np.where(i[0], i[1], i[2])],
    "Transpose": lambda n, i: [np.transpose(i[0], n.attrs.get("perm"))],
    "Concat": lambda n, i: [np.concatenate([x for x in i if x is not None],
                                           axis=int(n.attrs["axis"]))],
    "Size": lambda n, i: [np.array(i[0].size, dtype=np.int64)],
    "Tile": lambda n, i: [np.tile(i[0], _ints(i[1]))],
}
OPS.update(_SIMPLE)


@op("Identity", "Dropout")
def _identity(node: Node, ins: list) -> list:
    outs = [ins[0]]
    if len(node.outputs) > 1:  # Dropout's optional mask
        outs.append(np.ones(ins[0].shape, dtype=bool))
    return outs


@op("Cast", "CastLike")
def _cast(node: Node, ins: list) -> list:
    dt = ins[1].dtype if node.op == "CastLike" else ONNX_DTYPES[int(node.attrs["to"])]
    return [np.asarray(ins[0]).astype(dt)]


# --- linear algebra and normalization ----------------------------------------------------

def _post_scale(node: Node, y: Arr) -> Arr:
    """`post_scale` is set by the scheduler's scalar-Mul fusion on Linear/MatMul/Conv."""
    s = node.attrs.get("post_scale")
    return y if s is None else (y * np.float32(s)).astype(y.dtype)


@op("MatMul")
def _matmul(node: Node, ins: list) -> list:
    return [_post_scale(node, np.matmul(ins[0], ins[1]))]


@op("Linear")
def _linear(node: Node, ins: list) -> list:
    y = np.matmul(ins[0], ins[1].T)
    if len(ins) > 2 and ins[2] is not None:
        y = y + ins[2]
    return [_post_scale(node, y)]


@op("Gemm")
def _gemm(node: Node, ins: list) -> list:
    a, b = ins[0], ins[1]
    a = a.T if node.attrs.get("transA", 0) else a
    b = b.T if node.attrs.get("transB", 0) else b
    y = np.float32(node.attrs.get("alpha", 1.0)) * (a @ b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + np.float32(node.attrs.get("beta", 1.0)) * ins[2]
    return [_like(y, a)]


def conv_pads(node: Node, in_hw: tuple[int, ...], k_hw: tuple[int, ...]) -> list[int]:
    """Explicit ONNX pads (begins..., ends...), auto_pad resolved."""
    nd = len(k_hw)
    strides = list(node.attrs.get("strides", [1] * nd))
    dil = list(node.attrs.get("dilations", [1] * nd))
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for i in range(nd):
            out = -(-in_hw[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (k_hw[i] - 1) * dil[i] + 1 - in_hw[i])
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        return begins + ends
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(node.attrs.get("pads", [0] * (2 * nd)))


@op("Conv")
def _conv(node: Node, ins: list) -> list:
    x, w = ins[0], ins[1]
    if x.ndim != 4:
        raise McucError(f"Conv '{node.name}': only 2-D (NCHW) convolutions are supported")
    kh, kw = w.shape[2:]
    sh, sw = node.attrs.get("strides", [1, 1])
    dh, dw = node.attrs.get("dilations", [1, 1])
    group = int(node.attrs.get("group", 1))
    t, l, b, r = conv_pads(node, x.shape[2:], (kh, kw))
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1),
                                                   axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, OH, OW, KH, KW]
    n, c, oh, ow = win.shape[:4]
    cg, og = c // group, w.shape[0] // group
    outs = []
    for g in range(group):
        wg = w[g * og:(g + 1) * og]
        outs.append(np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], wg,
                              optimize=True))
    y = np.concatenate(outs, axis=1)
    if len(ins) > 2 and ins[2] is not None:
        y = y + ins[2].reshape(1, -1, 1, 1)
    return [_post_scale(node, y.astype(x.dtype))]


@op("Softmax")
def _softmax(node: Node, ins: list) -> list:
    x = ins[0]
    axis = int(node.attrs.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [_like(e / e.sum(axis=axis, keepdims=True), x)]


@op("BatchNormalization")
def _batchnorm(node: Node, ins: list) -> list:
    """Inference form only (running statistics), as eval-mode exports emit."""
    x, scale, bias, mean, var = ins[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    s = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    y = (x - mean.reshape(shape)) * s.reshape(shape) + bias.reshape(shape)
    return [_like(y, x)]


def layer_norm(x: Arr, gamma, beta, axis: int, eps: float) -> Arr:
    axes = tuple(range(axis % x.ndim, x.ndim))
    xd = x.astype(np.float64)
    mean = xd.mean(axis=axes, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (xd - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype)


@op("LayerNormalization", "LayerNorm")
def _layernorm(node: Node, ins: list) -> list:
    x = ins[0]
    gamma = ins[1] if len(ins) > 1 else None
    beta = ins[2] if len(ins) > 2 else None
    axis = int(node.attrs.get("axis", -1))
    eps = float(node.attrs.get("epsilon", 1e-5))
    y = layer_norm(x, gamma, beta, axis, eps)
    outs = [y]
    if len(node.outputs) > 1:  # optional Mean / InvStdDev outputs
        axes = tuple(range(axis % x.ndim, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        outs += [mean, 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)]
    return outs[: len(node.outputs)]


def _reduce(fn: Callable) -> OpFn:
    def run_reduce(node: Node, ins: list) -> list:
        x = ins[0]
        axes = _axes(node, ins, 1)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.ndim))
        return [_like(fn(x, axis=tuple(a % x.ndim for a in axes), keepdims=keep), x)]
    return run_reduce


for _name, _r in {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max,
                  "ReduceMin": np.min, "ReduceProd": np.prod}.items():
    OPS[_name] = _reduce(_r)


# --- shapes and data movement ------------------------------------------------------------

@op("Reshape")
def _reshape(node: Node, ins: list) -> list:
    x = ins[0]
    if "shape" in node.attrs:  # canonical form: static shape attribute
        return [x.reshape([int(d) for d in node.attrs["shape"]])]
    shape = _ints(ins[1])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


@op("Flatten")
def _flatten(node: Node, ins: list) -> list:
    x = ins[0]
    axis = int(node.attrs.get("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


@op("Squeeze")
def _squeeze(node: Node, ins: list) -> list:
    axes = _axes(node, ins, 1)
    x = ins[0]
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]


@op("Unsqueeze")
def _unsqueeze(node: Node, ins: list) -> list:
    x = ins[0]
    axes = sorted(a % (x.ndim + len(_axes(node, ins, 1))) for a in _axes(node, ins, 1))
    for a in axes:
        x = np.expand_dims(x, a)
    return [x]


@op("Gather")
def _gather(node: Node, ins: list) -> list:
    x, idx = ins[0], np.asarray(ins[1]).astype(np.int64)
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    return [np.take(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)]


def slice_params(node: Node, ins: list) -> tuple[list[int], list[int], list[int], list[int]]:
    """(starts, ends, axes, steps) of a raw (input-based) or canonical (attribute) Slice."""
    if "starts" in node.attrs:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes = node.attrs.get("axes")
        steps = node.attrs.get("steps")
    else:
        starts, ends = _ints(ins[1]), _ints(ins[2])
        axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else None
        steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    return [int(s) for s in starts], [int(e) for e in ends], axes, steps


@op("Slice")
def _slice(node: Node, ins: list) -> list:
    x = ins[0]
    index = [slice(None)] * x.ndim
    for s, e, a, k in zip(*slice_params(node, ins), strict=True):
        big = 2**62
        index[a % x.ndim] = slice(max(min(s, big), -big), max(min(e, big), -big), k)
    return [x[tuple(index)]]


@op("Split")
def _split(node: Node, ins: list) -> list:
    x = ins[0]
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    if len(ins) > 1 and ins[1] is not None:
        sizes = _ints(ins[1])
    elif "split" in node.attrs:
        sizes = [int(s) for s in node.attrs["split"]]
    else:
        n = int(node.attrs.get("num_outputs", len(node.outputs)))
        chunk = -(-x.shape[axis] // n)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(n)]
    bounds = np.cumsum([0] + sizes)
    return [np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis) for i in range(len(sizes))]


@op("Shape")
def _shape(node: Node, ins: list) -> list:
    shape = np.array(ins[0].shape, dtype=np.int64)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    return [shape[start:None if end is None else int(end)]]


@op("Constant")
def _constant(node: Node, ins: list) -> list:
    return [constant_value(node)]


def constant_value(node: Node) -> Arr:
    a = node.attrs
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dt)
    if "value" in a:
        return np.asarray(a["value"])
    raise McucError(f"Constant '{node.name}': unsupported value attribute {sorted(a)}")


@op("ConstantOfShape")
def _constant_of_shape(node: Node, ins: list) -> list:
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32))).reshape(-1)
    return [np.full(_ints(ins[0]), value[0], dtype=value.dtype)]


@op("Expand")
def _expand(node: Node, ins: list) -> list:
    x = ins[0]
    shape = np.broadcast_shapes(x.shape, tuple(_ints(ins[1])))
    return [np.array(np.broadcast_to(x, shape))]


@op("Range")
def _range(node: Node, ins: list) -> list:
    start, limit, delta = (np.asarray(v).reshape(()) for v in ins[:3])
    return [np.arange(start, limit, delta).astype(np.asarray(ins[0]).dtype)]


# --- the driver --------------------------------------------------------------------------

_BROADCASTING = {"Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater", "LessOrEqual",
                 "GreaterOrEqual", "And", "Or", "Max", "Min", "Pow", "Mod", "Where"}


def _planned_elements(node: Node, ins: list) -> int:
    """Elements of the output of an op whose size comes from values or broadcasting
    (a model can ask ConstantOfShape for 2^60 of them), known before it is allocated;
    0 where the output is no larger than an input."""
    if node.op in _BROADCASTING:
        shapes = [np.shape(x) for x in ins if x is not None]
        return int(np.prod(np.broadcast_shapes(*shapes), dtype=object)) if shapes else 0
    if node.op == "ConstantOfShape":
        return int(np.prod(_ints(ins[0]), dtype=object))
    if node.op == "Expand":
        return int(np.prod(np.broadcast_shapes(np.shape(ins[0]), tuple(_ints(ins[1]))),
                           dtype=object))
    if node.op == "Tile":
        return int(np.size(ins[0])) * int(np.prod(_ints(ins[1]), dtype=object))
    if node.op == "Range":
        start, limit, delta = (float(np.asarray(v).reshape(())) for v in ins[:3])
        return int(max(0.0, np.ceil((limit - start) / delta))) if delta else 0
    return 0


def run_node(node: Node, ins: list) -> list[Arr]:
    """Evaluate one node; any failure becomes a one-line McucError naming the node."""
    from mcuc.limits import MAX_ACTIVATION_ELEMENTS

    fn = OPS.get(node.op)
    if fn is None:
        raise McucError(f"unsupported op '{node.op}' at node '{node.name}' "
                        f"(supported: {', '.join(supported_ops())})")
    try:
        n = _planned_elements(node, ins)
        if n > MAX_ACTIVATION_ELEMENTS or n < 0:
            raise McucError(f"node '{node.name}' ({node.op}) would make {n:,} elements; the "
                            f"limit is {MAX_ACTIVATION_ELEMENTS:,}")
        outs = fn(node, ins)
    except McucError:
        raise
    except Exception as e:  # numpy shape errors and the like, on a malformed graph
        msg = str(e).replace("\n", " ")
        raise McucError(
            f"node '{node.name}' ({node.op}) failed: {type(e).__name__}: {msg}") from None
    return [np.asarray(o) for o in outs]


def run(graph: Graph, feeds: dict[str, np.ndarray], keep_all: bool = False) -> dict[str, Arr]:
    """Evaluate `graph` on `feeds`; graph outputs, or every activation when `keep_all`."""
    env: dict[str, Arr] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise McucError(f"no value fed for graph input '{name}'")
        t = graph.tensors[name]
        x = np.asarray(feeds[name], dtype=t.dtype)
        if t.shape and tuple(x.shape) != tuple(t.shape):
            raise McucError(f"input '{name}' has shape {list(x.shape)}; the model expects "
                            f"{list(t.shape)}")
        env[name] = x
    for node in graph.nodes:
        ins = []
        for i in node.inputs:
            if not i:
                ins.append(None)
            elif i in env:
                ins.append(env[i])
            else:
                data = graph.const(i)
                if data is None:
                    raise McucError(f"node '{node.name}' reads '{i}', which nothing computes")
                ins.append(data)
        for name, value in zip(node.outputs, run_node(node, ins), strict=False):
            if name:
                env[name] = value
    if keep_all:
        return env
    return {o: env[o] if o in env else np.asarray(graph.const(o)) for o in graph.outputs}
