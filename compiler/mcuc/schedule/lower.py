"""Lowering: a calibrated graph becomes a Schedule of int8 kernel calls.

Each canonical op maps to one kernel (Concat to one copy per input). Reshapes, and
transposes that only move size-1 axes, are views: no step, same buffer. A kernel that
may work in place writes over its input when that input dies at this step. Scalar Muls
are first folded into their producers (fuse.py).
"""

from __future__ import annotations

import math

import numpy as np

from mcuc import McucError
from mcuc.codegen.names import CNames
from mcuc.ir.graph import Graph, Node
from mcuc.kernels import add as k_add
from mcuc.kernels import add16 as k_add16
from mcuc.kernels import layernorm as k_layernorm
from mcuc.kernels import layernorm16 as k_layernorm16
from mcuc.kernels import lut as k_lut
from mcuc.kernels import registry
from mcuc.kernels import softmax as k_softmax
from mcuc.kernels.fixedpoint import RequantError, quantize_multiplier, quantize_multipliers
from mcuc.kernels.linear import fold_zero_point
from mcuc.quant.calibrate import QGraph
from mcuc.quant.qparams import QParams, quantize_weighted
from mcuc.schedule.copies import copy_params, slice_view, strides_of, transpose_is_view
from mcuc.schedule.fuse import fold_scalar_muls
from mcuc.schedule.passes import apply_passes, check_disabled
from mcuc.schedule.schedule import BufferInfo, Operand, Schedule, Step
from mcuc.text import as_text, one_line

UNARY_FUNCS = {
    "Gelu": None,  # chosen by the approximate attr
    "Relu": lambda x: np.maximum(x, 0.0),
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Tanh": np.tanh,
    "Erf": np.vectorize(math.erf),
}


def _gelu(approximate: str):
    if approximate == "tanh":
        return lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf)
    return lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2)))


