"""The ops of models/qat.py's forward: each computes mcuc's integer result of one
graph node (the lowering's parameters, the kernels' references or the same integers
faster) and the float result whose gradient it carries (see models/qat.py).

Each op mirrors one lower_* rule of schedule/lower.py; the schedule passes that follow
lowering (fusions, views, zero-point folding) leave the integers as they are, so they
need no counterpart here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mcuc import McucError
from mcuc.kernels import add as k_add
from mcuc.kernels import layernorm as k_ln
from mcuc.kernels import lut as k_lut
from mcuc.kernels import softmax as k_softmax
from mcuc.kernels.fixedpoint import (
    clamp_s8,
    quantize_multiplier,
    quantize_multipliers,
    rdbpot,
    requantize,
    sat32,
)
from mcuc.models.vit import VisionTransformer
from mcuc.quant.qparams import SOFTMAX_OUT, QParams, quantize_weighted
from mcuc.schedule.lower import _gelu

VIEWS = ("Reshape", "Transpose", "Slice")


@dataclass
class QT:
    """One int8 activation: its codes (int64 numpy, batch first), its value with the
    float op's gradient (torch), and its QParams."""

    q: np.ndarray
    v: torch.Tensor
    qp: QParams


def dequant(q: np.ndarray, qp: QParams) -> torch.Tensor:
    return torch.from_numpy(qp.dequantize(q).astype(np.float32))


def ste(q: np.ndarray, qp: QParams, f: torch.Tensor) -> QT:
    """The integer result `q` as the value, the float result `f`'s gradient."""
    return QT(q, f + (dequant(q, qp) - f).detach(), qp)


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer a @ b: |a| <= 255, |b| <= 255 and k < 2^20 keep every partial sum
    below 2^53, so float64 (BLAS, any summation order) is exact."""
    if a.shape[-1] >= 1 << 20:
        raise McucError("int_matmul: k too large for exact float64 sums")
    return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)


def requant_s8(acc: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int,
               zp: int) -> np.ndarray:
    """clamp(zp + fixedpoint.requantize(sat32(acc), mult, shift)) as int64 codes.

    fixedpoint.requantize computes both of its branches (shift > 0 and <= 0) with
    np.where; the multipliers the lowering makes are positive and below 2^31, and almost
    always have shift <= 0, where only the second branch matters, and its rounding
    division by 2^31 can be done with shifts and masks: the same integers (tests/test_qat.py
    compares the two on int32 extremes and random values) at a third of the cost, which
    is most of a QAT step. Other multipliers take fixedpoint.requantize itself."""
    acc = sat32(acc)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift > 0) or np.any(mult <= 0) or np.any(mult >= 1 << 31):
        return clamp_s8(zp + requantize(acc, mult, shift)).astype(np.int64)
    low = np.int64((1 << 31) - 1)
    ab = acc * mult
    num = ab + np.int64(1 << 30) - ((ab >> 63) & low)  # + 2^30, or + 1 - 2^30 below 0
    high = (num + ((num >> 63) & low)) >> 31           # num / 2^31, truncated as C does
    return clamp_s8(zp + rdbpot(high, -shift)).astype(np.int64)


def add_table(p: dict) -> np.ndarray:
    """add.ref of every (a, b) pair of int8 codes, [256, 256]: the sum is a function of
    the two codes alone, so one lookup per element replaces three requantizations."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    pp = {**p, "size": a.size, "b_size": a.size}
    return k_add.ref(pp, a.reshape(-1).astype(np.int8),
                     b.reshape(-1).astype(np.int8)).astype(np.int64).reshape(256, 256)


class Tape:
    """The exported graph's compute nodes in order (views skipped: they keep their
    input's QParams), and the QParams mcuc's calibration gave each tensor."""

    def __init__(self, graph, qparams: dict[str, QParams], check: bool = False) -> None:
        self.graph = graph
        self.check = check
        self.qparams = qparams
        self.nodes = [n for n in graph.nodes if n.op not in VIEWS]
        self.pos = 0

    def next(self, op: str):
        if self.pos >= len(self.nodes):
            raise McucError(f"QAT: the exported graph ended where a {op} was expected")
        node = self.nodes[self.pos]
        if node.op != op:
            raise McucError(f"QAT: exported graph has {node.op} '{node.name}' where the "
                            f"module computes {op} (an unsupported model structure)")
        self.pos += 1
        return node

    def qp(self, tensor: str) -> QParams:
        return self.qparams[tensor]

    def const(self, tensor: str) -> np.ndarray:
        return np.asarray(self.graph.const(tensor))


