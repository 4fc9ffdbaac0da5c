"""Raw imported graph -> the canonical op set of `mcuc.ir.graph` (the quantizer's contract).

Order matters: fold constants (static shapes make every Shape/Expand/ConstantOfShape
chain constant), drop identities, rewrite constant arithmetic into Mul/Add with the
constant second, fuse LayerNorm / Linear / Gelu, then turn the shape ops into their
static canonical forms. What is left outside the set raises a one-line McucError.
"""

from __future__ import annotations

import copy

import numpy as np

from mcuc import McucError
from mcuc.frontend import patterns
from mcuc.frontend.onnx_import import infer_shapes
from mcuc.frontend.rewrite import (
    bypass,
    const,
    fold_constants,
    is_act,
    make,
    new_act,
    replace,
    scalar,
    shape,
    single_use,
    uniform,
)
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph, Node
from mcuc.text import fresh, one_line

CANONICAL = ("Conv", "Linear", "MatMul", "Add", "Mul", "LayerNorm", "Softmax", "Gelu", "Relu",
             "Sigmoid", "Tanh", "Erf", "Transpose", "Reshape", "Slice", "Concat", "ReduceMean")
_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def canonicalize(graph: Graph) -> Graph:
    """A new Graph holding only canonical ops, constants folded, dead code pruned."""
    g = copy.deepcopy(graph)
    infer_shapes(g)  # cheap, and makes hand-built graphs without shapes acceptable
    fold_constants(g)
    _drop_identities(g)
    _constant_arith(g)
    fold_constants(g)
    patterns.fuse_layernorm(g)
    patterns.fuse_linear(g)
    patterns.fold_conv_affine(g)
    patterns.fuse_gelu(g)
    _activation_arith(g)
    for node in list(g.nodes):
        fix = _SHAPE_FIXES.get(node.op)
        if fix is not None:
            fix(g, node)
    _simplify(g)
    g.prune()
    infer_shapes(g)
    _unique_names(g)
    verify(g)
    return g


def _drop_identities(g: Graph) -> None:
    for node in list(g.nodes):
        x = node.inputs[0] if node.inputs else ""
        if not is_act(g, x):
            continue
        same = shape(g, node.outputs[0]) == shape(g, x)
        if node.op in ("Identity", "Dropout"):
            if len(node.outputs) > 1 and node.outputs[1] and g.consumers().get(node.outputs[1]):
                raise McucError(f"Dropout '{node.name}': its mask output is used")
            bypass(g, node, x)
        elif node.op in ("Cast", "CastLike", "Expand") and same and \
                g.tensors[node.outputs[0]].dtype == g.tensors[x].dtype:
            bypass(g, node, x)


def _constant_arith(g: Graph) -> None:
    """Div by c -> Mul by 1/c, Sub c -> Add -c, Neg -> Mul -1, constants second."""
    for node in list(g.nodes):
        a, b = (node.inputs + ["", ""])[:2]
        if node.op in ("Add", "Mul") and const(g, a) is not None and is_act(g, b):
            node.inputs = [b, a]
        elif node.op == "Div" and is_act(g, a) and const(g, b) is not None:
            c = const(g, b).astype(np.float32)
            if not np.all(c != 0):
                raise McucError(f"Div '{one_line(node.name)}' divides by a constant 0")
            node.op, node.inputs = "Mul", [a, g.add_const(f"{node.name}.recip", 1.0 / c)]
        elif node.op == "Sub" and is_act(g, a) and const(g, b) is not None:
            c = const(g, b).astype(np.float32)
            node.op, node.inputs = "Add", [a, g.add_const(f"{node.name}.neg", -c)]
        elif node.op == "Neg" and is_act(g, a):
            node.op, node.inputs = "Mul", [a, g.add_const(f"{node.name}.minus1",
                                                          np.float32(-1.0))]
        elif node.op == "Sub" and const(g, a) is not None and is_act(g, b):
            neg = new_act(g, f"{node.name}.neg_out", shape(g, b))
            m = make("Mul", [b, g.add_const(f"{node.name}.minus1", np.float32(-1.0))], [neg],
                     f"{node.name}/neg")
            node.op, node.inputs = "Add", [neg, a]
            replace(g, node, [m, node])


