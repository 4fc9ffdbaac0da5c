"""ONNX -> raw mcuc Graph: same ops and attributes as the file, with every shape static.

Shapes come from running the float interpreter once on zeros rather than from ONNX shape
inference, which leaves dims computed by Shape/Reshape chains unknown; running also
proves up front that every op in the file is one the interpreter implements.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mcuc import McucError, limits
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph, Node, Tensor
from mcuc.text import fresh, one_line


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def load_proto(src: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Read an ONNX file (external data from its folder) with one-line errors."""
    if isinstance(src, onnx.ModelProto):
        model = src
        where = "the given ModelProto"
    else:
        path = Path(src)
        where = f"'{path}'"
        if not path.is_file():
            raise McucError(f"model file not found: {path}")
        if path.stat().st_size > limits.MAX_MODEL_FILE_BYTES:
            raise McucError(f"model file {path} is {path.stat().st_size:,} bytes; the limit is "
                            f"{limits.MAX_MODEL_FILE_BYTES:,}")
        try:
            model = onnx.load(str(path), load_external_data=True)
        except Exception as e:  # protobuf DecodeError, missing external data file, ...
            raise McucError(f"cannot read ONNX model {where}: {_one_line(e)}") from None
    if not model.graph.node or not model.graph.output:
        raise McucError(f"{where} is not an ONNX model (no graph nodes or outputs)")
    check_structure(model.graph)
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as e:
            raise McucError(f"cannot inline the local functions of {where}: "
                            f"{_one_line(e)}") from None
    return model


def check_structure(g: onnx.GraphProto) -> None:
    """What a graph must be before anything is read or run: one output, few enough
    nodes, weights of a sane size (their claimed size, checked before reading)."""
    if len(g.output) != 1:
        names = ", ".join(one_line(o.name, 40) for o in g.output[:4])
        more = ", ..." if len(g.output) > 4 else ""
        raise McucError(f"model has {len(g.output)} outputs ({names}{more}); mcuc compiles "
                        "single-output models")
    if len(g.node) > limits.MAX_NODES:
        raise McucError(f"model has {len(g.node):,} nodes; the limit is {limits.MAX_NODES:,}")
    total = 0
    for t in g.initializer:
        itemsize = np.dtype(interpreter.ONNX_DTYPES.get(t.data_type, np.float32)).itemsize
        total = limits.check_initializer_size(t.name, list(t.dims), itemsize, total)


def _text(b: bytes, a: onnx.AttributeProto, node: str) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise McucError(f"attribute '{one_line(a.name)}' of node '{one_line(node)}'"
                        " is not UTF-8 text") from None


def _attr(a: onnx.AttributeProto, node: str):
    if a.type == onnx.AttributeProto.TENSOR:
        limits.check_initializer_size(f"{node}.{a.name}", list(a.t.dims), 8, 0)
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return _text(v, a, node)
    if isinstance(v, onnx.TensorProto):
        arr = _array(v, f"node '{one_line(node)}'")
        limits.check_weight_values(f"{node}.{a.name}", arr)
        return arr
    if isinstance(v, list):
        v = [_text(x, a, node) if isinstance(x, bytes) else x for x in v]
    floats = [v] if isinstance(v, float) else [x for x in v if isinstance(x, float)] \
        if isinstance(v, list) else []
    if any(not math.isfinite(x) or abs(x) > limits.MAX_ABS_WEIGHT for x in floats):
        raise McucError(f"attribute '{one_line(a.name)}' of node '{one_line(node)}'"
                        " holds a non-finite or absurdly large number")
    return v


def _array(t: onnx.TensorProto, owner: str) -> np.ndarray:
    try:
        return np.array(numpy_helper.to_array(t))
    except Exception as e:
        raise McucError(f"cannot read tensor '{one_line(t.name)}' of {owner}: "
                        f"{_one_line(e)} (external data not loaded?)") from None


def _static_shape(vi: onnx.ValueInfoProto, override: tuple[int, ...] | None) -> tuple[int, ...]:
    dims = vi.type.tensor_type.shape.dim
    if override is not None:
        override = tuple(int(d) for d in override)
        if len(override) != len(dims):
            raise McucError(f"input_shape {list(override)} has rank {len(override)}; input "
                            f"'{vi.name}' has rank {len(dims)}")
        for d, o in zip(dims, override, strict=True):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != o:
                raise McucError(f"input_shape {list(override)} does not match the static "
                                f"shape of input '{vi.name}' ({_dims_text(dims)})")
        return limits.check_shape(override, f"input '{one_line(vi.name)}'")
    shape = []
    for d in dims:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            label = d.dim_param or "?"
            raise McucError(f"input '{vi.name}' has a dynamic dimension '{label}': mcuc needs "
                            "static shapes; export with a fixed batch of 1 or pass "
                            "--input-shape")
        shape.append(int(d.dim_value))
    return limits.check_shape(shape, f"input '{one_line(vi.name)}'")