def _same(tape: Tape, tensor: str, value: torch.Tensor, what: str) -> np.ndarray:
    """The module's parameter as numpy float32; on a checked tape (the graph exported
    from these very weights) first checked to be the graph's constant, exactly (the
    frontend may drop leading 1 axes, as of the positional embedding)."""
    v = value.detach().cpu().numpy()
    if tape.check:
        c = tape.const(tensor)
        if c.size != v.size or not np.array_equal(c.astype(np.float32), v.reshape(c.shape)):
            raise McucError(f"QAT: the exported graph's {what} ({tensor}) is not the "
                            "module's")
        return v.reshape(c.shape)
    return v


def linear(tape: Tape, x: QT, lin: nn.Linear) -> QT:
    """lower_Linear: per-channel int8 weights, int32 bias, one requantization."""
    node = tape.next("Linear")
    w = _same(tape, node.inputs[1], lin.weight, "Linear weight")
    b = None if lin.bias is None else _same(tape, node.inputs[2], lin.bias, "Linear bias")
    qy = tape.qp(node.outputs[0])
    wq, s_w, bq = quantize_weighted(w, b, x.qp.scale)
    mult, shift = quantize_multipliers(x.qp.scale * s_w / qy.scale)
    acc = int_matmul(x.q - x.qp.zero_point, wq.T)
    if bq is not None:
        acc = acc + bq.astype(np.int64)
    q = requant_s8(acc, mult, shift, qy.zero_point)
    w_fq = lin.weight + (torch.from_numpy((wq * s_w[:, None]).astype(np.float32))
                         - lin.weight).detach()
    return ste(q, qy, nn.functional.linear(x.v, w_fq, lin.bias))


def linear_any(tape: Tape, x: QT, m: nn.Module) -> QT:
    """A Linear, or nas/subnet.py's low-rank chain of three."""
    if isinstance(m, nn.Linear):
        return linear(tape, x, m)
    if isinstance(m, nn.Sequential) and all(isinstance(s, nn.Linear) for s in m):
        for s in m:
            x = linear(tape, x, s)
        return x
    raise McucError(f"QAT: unsupported linear layer {type(m).__name__}")


def layernorm(tape: Tape, x: QT, ln: nn.LayerNorm) -> QT:
    """lower_LayerNorm: the integer LayerNorm reference, rows = every token of the batch."""
    node = tape.next("LayerNorm")
    gamma = _same(tape, node.inputs[1], ln.weight, "LayerNorm gamma")
    beta = _same(tape, node.inputs[2], ln.bias, "LayerNorm beta")
    qy = tape.qp(node.outputs[0])
    cols = x.q.shape[-1]
    gq, bq, eq = k_ln.make_params(gamma, beta, float(node.attrs.get("epsilon", 1e-5)), cols,
                                  x.qp.scale, qy.scale)
    p = {"rows": x.q.size // cols, "cols": cols, "y_zp": qy.zero_point, "eps_q": eq,
         "gamma_q": gq, "beta_q": bq}
    q = k_ln.ref(p, x.q.reshape(-1)).astype(np.int64).reshape(x.q.shape)
    return ste(q, qy, nn.functional.layer_norm(x.v, (cols,), ln.weight, ln.bias, ln.eps))


def add(tape: Tape, a: QT, b: QT) -> QT:
    """lower_Add for two activations of one shape (the residual adds)."""
    node = tape.next("Add")
    qy = tape.qp(node.outputs[0])
    p = {"size": a.q.size, "b_size": b.q.size, "a_zp": a.qp.zero_point,
         "b_zp": b.qp.zero_point, "y_zp": qy.zero_point,
         **k_add.make_params(a.qp.scale, b.qp.scale, qy.scale)}
    q = add_table(p)[a.q + 128, b.q + 128]
    return ste(q, qy, a.v + b.v)


