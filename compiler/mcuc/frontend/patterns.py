"""Fusions that recover the layers the exporters spell out op by op.

LayerNorm (LayerNormalization, or ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div and its
Mul-self / Reciprocal variants), Gelu (opset-20 Gelu is already canonical; the erf and
tanh forms in any operand order), and Linear (MatMul by a constant, Gemm, + bias Add).
Each runs after `Div by c -> Mul by 1/c`, `Sub c -> Add -c` and constants-second, so it
only needs to match Mul/Add spellings. Gelu's inner polynomial is checked numerically,
which accepts every algebraically equal arrangement the exporters may choose.
"""

from __future__ import annotations

import math

import numpy as np

from mcuc import McucError
from mcuc.frontend.rewrite import const, is_act, make, replace, scalar, shape, single_use
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph, Node


def _other(node: Node, name: str) -> str:
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _vector(g: Graph, name: str, dim: int) -> np.ndarray | None:
    """A constant that broadcasts as a [dim] vector over the last axis, as [dim]."""
    c = const(g, name)
    if c is None:
        return None
    if c.size == 1:
        return np.full(dim, c.reshape(-1)[0], np.float32)
    if c.shape and c.shape[-1] == dim and c.size == dim:
        return c.reshape(dim).astype(np.float32)
    return None


def reduce_last_axis(g: Graph, node: Node) -> bool:
    """A ReduceMean over exactly the last axis with keepdims."""
    if node.op != "ReduceMean" or not node.attrs.get("keepdims", 1):
        return False
    axes = node.attrs.get("axes")
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = const(g, node.inputs[1])
    if axes is None:
        return False
    axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    rank = len(shape(g, node.inputs[0]))
    return len(axes) == 1 and axes[0] % rank == rank - 1


# --- LayerNorm ---------------------------------------------------------------------------

def _layernorm(g: Graph, x: str, out_node: Node, gamma, beta, eps: float, drop: list[Node],
               name: str) -> None:
    dim = shape(g, x)[-1]
    gamma = np.ones(dim, np.float32) if gamma is None else gamma
    beta = np.zeros(dim, np.float32) if beta is None else beta
    gname = g.add_const(f"{name}.gamma", gamma.astype(np.float32))
    bname = g.add_const(f"{name}.beta", beta.astype(np.float32))
    ln = make("LayerNorm", [x, gname, bname], [out_node.outputs[0]], name, epsilon=float(eps))
    replace(g, out_node, [ln], drop)


def _affine_tail(g: Graph, users, start: str, dim: int) -> tuple:
    """Optional `* gamma` then `+ beta` after the normalized tensor."""
    gamma = beta = None
    nodes: list[Node] = []
    cur = start
    us = users.get(cur, [])
    if len(us) == 1 and us[0].op == "Mul" and cur not in g.outputs:
        gamma = _vector(g, _other(us[0], cur), dim)
        if gamma is not None:
            nodes.append(us[0])
            cur = us[0].outputs[0]
            us = users.get(cur, [])
    if len(us) == 1 and us[0].op == "Add" and cur not in g.outputs:
        beta = _vector(g, _other(us[0], cur), dim)
        if beta is not None:
            nodes.append(us[0])
    return gamma, beta, nodes