def _activation_arith(g: Graph) -> None:
    """After fusion: Sub of activations -> Add + Mul -1; scalar Mul/Add constants tidied."""
    for node in list(g.nodes):
        a, b = (node.inputs + ["", ""])[:2]
        if node.op == "Sub" and is_act(g, a) and is_act(g, b):
            neg = new_act(g, f"{node.name}.neg_out", shape(g, b))
            m = make("Mul", [b, g.add_const(f"{node.name}.minus1", np.float32(-1.0))], [neg],
                     f"{node.name}/neg")
            node.op, node.inputs = "Add", [a, neg]
            replace(g, node, [m, node])
            a, b = node.inputs
        if node.op == "Mul" and is_act(g, a) and const(g, b) is not None:
            _scalar_mul(g, node)
        elif node.op == "Add" and is_act(g, a):
            _suffix_add(g, node)


def _scalar_mul(g: Graph, node: Node) -> None:
    x, c = node.inputs
    if shape(g, node.outputs[0]) != shape(g, x):
        return  # the constant broadcasts the activation up: verify() reports it
    v = uniform(g, c)
    if v is not None:
        node.inputs = [x, g.add_const(f"{node.name}.scale", np.float32(v))]
        return
    # a per-output-channel scale right after a Linear folds into its weights
    prod, users = g.producers(), g.consumers()
    p = prod.get(x)
    vec = const(g, c)
    dim = shape(g, x)[-1]
    if p is not None and p.op == "Linear" and single_use(g, users, x, [node]) and \
            vec.size == dim and vec.shape[-1] == dim:
        s = vec.reshape(dim).astype(np.float32)
        ins = [p.inputs[0], g.add_const(f"{p.name}.weight", const(g, p.inputs[1]) * s[:, None])]
        if len(p.inputs) > 2 and p.inputs[2]:
            ins.append(g.add_const(f"{p.name}.bias", const(g, p.inputs[2]) * s))
        p.inputs = ins
        bypass(g, node, x)


def _suffix_add(g: Graph, node: Node) -> None:
    a, b = node.inputs
    out = shape(g, node.outputs[0])
    if is_act(g, b):
        if shape(g, a) != out and shape(g, b) == out:
            node.inputs = [b, a]
        return
    c = const(g, b)
    if c is None or shape(g, a) != out:
        return
    sa = shape(g, a)
    aligned = c.reshape((1,) * (len(sa) - c.ndim) + c.shape) if c.ndim <= len(sa) else c
    if aligned.ndim != len(sa):
        return
    first = next((i for i, d in enumerate(aligned.shape) if d != 1), len(sa) - 1)
    first = min(first, len(sa) - 1) if sa else 0
    full = np.broadcast_to(aligned, sa)[(0,) * first] if sa else aligned
    if tuple(full.shape) != tuple(c.shape):
        node.inputs = [a, g.add_const(f"{node.name}.bias", np.ascontiguousarray(full))]


# --- shape ops -> static canonical forms -------------------------------------------------

def _to_reshape(g: Graph, node: Node) -> None:
    if not is_act(g, node.inputs[0]):
        return
    node.op, node.inputs = "Reshape", node.inputs[:1]
    node.attrs = {"shape": [int(d) for d in shape(g, node.outputs[0])]}