def add_const(tape: Tape, a: QT, c: torch.Tensor, what: str) -> QT:
    """lower_Add with a constant (the positional embedding): the constant is quantized on
    its own min/max range and broadcast over the batch."""
    node = tape.next("Add")
    cname = next(t for t in node.inputs if tape.graph.const(t) is not None)
    cv = _same(tape, cname, c, what)
    qc = QParams.from_range(float(np.min(cv)), float(np.max(cv)))
    cq = qc.quantize(cv).reshape(-1)
    qy = tape.qp(node.outputs[0])
    p = {"size": a.q.size, "b_size": cq.size, "a_zp": a.qp.zero_point,
         "b_zp": qc.zero_point, "y_zp": qy.zero_point,
         **k_add.make_params(a.qp.scale, qc.scale, qy.scale)}
    q = add_table(p)[a.q + 128, cq.astype(np.int64).reshape(a.q.shape[1:])[None] + 128]
    c_fq = c + (torch.from_numpy(qc.dequantize(cq).astype(np.float32)).reshape(c.shape)
                - c).detach()
    return ste(q, qy, a.v + c_fq)


def requant_to(x: QT, qy: QParams) -> np.ndarray:
    """A copy step's requantization (lower_Concat) of x's codes onto qy's grid."""
    if x.qp == qy:
        return x.q
    mult, shift = quantize_multiplier(x.qp.scale / qy.scale)
    p = {"requant": 1, "x_zp": x.qp.zero_point, "y_zp": qy.zero_point, "mult": mult,
         "shift": shift}
    r = requantize(x.q - p["x_zp"], p["mult"], p["shift"])
    return clamp_s8(p["y_zp"] + r).astype(np.int64)