def _dims_text(dims) -> str:
    return "[" + ", ".join(d.dim_param or str(d.dim_value) if d.HasField("dim_value")
                           or d.dim_param else "?" for d in dims) + "]"


def _dtype(vi: onnx.ValueInfoProto) -> str:
    elem = vi.type.tensor_type.elem_type
    return np.dtype(interpreter.ONNX_DTYPES.get(elem, np.float32)).name


def import_onnx(src: str | Path | onnx.ModelProto,
                input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import ONNX into a raw Graph (ONNX ops as-is); `input_shape` fixes dynamic dims."""
    model = load_proto(src)
    g = model.graph
    domains = {o.domain: o.version for o in model.opset_import}
    tensors: dict[str, Tensor] = {}
    for init in g.initializer:
        arr = _array(init, "the model")
        limits.check_weight_values(init.name, arr)
        tensors[init.name] = Tensor(init.name, tuple(arr.shape), arr.dtype.name, arr)
    for init in g.sparse_initializer:
        raise McucError(f"sparse initializer '{init.values.name}' is not supported")
    inputs = [vi for vi in g.input if vi.name not in tensors]
    if not inputs and g.input:
        raise McucError(f"input '{one_line(g.input[0].name)}' is also an initializer "
                        "(a stored constant), so the model has no input left")
    if input_shape is not None and len(inputs) != 1:
        raise McucError(f"input_shape given but the model has {len(inputs)} inputs")
    for vi in inputs:
        shape = _static_shape(vi, input_shape)
        tensors[vi.name] = Tensor(vi.name, shape, _dtype(vi))

    nodes: list[Node] = []
    used_names: set[str] = set()
    for i, pn in enumerate(g.node):
        name = fresh(pn.name or f"{pn.op_type}_{i}", used_names)
        used_names.add(name)
        if pn.domain not in ("", "ai.onnx"):
            raise McucError(f"unsupported ONNX op '{pn.domain}::{pn.op_type}' at node "
                            f"'{name}' (only the default ONNX domain is supported)")
        if any(a.type == onnx.AttributeProto.GRAPH for a in pn.attribute):
            raise McucError(f"unsupported ONNX op '{pn.op_type}' at node '{name}' "
                            "(control flow with subgraphs)")
        attrs = {a.name: _attr(a, name) for a in pn.attribute}
        node = Node(pn.op_type, list(pn.input), list(pn.output), attrs, name)
        if node.op not in interpreter.OPS:
            raise McucError(f"unsupported ONNX op '{node.op}' at node '{name}' "
                            f"(supported: {', '.join(interpreter.supported_ops())})")
        if node.op == "Softmax" and domains.get("", domains.get("ai.onnx", 18)) < 13:
            raise McucError(f"Softmax '{name}': opset < 13 semantics are not supported; "
                            "export with opset 17 or newer")
        if node.op == "Constant":  # a constant node is just a constant tensor
            arr = interpreter.constant_value(node)
            tensors[pn.output[0]] = Tensor(pn.output[0], tuple(arr.shape), arr.dtype.name, arr)
            continue
        nodes.append(node)

    graph = Graph(tensors, nodes, [vi.name for vi in inputs], [o.name for o in g.output],
                  g.name or "model")
    infer_shapes(graph)
    return graph


def infer_shapes(graph: Graph) -> None:
    """Fill shape/dtype of every activation by running the interpreter on zeros."""
    feeds = {n: np.zeros(graph.tensors[n].shape, graph.tensors[n].dtype) for n in graph.inputs}
    with np.errstate(all="ignore"):  # zeros may divide by zero; calibration checks values
        values = interpreter.run(graph, feeds, keep_all=True)
    for name, v in values.items():
        t = graph.tensors.get(name)
        if t is None:
            graph.tensors[name] = Tensor(name, tuple(v.shape), v.dtype.name)
        elif not t.is_const:
            t.shape, t.dtype = tuple(v.shape), v.dtype.name
    for name in graph.outputs:
        if name not in graph.tensors:
            raise McucError(f"graph output '{name}' is computed by no node")