def _slice(g: Graph, node: Node) -> None:
    x = node.inputs[0]
    if not is_act(g, x):
        return
    ins = [const(g, i) if i else None for i in node.inputs]
    if any(i and v is None for i, v in zip(node.inputs[1:], ins[1:], strict=True)):
        raise McucError(f"Slice '{node.name}': starts/ends/axes/steps must be constant")
    dims = shape(g, x)
    resolved: dict[int, tuple[int, int, int]] = {}
    for s, e, a, k in zip(*interpreter.slice_params(node, ins), strict=True):
        a %= len(dims)
        big = 2**62
        start, stop, step = slice(max(min(s, big), -big), max(min(e, big), -big),
                                  k).indices(dims[a])
        if step < 0 and stop < 0:
            stop = -(dims[a] + 1)  # "before index 0", which -1 would not mean in ONNX
        resolved[a] = (start, stop, step)
    keep = {a: v for a, v in sorted(resolved.items()) if v != (0, dims[a], 1)}
    node.op, node.inputs = "Slice", [x]
    node.attrs = {"starts": [v[0] for v in keep.values()], "ends": [v[1] for v in keep.values()],
                  "axes": list(keep), "steps": [v[2] for v in keep.values()]}
    if not keep:
        bypass(g, node, x)


def _gather(g: Graph, node: Node) -> None:
    x, idx = node.inputs[0], const(g, node.inputs[1])
    if not is_act(g, x):
        return
    if idx is None:
        raise McucError(f"Gather '{node.name}': mcuc needs constant indices")
    dims = shape(g, x)
    axis = int(node.attrs.get("axis", 0)) % len(dims)
    flat = [int(i) % dims[axis] for i in idx.reshape(-1)]
    if not flat or flat != list(range(flat[0], flat[0] + len(flat))):
        raise McucError(f"Gather '{node.name}': indices {flat[:8]} are not a contiguous range")
    sl_out = dims[:axis] + (len(flat),) + dims[axis + 1:]
    attrs = {"starts": [flat[0]], "ends": [flat[-1] + 1], "axes": [axis], "steps": [1]}
    if idx.ndim == 1:
        node.op, node.inputs, node.attrs = "Slice", [x], attrs
        return
    mid = new_act(g, f"{node.name}.slice_out", sl_out, g.tensors[x].dtype)
    sl = make("Slice", [x], [mid], f"{node.name}/Slice", **attrs)
    rs = make("Reshape", [mid], node.outputs, node.name,
              shape=[int(d) for d in shape(g, node.outputs[0])])
    replace(g, node, [sl, rs])


def _split(g: Graph, node: Node) -> None:
    x = node.inputs[0]
    if not is_act(g, x):
        return
    axis = int(node.attrs.get("axis", 0)) % len(shape(g, x))
    start, new = 0, []
    for k, out in enumerate(node.outputs):
        n = shape(g, out)[axis]
        if out:
            new.append(make("Slice", [x], [out], f"{node.name}_{k}", starts=[start],
                            ends=[start + n], axes=[axis], steps=[1]))
        start += n
    replace(g, node, new)


def _softmax(g: Graph, node: Node) -> None:
    rank = len(shape(g, node.inputs[0]))
    axis = int(node.attrs.get("axis", -1)) % rank
    if axis != rank - 1:
        raise McucError(f"Softmax '{node.name}' is over axis {axis} of a rank-{rank} tensor; "
                        "mcuc supports the last axis only")
    node.attrs = {"axis": rank - 1}


def _reduce_mean(g: Graph, node: Node) -> None:
    x = node.inputs[0]
    rank = len(shape(g, x))
    axes = node.attrs.get("axes")
    if len(node.inputs) > 1 and node.inputs[1]:
        if const(g, node.inputs[1]) is None:
            raise McucError(f"ReduceMean '{node.name}': axes must be constant")
        axes = const(g, node.inputs[1]).reshape(-1)
    if axes is None or len(axes) == 0:
        if node.attrs.get("noop_with_empty_axes", 0):
            bypass(g, node, x)
            return
        axes = range(rank)
    node.inputs = [x]
    node.attrs = {"axes": sorted({int(a) % rank for a in axes}),
                  "keepdims": int(node.attrs.get("keepdims", 1))}


def _transpose(g: Graph, node: Node) -> None:
    rank = len(shape(g, node.inputs[0]))
    perm = [int(p) % rank for p in node.attrs.get("perm", range(rank - 1, -1, -1))]
    node.attrs = {"perm": perm}
    if perm == list(range(rank)):
        bypass(g, node, node.inputs[0])


