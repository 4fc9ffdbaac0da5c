"""Frontend tests: export the zoo with both torch exporters, import, canonicalize, and
check the float interpreter against onnxruntime on raw and canonical graphs.

Exporter/opset coverage (torch 2.13): the TorchScript exporter (`dynamo=False`) emits
opsets 17, 18 and 20 directly (20 brings the fused Gelu op). The dynamo exporter builds
opset 18 and down-converts when asked for 17; for some models (timm with avg pooling)
the conversion fails and the file stays at opset 18, so the dynamo/17 case checks for
"17, or 18 if conversion failed". Opset 20 works with both.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcuc import McucError
from mcuc.frontend import CANONICAL, canonicalize, from_torch, import_onnx, load_model
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph

import zoo

TOL = 1e-4
OPSETS = (17, 18, 20)
EXPORTERS = ("torchscript", "dynamo")
# name -> (LayerNorm count, Gelu count) after canonicalization
EXPECTED = {name: (2 * depth + 1, depth) for name, (_, depth) in zoo.ZOO.items()}
EXPECTED["handwritten"] = (3, 4)
BUILDERS = {name: b for name, (b, _) in zoo.ZOO.items()} | {"handwritten": zoo.handwritten}


@functools.cache
def _model(name: str):
    return BUILDERS[name]()


@functools.cache
def _export(name: str, exporter: str, opset: int) -> bytes:
    module, shape = _model(name)
    return from_torch(module, shape, exporter=exporter, opset=opset).SerializeToString()


def _ort(proto_bytes: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _run(g: Graph, x: np.ndarray) -> np.ndarray:
    return interpreter.run(g, {g.inputs[0]: x})[g.outputs[0]]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_zoo_matches_onnxruntime(name: str, exporter: str, opset: int) -> None:
    data = _export(name, exporter, opset)
    proto = onnx.load_from_string(data)
    version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert version == opset or (exporter, opset, version) == ("dynamo", 17, 18)

    raw = import_onnx(proto)
    can = canonicalize(raw)
    rng = np.random.default_rng(opset)
    shape = _model(name)[1]
    for _ in range(2):
        x = rng.standard_normal(shape).astype(np.float32)
        ref = _ort(data, x)
        assert np.abs(_run(raw, x) - ref).max() <= TOL
        assert np.abs(_run(can, x) - ref).max() <= TOL

    ops = [n.op for n in can.nodes]
    assert set(ops) <= set(CANONICAL), set(ops) - set(CANONICAL)
    n_ln, n_gelu = EXPECTED[name]
    assert ops.count("LayerNorm") == n_ln
    assert ops.count("Gelu") == n_gelu
    assert "Erf" not in ops and "Tanh" not in ops  # every Gelu spelling was fused
    _check_canonical_contract(can)


def _check_canonical_contract(g: Graph) -> None:
    names = [n.name for n in g.nodes]
    assert all(names) and len(set(names)) == len(names)
    for n in g.nodes:
        for t in n.outputs:
            assert all(isinstance(d, int) and d > 0 for d in g.tensors[t].shape)
        if n.op == "Reshape":
            assert list(n.attrs["shape"]) == list(g.tensors[n.outputs[0]].shape)
            assert len(n.inputs) == 1
        elif n.op == "Slice":
            assert {"starts", "ends", "axes", "steps"} <= set(n.attrs) and len(n.inputs) == 1
        elif n.op == "Softmax":
            assert n.attrs["axis"] == len(g.tensors[n.inputs[0]].shape) - 1
        elif n.op == "Mul":
            assert g.tensors[n.inputs[1]].size == 1 and g.tensors[n.inputs[1]].is_const
        elif n.op == "Linear":
            w = g.const(n.inputs[1])
            assert w.ndim == 2 and w.shape[1] == g.tensors[n.inputs[0]].shape[-1]
        elif n.op == "LayerNorm":
            assert g.const(n.inputs[1]).shape == g.const(n.inputs[2]).shape
            assert "epsilon" in n.attrs
        elif n.op == "Gelu":
            assert n.attrs["approximate"] in ("none", "tanh")
        elif n.op == "ReduceMean":
            assert len(n.inputs) == 1 and "axes" in n.attrs and "keepdims" in n.attrs


def test_handwritten_gelu_approximations() -> None:
    g = canonicalize(import_onnx(onnx.load_from_string(_export("handwritten", "dynamo", 18))))
    approx = sorted(n.attrs["approximate"] for n in g.nodes if n.op == "Gelu")
    assert approx == ["none", "none", "tanh", "tanh"]


def test_load_model_from_torch_module() -> None:
    module, shape = _model("mcuc_cls")
    g = load_model(module, shape)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    import torch

    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert np.abs(_run(g, x) - want).max() <= TOL
    with pytest.raises(McucError) as err:
        load_model(module)
    assert "input shape" in _one_line(err)
    with pytest.raises(McucError):
        from_torch(module, shape, exporter="fx")


def test_frozen_encoder_under_no_grad() -> None:
    """Frozen weights + no_grad would send nn.TransformerEncoderLayer down its fused fast
    path, which no exporter can translate; from_torch must switch it off."""
    import torch

    module, shape = zoo.torch_encoder()
    for p in module.parameters():
        p.requires_grad_(False)
    x = np.random.default_rng(8).random(shape, dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
        g = load_model(from_torch(module, shape, exporter="torchscript", opset=17))
    assert np.abs(_run(g, x) - want).max() <= TOL
    assert torch.backends.mha.get_fastpath_enabled()


def test_raw_graph_untouched_and_keep_all() -> None:
    raw = import_onnx(onnx.load_from_string(_export("mcuc_mean", "torchscript", 17)))
    ops_before = [n.op for n in raw.nodes]
    can = canonicalize(raw)
    assert [n.op for n in raw.nodes] == ops_before
    x = np.zeros(raw.tensors[raw.inputs[0]].shape, np.float32)
    values = interpreter.run(can, {can.inputs[0]: x}, keep_all=True)
    acts = {o for n in can.nodes for o in n.outputs} | set(can.inputs)
    assert set(values) == acts
    assert all(values[k].dtype == np.float32 for k in acts)


def test_external_data(tmp_path) -> None:
    data = _export("mcuc_cls", "dynamo", 18)
    proto = onnx.load_from_string(data)
    path = tmp_path / "model.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size > 1000
    assert path.stat().st_size < len(data)
    g = load_model(path)
    x = np.random.default_rng(1).random(_model("mcuc_cls")[1], dtype=np.float32)
    assert np.abs(_run(g, x) - _ort(data, x)).max() <= TOL

    (tmp_path / "weights.bin").unlink()
    with pytest.raises(McucError) as err:
        import_onnx(path)
    assert "model.onnx" in _one_line(err)


def test_dynamic_batch(tmp_path) -> None:
    import torch

    module, shape = _model("mcuc_cls")
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch_size"}, "y": {0: "batch_size"}})
    with pytest.raises(McucError) as err:
        import_onnx(path)
    assert _one_line(err) == ("input 'x' has a dynamic dimension 'batch_size': mcuc needs "
                              "static shapes; export with a fixed batch of 1 or pass "
                              "--input-shape")
    g = load_model(path, input_shape=shape)
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    assert np.abs(_run(g, x) - _ort(path.read_bytes(), x)).max() <= TOL
    with pytest.raises(McucError):
        import_onnx(path, input_shape=(1, 16, 16))  # wrong rank
    with pytest.raises(McucError):
        import_onnx(path, input_shape=(1, 3, 16, 16))  # contradicts a static dim


def _tiny(nodes, inits=(), in_shape=(1, 4), out_shape=None, opset=18, extra_inputs=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "tiny", [x, *extra_inputs], [y],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["TopK", "NonMaxSuppression"])
def test_unsupported_op(op: str) -> None:
    node = helper.make_node(op, ["x", "k"], ["y"], name=f"/nms/{op}")
    model = _tiny([node], [("k", np.array([2], np.int64))])
    with pytest.raises(McucError) as err:
        import_onnx(model)
    msg = _one_line(err)
    assert f"unsupported ONNX op '{op}' at node '/nms/{op}'" in msg and "supported:" in msg


def test_foreign_domain_op() -> None:
    node = helper.make_node("FusedGemm", ["x"], ["y"], name="fg", domain="com.microsoft")
    model = _tiny([node])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(McucError) as err:
        import_onnx(model)
    assert "'com.microsoft::FusedGemm' at node 'fg'" in _one_line(err)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all\n" * 10,
                                     bytes(range(256)) * 4])
def test_corrupt_file(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(McucError) as err:
        import_onnx(path)
    assert "bad.onnx" in _one_line(err)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(McucError) as err:
        load_model(tmp_path / "nope.onnx")
    assert "not found" in _one_line(err)


def _conv_model(**attrs):
    w = np.random.default_rng(0).standard_normal((4, 4 // attrs.get("group", 1), 3, 3))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="/stem/Conv", **attrs)
    return _tiny([node], [("w", w.astype(np.float32))], in_shape=(1, 4, 8, 8))


@pytest.mark.parametrize("model, text", [
    (_conv_model(group=2), "group=2"),
    (_conv_model(dilations=[2, 2]), "dilations=[2, 2]"),
    (_tiny([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)], in_shape=(1, 4, 3)),
     "Softmax 'sm'"),
    (_tiny([helper.make_node("Mul", ["x", "x"], ["y"], name="sq")]), "Mul of two activations"),
    (_tiny([helper.make_node("Mul", ["x", "c"], ["y"], name="vec")],
           [("c", np.arange(4, dtype=np.float32))]), "Mul of a non-scalar constant"),
    (_tiny([helper.make_node("Exp", ["x"], ["y"], name="e")]), "op 'Exp' at node 'e'"),
])
def test_canonicalize_rejects(model, text: str) -> None:
    raw = import_onnx(model)  # the interpreter runs these; only mcuc's op set refuses them
    with pytest.raises(McucError) as err:
        canonicalize(raw)
    assert text in _one_line(err)


def _single_op_cases():
    r = np.random.default_rng(3)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    mk = helper.make_node
    return {
        "conv_pad_stride": ([mk("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 2, 1],
                                strides=[2, 1])], [("w", f(3, 2, 3, 2)), ("b", f(3))],
                            (1, 2, 7, 6), 18),
        "conv_same_group": ([mk("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", group=2,
                                strides=[2, 2])], [("w", f(4, 1, 3, 2))], (1, 2, 7, 6), 18),
        "conv_dilation": ([mk("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1],
                              dilations=[2, 1])], [("w", f(4, 2, 3, 3))], (1, 2, 7, 6), 18),
        "gemm": ([mk("Gemm", ["x", "w", "b"], ["y"], alpha=0.5, beta=2.0, transB=1)],
                 [("w", f(5, 4)), ("b", f(5))], (3, 4), 17),
        "layernorm_axis": ([mk("LayerNormalization", ["x", "g", "b"], ["y"], axis=-2,
                               epsilon=1e-3)], [("g", f(3, 4)), ("b", f(3, 4))],
                           (2, 3, 4), 17),
        "reduce_attr": ([mk("ReduceMean", ["x"], ["y"], axes=[1, -1], keepdims=0)], [],
                        (2, 3, 4), 17),
        "reduce_input": ([mk("ReduceMean", ["x", "a"], ["y"], keepdims=1)], [("a", i64(0, 2))],
                         (2, 3, 4), 18),
        "slice_neg_step": ([mk("Slice", ["x", "s", "e", "a", "k"], ["y"])],
                           [("s", i64(-1, 1)), ("e", i64(-1000, 100)), ("a", i64(2, 1)),
                            ("k", i64(-2, 1))], (2, 3, 5), 18),
        "split_num_outputs": ([mk("Split", ["x"], ["y", "z", "w"], axis=2, num_outputs=3)], [],
                              (1, 2, 7), 18),
        "gather_neg": ([mk("Gather", ["x", "i"], ["y"], axis=1)], [("i", i64(-1, 0))],
                       (2, 3, 4), 17),
        "gelu_tanh": ([mk("Gelu", ["x"], ["y"], approximate="tanh")], [], (3, 5), 20),
        "erf_softmax": ([mk("Erf", ["x"], ["t"]), mk("Softmax", ["t"], ["y"], axis=1)], [],
                        (2, 4, 3), 17),
        "shape_expand": ([mk("Shape", ["x"], ["s"], start=-2), mk("ConstantOfShape", ["s"], ["o"],
                                                                    value=helper.make_tensor(
                                                                        "v", 1, [1], [2.0])),
                          mk("Expand", ["o", "t"], ["e"]), mk("Pow", ["x", "e"], ["y"])],
                         [("t", i64(2, 1, 1))], (1, 3, 4), 17),
        "flatten_unsq_where": ([mk("Flatten", ["x"], ["f"], axis=2),
                                mk("Unsqueeze", ["f", "a"], ["u"]),
                                mk("Greater", ["u", "z"], ["m"]),
                                mk("Where", ["m", "u", "z"], ["y"])],
                               [("a", i64(0, -1)), ("z", np.float32(0.1))], (2, 3, 2, 2), 17),
    }


@pytest.mark.parametrize("case", sorted(_single_op_cases()))
def test_interpreter_op_semantics(case: str) -> None:
    nodes, inits, shape, opset = _single_op_cases()[case]
    model = _tiny(nodes, inits, in_shape=shape, opset=opset)
    model.graph.ClearField("output")
    model.graph.output.append(helper.make_tensor_value_info(nodes[-1].output[0], 1, None))
    data = model.SerializeToString()
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    g = import_onnx(model)
    got = _run(g, x)
    want = _ort(data, x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5


def test_erf_accuracy() -> None:
    xs = np.linspace(-6, 6, 2001)
    want = np.array([math.erf(v) for v in xs])
    assert np.abs(interpreter.erf(xs) - want).max() < 2e-7


@pytest.mark.parametrize("name", ["mcuc_cls", "torch_encoder", "timm_cls"])
@pytest.mark.parametrize("kwargs", [{"opset_version": 14}, {"do_constant_folding": False},
                                    {"keep_initializers_as_inputs": True}],
                         ids=["opset14-decomposed-layernorm", "no-folding", "inits-as-inputs"])
def test_torchscript_export_variants(name: str, kwargs: dict) -> None:
    """Older opsets spell LayerNorm out op by op; unfolded exports keep every Shape chain;
    old-style files list weights as graph inputs. All must canonicalize the same."""
    import io

    import torch

    module, shape = _model(name)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(shape),), buf, dynamo=False,
                          **{"opset_version": 17, **kwargs})
    data = buf.getvalue()
    raw = import_onnx(onnx.load_from_string(data))
    if "opset_version" in kwargs:
        assert "LayerNormalization" not in {n.op for n in raw.nodes}
    can = canonicalize(raw)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    ref = _ort(data, x)
    assert np.abs(_run(raw, x) - ref).max() <= TOL
    assert np.abs(_run(can, x) - ref).max() <= TOL
    ops = [n.op for n in can.nodes]
    assert (ops.count("LayerNorm"), ops.count("Gelu")) == EXPECTED[name]
    assert set(ops) <= set(CANONICAL)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_conv_epilogues_fold(exporter: str) -> None:
    module, shape = zoo.conv_stem()
    data = from_torch(module, shape, exporter=exporter, opset=18).SerializeToString()
    can = load_model(onnx.load_from_string(data))
    assert [n.op for n in can.nodes] == ["Conv", "Relu", "Conv", "Reshape", "ReduceMean",
                                         "Linear"]
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    assert np.abs(_run(can, x) - _ort(data, x)).max() <= TOL


def test_batchnorm_folds_into_conv() -> None:
    r = np.random.default_rng(7)
    inits = [("w", r.standard_normal((4, 2, 3, 3)).astype(np.float32)),
             ("g", r.uniform(0.5, 2, 4).astype(np.float32)),
             ("b", r.standard_normal(4).astype(np.float32)),
             ("m", r.standard_normal(4).astype(np.float32)),
             ("v", r.uniform(0.5, 2, 4).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn",
                              epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    model = _tiny(nodes, inits, in_shape=(1, 2, 6, 6))
    can = canonicalize(import_onnx(model))
    assert [n.op for n in can.nodes] == ["Conv", "Relu"]
    x = r.standard_normal((1, 2, 6, 6)).astype(np.float32)
    assert np.abs(_run(can, x) - _ort(model.SerializeToString(), x)).max() <= 1e-5