def fuse_layernorm(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op != "LayerNormalization":
            continue
        x = node.inputs[0]
        rank = len(shape(g, x))
        axis = int(node.attrs.get("axis", -1)) % rank
        if axis != rank - 1:
            raise McucError(f"LayerNormalization '{node.name}' normalizes over axes "
                            f"{list(range(axis, rank))}; mcuc supports the last axis only")
        users = g.consumers()
        if any(o and users.get(o) for o in node.outputs[1:]):
            raise McucError(f"LayerNormalization '{node.name}': its Mean/InvStdDev outputs "
                            "are used, which mcuc does not support")
        dim = shape(g, x)[-1]
        gamma = _vector(g, node.inputs[1], dim) if len(node.inputs) > 1 else None
        beta = _vector(g, node.inputs[2], dim) if len(node.inputs) > 2 else None
        for i, v in ((1, gamma), (2, beta)):
            if len(node.inputs) > i and node.inputs[i] and v is None:
                raise McucError(f"LayerNormalization '{node.name}': scale/bias must be "
                                f"constant vectors of size {dim}")
        node.outputs = node.outputs[:1]
        _layernorm(g, x, node, gamma, beta, node.attrs.get("epsilon", 1e-5), [], node.name)
    _fuse_decomposed_layernorm(g)


def _match_std(g: Graph, prod, name: str) -> tuple[str, list[Node], bool] | None:
    """`name` = sqrt(var + eps) (inv=False) or 1/sqrt(var + eps) (inv=True)."""
    p = prod.get(name)
    if p is None:
        return None
    if p.op == "Sqrt":
        return p.inputs[0], [p], False
    if p.op == "Pow" and scalar(g, p.inputs[1]) == -0.5:
        return p.inputs[0], [p], True
    if p.op == "Reciprocal" or (p.op == "Div" and scalar(g, p.inputs[0]) == 1.0):
        s = prod.get(p.inputs[-1])
        if s is not None and s.op == "Sqrt":
            return s.inputs[0], [p, s], True
    return None


def _fuse_decomposed_layernorm(g: Graph) -> None:
    changed = True
    while changed:
        changed = False
        prod, users = g.producers(), g.consumers()
        for n in g.nodes:
            if n.op not in ("Div", "Mul") or not all(is_act(g, i) for i in n.inputs):
                continue
            for d, s in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
                m = _match_layernorm_core(g, prod, n, d, s)
                if m is None:
                    continue
                x, eps, nodes = m
                internal = [o for k in nodes for o in k.outputs if k is not n]
                if not all(single_use(g, users, t, nodes) for t in internal):
                    continue
                gamma, beta, tail = _affine_tail(g, users, n.outputs[0], shape(g, x)[-1])
                end = tail[-1] if tail else n
                _layernorm(g, x, end, gamma, beta, eps, nodes + tail[:-1] if tail else nodes,
                           n.name.rsplit("/", 1)[0] + "/LayerNorm" if "/" in n.name
                           else f"{n.name}_layernorm")
                changed = True
                break
            if changed:
                break


def _mean_last(g: Graph, prod, name: str) -> tuple[str, list[Node]] | None:
    """`name` = mean over the last axis with the axis kept: ReduceMean(keepdims=1), or
    ReduceMean(keepdims=0) followed by a Reshape/Unsqueeze that restores the unit axis."""
    p = prod.get(name)
    if p is None:
        return None
    if reduce_last_axis(g, p):
        return p.inputs[0], [p]
    if p.op in ("Reshape", "Unsqueeze"):
        r = prod.get(p.inputs[0])
        if r is not None and r.op == "ReduceMean" and r.attrs.get("keepdims", 1) == 0:
            kept = Node(r.op, r.inputs, r.outputs, {**r.attrs, "keepdims": 1}, r.name)
            src = shape(g, r.inputs[0])
            if reduce_last_axis(g, kept) and shape(g, name) == src[:-1] + (1,):
                return r.inputs[0], [r, p]
    return None


def _match_layernorm_core(g: Graph, prod, n: Node, d: str, s: str):
    """Match n = (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps); (x, eps, nodes)."""
    if n.op == "Div" and d != n.inputs[0]:
        return None
    std = _match_std(g, prod, s)
    if std is None or std[2] != (n.op == "Mul"):
        return None
    ve, std_nodes, _ = std
    add, sub = prod.get(ve), prod.get(d)
    if add is None or add.op != "Add" or sub is None or sub.op != "Sub":
        return None
    eps = scalar(g, add.inputs[1])
    var = _mean_last(g, prod, add.inputs[0])
    if eps is None or var is None:
        return None
    sq = prod.get(var[0])
    if sq is None:
        return None
    if sq.op == "Pow" and scalar(g, sq.inputs[1]) == 2.0:
        d2 = sq.inputs[0]
    elif sq.op == "Mul" and sq.inputs[0] == sq.inputs[1]:
        d2 = sq.inputs[0]
    else:
        return None
    sub2 = prod.get(d2)
    if sub2 is None or sub2.op != "Sub" or sub2.inputs[0] != sub.inputs[0]:
        return None
    x = sub.inputs[0]
    nodes = [sub, sq, *var[1], add, *std_nodes, n]
    for sb in {id(sub): sub, id(sub2): sub2}.values():  # the two Subs may use two means
        mean = _mean_last(g, prod, sb.inputs[1])
        if mean is None or mean[0] != x:
            return None
        if sb is not sub:
            nodes.insert(0, sb)
        nodes[:0] = [m for m in mean[1] if all(m is not k for k in nodes)]
    return x, eps, nodes


# --- Linear ------------------------------------------------------------------------------

def fuse_linear(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op == "MatMul" and is_act(g, node.inputs[0]):
            w = const(g, node.inputs[1])
            if w is None or w.ndim < 2 or any(d != 1 for d in w.shape[:-2]):
                continue
            if len(shape(g, node.inputs[0])) < 2 and w.ndim > 2:
                continue
            out = node.outputs[0]
            if len(shape(g, out)) != len(shape(g, node.inputs[0])):
                continue  # the constant broadcast added batch dims: not a plain Linear
            wname = g.add_const(f"{node.name}.weight", np.ascontiguousarray(
                w.reshape(w.shape[-2:]).T.astype(np.float32)))
            replace(g, node, [make("Linear", [node.inputs[0], wname], [out], node.name)])
        elif node.op == "Gemm":
            _gemm(g, node)
    _fold_bias(g)


def _gemm(g: Graph, node: Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    w = const(g, b)
    if w is None or node.attrs.get("transA", 0) or not is_act(g, a):
        raise McucError(f"Gemm '{node.name}': mcuc needs an activation times a constant "
                        "weight (no transA)")
    w = w if node.attrs.get("transB", 0) else w.T
    w = (w * float(node.attrs.get("alpha", 1.0))).astype(np.float32)
    ins = [a, g.add_const(f"{node.name}.weight", np.ascontiguousarray(w))]
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = _vector(g, node.inputs[2], w.shape[0])
        if bias is None:
            raise McucError(f"Gemm '{node.name}': bias of shape "
                            f"{list(shape(g, node.inputs[2]))} is not a per-output vector")
        ins.append(g.add_const(f"{node.name}.bias",
                               bias * float(node.attrs.get("beta", 1.0))))
    replace(g, node, [make("Linear", ins, node.outputs[:1], node.name)])


def _fold_bias(g: Graph) -> None:
    """Linear followed by `+ b` (b a per-output vector) takes b as (part of) its bias.
    A QDQ model may quantize the product before the Add (onnxruntime's quantizer does):
    mcuc still rounds once, and counts it for the build's warning (quant/given.py)."""
    for node in list(g.nodes):
        if node.op != "Linear":
            continue
        users = g.consumers()
        out = node.outputs[0]
        us = users.get(out, [])
        if len(us) != 1 or us[0].op != "Add" or out in g.outputs:
            continue
        dim = const(g, node.inputs[1]).shape[0]
        add = us[0]
        b = _vector(g, _other(add, out), dim)
        if b is None or shape(g, add.outputs[0]) != shape(g, out):
            continue
        if len(node.inputs) > 2 and node.inputs[2]:
            b = b + const(g, node.inputs[2])
        node.inputs = [node.inputs[0], node.inputs[1], g.add_const(f"{node.name}.bias", b)]
        if g.given is not None and out in g.given.acts:
            g.given.products += 1
        g.nodes = [n for n in g.nodes if n is not add]
        node.outputs = [add.outputs[0]]
        g.tensors[add.outputs[0]].shape = g.tensors[out].shape


# --- Conv epilogues ----------------------------------------------------------------------

def fold_conv_affine(g: Graph) -> None:
    """Conv followed by BatchNormalization, `+ b[C,1,1]` or `* s[C,1,1]` folds into the
    Conv's weights and bias (eval-mode BN is a per-channel affine map)."""
    changed = True
    while changed:
        changed = False
        prod, users = g.producers(), g.consumers()
        for node in g.nodes:
            p = prod.get(node.inputs[0]) if node.inputs else None
            if p is None or p.op != "Conv" or not single_use(g, users, node.inputs[0], [node]):
                continue
            w = const(g, p.inputs[1])
            c = w.shape[0]
            b = const(g, p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else np.zeros(c)
            scale = shift = None
            if node.op == "BatchNormalization" and \
                    not any(o and users.get(o) for o in node.outputs[1:]) and \
                    all(const(g, i) is not None for i in node.inputs[1:5]):
                gam, beta, mean, var = (const(g, i).astype(np.float64) for i in node.inputs[1:5])
                scale = gam / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
                shift = beta - mean * scale
            elif node.op in ("Add", "Mul") and shape(g, node.outputs[0]) == shape(g, p.outputs[0]):
                v = const(g, node.inputs[1])
                if v is None or v.size not in (1, c) or (v.size == c and v.ndim >= 3 and
                                                         v.shape[-3:] != (c, 1, 1)):
                    continue
                if v.size == c and v.ndim < 3:
                    continue  # a [C] or [1, C] constant broadcasts over W, not channels
                v = np.broadcast_to(v.reshape(-1).astype(np.float64), (c,))
                scale, shift = (v, np.zeros(c)) if node.op == "Mul" else (np.ones(c), v)
            if scale is None:
                continue
            wn = g.add_const(f"{p.name}.weight", (w * scale[:, None, None, None]).astype(
                np.float32))
            bn = g.add_const(f"{p.name}.bias", (b * scale + shift).astype(np.float32))
            p.inputs = [p.inputs[0], wn, bn]
            p.outputs = [node.outputs[0]]
            g.nodes = [n for n in g.nodes if n is not node]
            changed = True
            break


# --- Gelu --------------------------------------------------------------------------------

_INNER = {"Erf": lambda x: x / math.sqrt(2.0),
          "Tanh": lambda x: math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)}
_ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Pow", "Sqrt", "Neg")


def _inner_nodes(g: Graph, prod, users, x: str, u: str, anchor: Node) -> list[Node] | None:
    """Nodes computing `u` from `x` and constants alone, checked against the Gelu formula."""
    order = {id(n): i for i, n in enumerate(g.nodes)}
    found: dict[int, Node] = {}
    stack = [u]
    while stack:
        t = stack.pop()
        if t == x or const(g, t) is not None:
            continue
        p = prod.get(t)
        if p is None or p.op not in _ELEMENTWISE or len(found) > 8:
            return None
        if id(p) not in found:
            found[id(p)] = p
            stack.extend(i for i in p.inputs if i)
    nodes = sorted(found.values(), key=lambda n: order[id(n)])
    if not nodes or not all(single_use(g, users, o, nodes + [anchor]) for n in nodes
                            for o in n.outputs):
        return None
    probe = np.linspace(-4.0, 4.0, 33, dtype=np.float32)
    env = {x: probe}
    try:
        for n in nodes:
            ins = [env[i] if i in env else const(g, i) for i in n.inputs]
            env[n.outputs[0]] = interpreter.run_node(n, ins)[0]
        got = env[u]
    except (McucError, KeyError):
        return None
    want = _INNER[anchor.op](probe.astype(np.float64))
    if got.shape != probe.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        return None
    return nodes


def fuse_gelu(g: Graph) -> None:
    for anchor in [n for n in g.nodes if n.op in _INNER]:
        prod, users = g.producers(), g.consumers()
        if anchor not in g.nodes:
            continue
        t = anchor.outputs[0]
        us = users.get(t, [])
        if len(us) != 1 or us[0].op != "Add" or scalar(g, _other(us[0], t)) != 1.0:
            continue
        nodes, cur, factor, x = [us[0]], us[0].outputs[0], 1.0, None
        for _ in range(3):
            us = users.get(cur, [])
            if len(us) != 1 or us[0].op != "Mul" or cur in g.outputs:
                break
            m, other = us[0], _other(us[0], cur)
            s = scalar(g, other)
            if s is not None:
                factor *= s
            elif x is None and is_act(g, other):
                x, extra = _gelu_input(g, prod, users, other, m, anchor)
                if extra is not None:
                    factor *= scalar(g, extra.inputs[1])
                    nodes.append(extra)
            else:
                break
            nodes.append(m)
            cur = m.outputs[0]
            if x is not None and abs(factor - 0.5) < 1e-6:
                inner = _inner_nodes(g, prod, users, x, anchor.inputs[0], anchor)
                if inner is None:
                    break
                approx = "none" if anchor.op == "Erf" else "tanh"
                gelu = make("Gelu", [x], [cur], anchor.name.rsplit("/", 1)[0] + "/Gelu"
                            if "/" in anchor.name else f"{anchor.name}_gelu",
                            approximate=approx)
                replace(g, m, [gelu], nodes + inner + [anchor])
                break


def _gelu_input(g: Graph, prod, users, other: str, m: Node, anchor: Node):
    """The Gelu input behind a Mul operand: `other` itself, or y when other = y * c."""
    p = prod.get(other)
    if p is not None and p.op == "Mul" and scalar(g, p.inputs[1]) is not None \
            and is_act(g, p.inputs[0]) and single_use(g, users, other, [m]):
        if _inner_nodes(g, prod, users, p.inputs[0], anchor.inputs[0], anchor) is not None:
            return p.inputs[0], p
    return other, None