def _concat(g: Graph, node: Node) -> None:
    rank = len(shape(g, node.outputs[0]))
    node.inputs = [i for i in node.inputs if i and g.tensors[i].size > 0]
    node.attrs = {"axis": int(node.attrs["axis"]) % rank}


def _conv(g: Graph, node: Node) -> None:
    x, w = node.inputs[0], const(g, node.inputs[1])
    if w is None or w.ndim != 4:
        raise McucError(f"Conv '{node.name}': mcuc supports 2-D convolutions with constant "
                        "weights")
    if int(node.attrs.get("group", 1)) != 1:
        raise McucError(f"Conv '{node.name}' has group={node.attrs['group']}; mcuc supports "
                        "group 1 only")
    if any(int(d) != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise McucError(f"Conv '{node.name}' has dilations={list(node.attrs['dilations'])}; "
                        "mcuc supports dilation 1 only")
    pads = interpreter.conv_pads(node, shape(g, x)[2:], w.shape[2:])
    node.attrs = {"strides": [int(s) for s in node.attrs.get("strides", [1, 1])],
                  "pads": [int(p) for p in pads], "kernel_shape": list(w.shape[2:])}


_SHAPE_FIXES = {**dict.fromkeys(_RESHAPES, _to_reshape), "Slice": _slice, "Gather": _gather,
                "Split": _split, "Softmax": _softmax, "ReduceMean": _reduce_mean,
                "Transpose": _transpose, "Concat": _concat, "Conv": _conv}


def _simplify(g: Graph) -> None:
    """Merge Reshape chains; drop Reshapes that keep the shape."""
    for node in list(g.nodes):
        if node.op != "Reshape" or node not in g.nodes:
            continue
        x = node.inputs[0]
        p = g.producers().get(x)
        if p is not None and p.op == "Reshape" and single_use(g, g.consumers(), x, [node]):
            node.inputs = list(p.inputs)
            g.nodes = [n for n in g.nodes if n is not p]
            x = node.inputs[0]
        if shape(g, x) == shape(g, node.outputs[0]):
            bypass(g, node, x)


def _unique_names(g: Graph) -> None:
    seen: set[str] = set()
    for i, n in enumerate(g.nodes):
        n.name = fresh(n.name or f"{n.op}_{i}", seen)
        seen.add(n.name)


def verify(g: Graph) -> None:
    """Every node is canonical and meets the contract's operand rules."""
    for n in g.nodes:
        where = f"at node '{n.name}'"
        if n.op not in CANONICAL:
            raise McucError(f"op '{n.op}' {where} has no mcuc equivalent after "
                            f"canonicalization (canonical ops: {', '.join(CANONICAL)})")
        ins = [i for i in n.inputs if i]
        if n.op == "Mul":
            if not is_act(g, ins[0]) or scalar(g, ins[1]) is None:
                kind = "two activations" if is_act(g, ins[1]) else "a non-scalar constant"
                raise McucError(f"Mul of {kind} {where} is not supported (mcuc multiplies "
                                "activations by scalar constants only)")
        elif n.op == "MatMul":
            sa, sb = shape(g, ins[0]), shape(g, ins[1])
            if not (is_act(g, ins[0]) and is_act(g, ins[1])) or len(sa) != len(sb) \
                    or sa[:-2] != sb[:-2]:
                raise McucError(f"MatMul {where} needs two activations with equal batch dims "
                                f"(got {list(sa)} x {list(sb)})")
        elif n.op == "Add":
            sa, sb = shape(g, ins[0]), shape(g, ins[1])
            if sa != shape(g, n.outputs[0]) or (sb and sa[len(sa) - len(sb):] != sb):
                raise McucError(f"Add {where}: {list(sb)} does not broadcast onto {list(sa)} "
                                "as a suffix")
        elif n.op in ("Linear", "Conv", "LayerNorm"):
            if not is_act(g, ins[0]) or any(const(g, i) is None for i in ins[1:]):
                raise McucError(f"{n.op} {where} needs constant parameters")
        elif n.op != "Concat" and not is_act(g, ins[0]):
            raise McucError(f"{n.op} {where} reads a constant where mcuc expects an activation")