class Lowerer:
    def __init__(self, qg: QGraph) -> None:
        self.qg = qg
        self.g: Graph = qg.graph
        self.steps: list[Step] = []
        self.buffers: dict[str, BufferInfo] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.buf_of: dict[str, str] = {}       # activation tensor -> buffer
        # Schedule names: model text made [A-Za-z0-9_], capped and unique (codegen/names.py);
        # codegen maps them once more to prefixed C identifiers.
        self.names = CNames(prefix="", limit=64)
        self.inplace = True                     # write elementwise results over inputs
        self.users = self.g.consumers()
        self._numel: dict[tuple[int, ...], int] = {}  # shape -> elements

    # -- helpers -----------------------------------------------------------------
    def qp(self, tensor: str) -> QParams:
        return self.qg.qparams[tensor]

    def shape(self, tensor: str) -> tuple[int, ...]:
        return tuple(self.g.tensors[tensor].shape)

    def unique(self, name: str) -> str:
        return self.names.ident(name)

    def numel(self, shape: tuple[int, ...]) -> int:
        n = self._numel.get(shape)
        if n is None:
            n = self._numel[shape] = int(np.prod(shape, dtype=np.int64))
        return n

    def wide(self, tensor: str) -> int:
        """1 if the activation is int16 (--int16, quant/wide.py), else 0."""
        q = self.qg.qparams.get(tensor)
        return int(q is not None and q.wide)

    def nbytes(self, tensor: str) -> int:
        return self.size(tensor) * (2 if self.wide(tensor) else 1)

    def new_buffer(self, tensor: str) -> str:
        name = self.unique("buf_" + as_text(tensor))
        shape = self.shape(tensor)
        self.buffers[name] = BufferInfo(name, self.nbytes(tensor), shape)
        self.buf_of[tensor] = name
        return name

    def operand(self, tensor: str, qp: QParams | None = None) -> Operand:
        """An activation's buffer, or a constant quantized with `qp` (its own range if None)."""
        data = self.g.const(tensor)
        if data is None:
            return Operand("buf", self.buf_of[tensor])
        qp = qp or QParams.from_range(float(np.min(data)), float(np.max(data)))
        name = self.unique("const_" + as_text(tensor))
        self.consts[name] = qp.quantize(data).reshape(-1)
        self._const_qp[name] = qp
        return Operand("const", name)

    def emit(self, node: Node, kernel: str, params: dict, inputs: list[Operand],
             out_tensor: str, inplace: bool = False, suffix: str = "") -> Step:
        kdef = registry.get(kernel)
        if inplace and self.inplace and kdef.inplace_ok and inputs and inputs[0].kind == "buf" \
                and self._dies_here(inputs[0].name, node) \
                and self.buffers[inputs[0].name].size == self.nbytes(out_tensor):
            out = inputs[0].name
            self.buf_of[out_tensor] = out
        else:
            out = self.buf_of.get(out_tensor) or self.new_buffer(out_tensor)
        kdef.check_params(params)
        name = self.unique(as_text(node.name or node.op) + suffix)
        step = Step(name, kernel, params, inputs, out, node.op, int(kdef.macs(params)))
        self.steps.append(step)
        return step

    def size(self, tensor: str) -> int:
        return self.numel(self.shape(tensor))

    def _dies_here(self, buf: str, node: Node) -> bool:
        """True when no tensor living in `buf` is read after `node`, nor is the output."""
        idx = self._node_index[id(node)]
        tensors = [t for t, b in self.buf_of.items() if b == buf]
        if self.buf_of.get(self.qg.output_name) == buf:
            return False
        for t in tensors:
            if t in self.g.outputs:
                return False
            for user in self._all_readers(t):
                if self._node_index[id(user)] > idx:
                    return False
        return True

    def _all_readers(self, tensor: str) -> list[Node]:
        """Readers of a tensor, looking through the views that share its buffer."""
        out: list[Node] = []
        for u in self.users.get(tensor, []):
            out.append(u)
            if u.op in ("Reshape", "Transpose") and id(u) in self._views:
                out.extend(self._all_readers(u.outputs[0]))
        return out

    # -- driver --------------------------------------------------------------------
    def run(self, disabled: tuple[str, ...] = ()) -> Schedule:
        g = self.g
        self._const_qp: dict[str, QParams] = {}
        self._node_index = {id(n): i for i, n in enumerate(g.nodes)}
        self._views = {id(n) for n in g.nodes if self._is_view(n)}
        in_name, out_name = self.qg.input_name, self.qg.output_name
        if self.g.const(out_name) is not None:
            raise McucError("the model's output is a constant: nothing to compile")
        self.new_buffer(in_name)
        for node in g.nodes:
            self._check_wide(node)
            fn = getattr(self, "lower_" + node.op, None)
            if fn is None:
                raise McucError(f"no int8 kernel for op '{one_line(node.op)}' at node "
                                f"'{one_line(node.name)}'")
            try:
                fn(node)
            except RequantError as e:  # absurd scales: name the layer (kernels/fixedpoint.py)
                raise McucError(f"{node.op} '{one_line(node.name)}': {e}") from None
        out_buf = self.buf_of[out_name]
        if out_buf == self.buf_of[in_name]:
            raise McucError("the model's output is its input: nothing to compile")
        return Schedule(
            steps=self.steps, buffers=self.buffers, consts=self.consts,
            input_buffer=self.buf_of[in_name], output_buffer=out_buf,
            input_shape=self.shape(in_name), output_shape=self.shape(out_name),
            input_qp=self.qp(in_name), output_qp=self.qp(out_name), disabled=disabled,
        )

    def _check_wide(self, node: Node) -> None:
        """Only A16 kernels may touch int16 tensors (quant/wide.py chooses them so)."""
        if node.op in ("Add", "Concat", "Reshape") or (
                node.op == "LayerNorm" and not self.wide(node.outputs[0])):
            return
        for t in [*node.inputs[:1 if node.op == "LayerNorm" else None], *node.outputs]:
            if t and self.wide(t):
                raise McucError(f"{node.op} '{one_line(node.name)}' has no int16 kernel for "
                                f"tensor '{one_line(t)}' (--int16)")

    def _is_view(self, node: Node) -> bool:
        if node.op == "Reshape":
            return True
        if node.op == "Transpose":
            return transpose_is_view(self.shape(node.inputs[0]), node.attrs["perm"])
        return False

    # -- ops -------------------------------------------------------------------------
    def _weighted(self, node: Node, w: np.ndarray, b: np.ndarray | None) -> dict:
        x, y = node.inputs[0], node.outputs[0]
        s_x, qy = self.qp(x).scale, self.qp(y)
        scale = float(node.attrs.get("post_scale", 1.0))
        wq, s_w, bq = quantize_weighted(w, b, s_x, self.qg.weight_scales.get(node.inputs[1]))
        mult, shift = quantize_multipliers(s_x * s_w * scale / qy.scale)
        return {
            "x_zp": self.qp(x).zero_point, "y_zp": qy.zero_point,
            "weights": wq.reshape(-1), "bias": bq,
            "mult": mult, "shift": shift,
        }

    def lower_Conv(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        w = self.g.const(node.inputs[1])
        b = self.g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if w is None:
            raise McucError(f"Conv '{one_line(node.name)}' has non-constant weights")
        _, c, h, wd = self.shape(x)
        _, o, ho, wo = self.shape(y)
        sh, sw = node.attrs.get("strides", [1, 1])
        pads = node.attrs.get("pads", [0, 0, 0, 0])
        p = self._weighted(node, w, b)
        p.update(c_in=c, h_in=h, w_in=wd, c_out=o, h_out=ho, w_out=wo, kh=w.shape[2],
                 kw=w.shape[3], stride_h=sh, stride_w=sw, pad_top=pads[0], pad_left=pads[1])
        self.emit(node, "conv2d", p, [self.operand(x)], y)

    def lower_Linear(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        w = self.g.const(node.inputs[1])
        b = self.g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if w is None:
            raise McucError(f"Linear '{one_line(node.name)}' has non-constant weights")
        p = self._weighted(node, w, b)
        p.update(rows=self.size(x) // w.shape[1], k=w.shape[1], n=w.shape[0])
        self.emit(node, "linear", fold_zero_point(p), [self.operand(x)], y)

    def lower_MatMul(self, node: Node) -> None:
        a, b = node.inputs
        y = node.outputs[0]
        sa, sb = self.shape(a), self.shape(b)
        if self.g.const(a) is not None or self.g.const(b) is not None:
            raise McucError(f"MatMul '{one_line(node.name)}' with a constant operand was not "
                            "made Linear")
        if len(sa) < 2 or len(sb) < 2 or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise McucError(f"MatMul '{one_line(node.name)}': unsupported shapes {sa} x {sb}")
        scale = float(node.attrs.get("post_scale", 1.0))
        mult, shift = quantize_multiplier(
            self.qp(a).scale * self.qp(b).scale * scale / self.qp(y).scale)
        p = {"batch": int(np.prod(sa[:-2], dtype=np.int64)), "m": sa[-2], "k": sa[-1],
             "n": sb[-1], "a_zp": self.qp(a).zero_point, "b_zp": self.qp(b).zero_point,
             "y_zp": self.qp(y).zero_point, "mult": mult, "shift": shift}
        self.emit(node, "matmul", p, [self.operand(a), self.operand(b)], y)

    def lower_Add(self, node: Node) -> None:
        a, b = node.inputs
        y = node.outputs[0]
        if self.g.const(a) is not None or self.size(a) < self.size(b):
            a, b = b, a
        sa, sb = self.shape(a), self.shape(b)
        sb_core = tuple(sb[next((i for i, d in enumerate(sb) if d != 1), len(sb)):])
        if sb_core and tuple(sa[len(sa) - len(sb_core):]) != sb_core:
            raise McucError(f"Add '{one_line(node.name)}': cannot broadcast {sb} onto {sa}")
        ob = self.operand(b)
        qb = self._const_qp[ob.name] if ob.kind == "const" else self.qp(b)
        qa, qy = self.qp(a), self.qp(y)
        p = {"size": self.size(a), "b_size": self.size(b), "a_zp": qa.zero_point,
             "b_zp": qb.zero_point, "y_zp": qy.zero_point}
        wide = {"a_wide": self.wide(a), "b_wide": int(ob.kind == "buf" and self.wide(b)),
                "y_wide": self.wide(y)}
        if any(wide.values()):
            p.update(wide, **k_add16.make_params(qa.scale, qb.scale, qy.scale))
            self.emit(node, "add16", p, [self.operand(a), ob], y, inplace=True)
            return
        p.update(k_add.make_params(qa.scale, qb.scale, qy.scale))
        self.emit(node, "add", p, [self.operand(a), ob], y, inplace=True)

    def lower_Mul(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        c = self.g.const(node.inputs[1])
        if c is None or np.asarray(c).size != 1:
            raise McucError(f"Mul '{one_line(node.name)}': only multiplication by a scalar "
                            "constant")
        mult, shift = quantize_multiplier(
            float(np.asarray(c).reshape(-1)[0]) * self.qp(x).scale / self.qp(y).scale)
        p = {"size": self.size(x), "x_zp": self.qp(x).zero_point,
             "y_zp": self.qp(y).zero_point, "mult": mult, "shift": shift}
        self.emit(node, "rescale", p, [self.operand(x)], y, inplace=True)

    def lower_LayerNorm(self, node: Node) -> None:
        x, gamma, beta = node.inputs
        y = node.outputs[0]
        cols = self.shape(x)[-1]
        gq, bq, eq = k_layernorm.make_params(
            self.g.const(gamma), self.g.const(beta), float(node.attrs.get("epsilon", 1e-5)),
            cols, self.qp(x).scale, self.qp(y).scale)
        p = {"rows": self.size(x) // cols, "cols": cols, "y_zp": self.qp(y).zero_point,
             "eps_q": eq, "gamma_q": gq, "beta_q": bq}
        if self.wide(x):
            if cols > k_layernorm16.MAX_COLS:
                raise McucError(f"LayerNorm '{one_line(node.name)}': an int16 input needs at "
                                f"most {k_layernorm16.MAX_COLS} columns (--int16)")
            self.emit(node, "layernorm16", p, [self.operand(x)], y)
            return
        self.emit(node, "layernorm", p, [self.operand(x)], y, inplace=True)

    def lower_Softmax(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        cols = self.shape(x)[-1]
        p = {"rows": self.size(x) // cols, "cols": cols,
             "exp_table": k_softmax.make_exp_table(self.qp(x).scale)}
        self.emit(node, "softmax", p, [self.operand(x)], y, inplace=True)

    def _lower_unary(self, node: Node, fn) -> None:
        x, y = node.inputs[0], node.outputs[0]
        qx, qy = self.qp(x), self.qp(y)
        table = k_lut.make_table(fn, qx.scale, qx.zero_point, qy.scale, qy.zero_point)
        self.emit(node, "lut", {"size": self.size(x), "table": table},
                  [self.operand(x)], y, inplace=True)

    def lower_Gelu(self, node: Node) -> None:
        self._lower_unary(node, _gelu(node.attrs.get("approximate", "none")))

    def lower_Relu(self, node: Node) -> None:
        self._lower_unary(node, UNARY_FUNCS["Relu"])

    def lower_Sigmoid(self, node: Node) -> None:
        self._lower_unary(node, UNARY_FUNCS["Sigmoid"])

    def lower_Tanh(self, node: Node) -> None:
        self._lower_unary(node, UNARY_FUNCS["Tanh"])

    def lower_Erf(self, node: Node) -> None:
        self._lower_unary(node, UNARY_FUNCS["Erf"])

    def lower_Reshape(self, node: Node) -> None:
        self._view(node)

    def _view(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if self.g.const(x) is not None:
            raise McucError(f"{node.op} '{one_line(node.name)}' of a constant was not folded")
        self.buf_of[y] = self.buf_of[x]

    def lower_Transpose(self, node: Node) -> None:
        if id(node) in self._views:
            self._view(node)
            return
        x, y = node.inputs[0], node.outputs[0]
        shape, perm = self.shape(x), list(node.attrs["perm"])
        st = strides_of(shape)
        p = copy_params([shape[i] for i in perm], [st[i] for i in perm], 0,
                        strides_of(self.shape(y)), 0)
        self.emit(node, "copy", p, [self.operand(x)], y)

    def lower_Slice(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        out_shape, in_strides, offset = slice_view(self.shape(x), node.attrs)
        if tuple(out_shape) != self.shape(y):
            raise McucError(f"Slice '{one_line(node.name)}': shape {out_shape} != {self.shape(y)}")
        p = copy_params(out_shape, in_strides, offset, strides_of(out_shape), 0)
        self.emit(node, "copy", p, [self.operand(x)], y)

    def lower_Concat(self, node: Node) -> None:
        y = node.outputs[0]
        out_shape = self.shape(y)
        axis = node.attrs.get("axis", 0) % len(out_shape)
        out_st = strides_of(out_shape)
        qy, pos = self.qp(y), 0
        wide = self.wide(y) or any(self.wide(x) for x in node.inputs)
        for k, x in enumerate(node.inputs):
            xs = self.shape(x)
            # A constant part of an int16 concat keeps its own int8 range (consts are int8).
            opnd = self.operand(x, None if wide else qy)
            qx = self._const_qp[opnd.name] if opnd.kind == "const" else self.qp(x)
            p = copy_params(xs, strides_of(xs), 0, out_st, pos * out_st[axis])
            if qx != qy:
                mult, shift = quantize_multiplier(qx.scale / qy.scale)
                p.update(requant=1, x_zp=qx.zero_point, y_zp=qy.zero_point,
                         mult=mult, shift=shift)
            kernel = "copy"
            if wide:
                kernel = "copy16"
                p.update(x_wide=int(opnd.kind == "buf" and self.wide(x)), y_wide=self.wide(y))
            self.emit(node, kernel, p, [opnd], y, suffix=f"_part{k}")
            pos += xs[axis]

    def lower_ReduceMean(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        axes = sorted(a % len(shape) for a in node.attrs["axes"])
        if axes != list(range(axes[0], axes[-1] + 1)):
            raise McucError(f"ReduceMean '{one_line(node.name)}': axes {axes} are not contiguous")
        outer = int(np.prod(shape[: axes[0]], dtype=np.int64))
        red = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        inner = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
        mult, shift = quantize_multiplier(self.qp(x).scale / (red * self.qp(y).scale))
        p = {"outer": outer, "reduce": red, "inner": inner, "x_zp": self.qp(x).zero_point,
             "y_zp": self.qp(y).zero_point, "mult": mult, "shift": shift}
        self.emit(node, "mean", p, [self.operand(x)], y)


def lower(qg: QGraph, disabled: tuple[str, ...] = ()) -> Schedule:
    disabled = check_disabled(disabled)
    if "fusion" not in disabled:
        qg = fold_scalar_muls(qg)
    lw = Lowerer(qg)
    lw.inplace = "token-overwrite" not in disabled
    return apply_passes(lw.run(disabled), disabled)