def attention(tape: Tape, x: QT, att: nn.Module) -> QT:
    """qkv, QK^T with the scale folded in (fuse.py), integer softmax, P.V, proj."""
    qkv = linear_any(tape, x, att.qkv)
    bsz, n, d3 = qkv.q.shape
    h, d = att.heads, d3 // 3
    hd = d // h

    def split(t: np.ndarray | torch.Tensor):
        return t.reshape(bsz, n, 3, h, hd).permute(2, 0, 3, 1, 4) if isinstance(
            t, torch.Tensor) else t.reshape(bsz, n, 3, h, hd).transpose(2, 0, 3, 1, 4)

    (qq, kq, vq), (qv, kv, vv) = split(qkv.q), split(qkv.v)
    mm = tape.next("MatMul")
    mul = tape.next("Mul")
    scale = float(tape.const(mul.inputs[1]).reshape(-1)[0])
    if not np.float32(scale) == np.float32(att.scale):
        raise McucError("QAT: the exported attention scale is not the module's")
    qs = tape.qp(mul.outputs[0])
    zp = qkv.qp.zero_point
    mult, shift = quantize_multiplier(qkv.qp.scale * qkv.qp.scale * scale / qs.scale)
    acc = int_matmul(qq - zp, (kq - zp).transpose(0, 1, 3, 2))
    s_q = requant_s8(acc, mult, shift, qs.zero_point)
    s = ste(s_q, qs, (qv @ kv.transpose(-2, -1)) * scale)
    if tape.qp(mm.inputs[0]) != qkv.qp or tape.qp(mm.inputs[1]) != qkv.qp:
        raise McucError("QAT: attention operands do not keep the qkv output's QParams")
    sm = tape.next("Softmax")
    table = k_softmax.make_exp_table(qs.scale)
    p_q = k_softmax.ref({"rows": s_q.size // n, "cols": n, "exp_table": table},
                        s_q.reshape(-1)).astype(np.int64).reshape(s_q.shape)
    if tape.qp(sm.outputs[0]) != SOFTMAX_OUT:
        raise McucError("QAT: softmax output is not on mcuc's 1/256 grid")
    probs = ste(p_q, SOFTMAX_OUT, s.v.softmax(dim=-1))
    pv = tape.next("MatMul")
    qo = tape.qp(pv.outputs[0])
    mult, shift = quantize_multiplier(SOFTMAX_OUT.scale * qkv.qp.scale / qo.scale)
    acc = int_matmul(p_q - SOFTMAX_OUT.zero_point, vq - zp)
    o_q = requant_s8(acc, mult, shift, qo.zero_point)
    o = ste(o_q, qo, probs.v @ vv)
    merged = QT(o.q.transpose(0, 2, 1, 3).reshape(bsz, n, d),
                o.v.transpose(1, 2).reshape(bsz, n, d), qo)
    return linear_any(tape, merged, att.proj)


def gelu(tape: Tape, x: QT) -> QT:
    """lower_Gelu: the lowering's own 256-entry table."""
    node = tape.next("Gelu")
    qy = tape.qp(node.outputs[0])
    approx = node.attrs.get("approximate", "none")
    table = k_lut.make_table(_gelu(approx), x.qp.scale, x.qp.zero_point, qy.scale,
                             qy.zero_point)
    q = k_lut.ref({"size": x.q.size, "table": table}, x.q.reshape(-1))
    return ste(q.astype(np.int64).reshape(x.q.shape), qy,
               nn.functional.gelu(x.v, approximate=approx))


def block(tape: Tape, x: QT, blk: nn.Module) -> QT:
    """models/vit.py's pre-norm Block."""
    x = add(tape, x, attention(tape, layernorm(tape, x, blk.norm1), blk.attn))
    fc1, act, fc2 = blk.mlp
    if not isinstance(act, nn.GELU):
        raise McucError(f"QAT: unsupported MLP activation {type(act).__name__}")
    hid = gelu(tape, linear_any(tape, layernorm(tape, x, blk.norm2), fc1))
    return add(tape, x, linear_any(tape, hid, fc2))


def embed(tape: Tape, model: VisionTransformer, x: torch.Tensor, q_in: QParams) -> QT:
    """Input quantization, patch Conv (a Linear over patches), class token, positions."""
    conv = model.patch_embed
    node = tape.next("Conv")
    w = _same(tape, node.inputs[1], conv.weight, "patch weight")
    b = _same(tape, node.inputs[2], conv.bias, "patch bias")
    xq = q_in.quantize(x.detach().cpu().numpy()).astype(np.int64)
    bsz, c, hh, ww = xq.shape
    p = conv.kernel_size[0]
    if conv.kernel_size != conv.stride or conv.padding != (0, 0) or hh % p or ww % p:
        raise McucError("QAT: the patch embedding must be a Conv with kernel == stride")
    qy = tape.qp(node.outputs[0])
    wq, s_w, bq = quantize_weighted(w, b, q_in.scale)
    mult, shift = quantize_multipliers(q_in.scale * s_w / qy.scale)
    patches = (xq.reshape(bsz, c, hh // p, p, ww // p, p).transpose(0, 2, 4, 1, 3, 5)
               .reshape(bsz, (hh // p) * (ww // p), c * p * p))
    acc = int_matmul(patches - q_in.zero_point, wq.reshape(wq.shape[0], -1).T) + bq
    tq = requant_s8(acc, mult, shift, qy.zero_point)
    w_fq = conv.weight + (torch.from_numpy((wq * s_w[:, None, None, None]).astype(
        np.float32)) - conv.weight).detach()
    xv = torch.from_numpy(q_in.dequantize(xq).astype(np.float32))
    tv = nn.functional.conv2d(xv, w_fq, conv.bias, stride=p).flatten(2).transpose(1, 2)
    tok = ste(tq, qy, tv)
    cat = tape.next("Concat")
    qc = tape.qp(cat.outputs[0])
    cls = _same(tape, cat.inputs[0], model.cls_token, "class token")
    cls_q = qc.quantize(cls).astype(np.int64)
    q = np.concatenate([np.broadcast_to(cls_q, (bsz, 1, cls_q.shape[-1])),
                        requant_to(tok, qc)], axis=1)
    f = torch.cat([model.cls_token.expand(bsz, -1, -1), tok.v], dim=1)
    return add_const(tape, ste(q, qc, f), model.pos_embed, "positional embedding")
