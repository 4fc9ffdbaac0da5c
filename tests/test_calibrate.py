"""Calibration ranges: exact percentiles from running tails, minmax as percentile 100,
one-line errors for bad settings, and valid, bit-exact int8 parameters after clipping."""

from __future__ import annotations

import numpy as np
import pytest

from mcuc import McucError
from mcuc.frontend import load_model
from mcuc.ir import interpreter
from mcuc.pipeline import build, calibration_samples, compile_graph
from mcuc.quant.calibrate import (
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    Tails,
    calibrate,
    check_method,
    observe_ranges,
)
from mcuc.quant.qparams import QMAX, QMIN, SOFTMAX_OUT
from mcuc.schedule import execute
from mcuc.sim.host import build_host, run_host

from helpers import input_shape, random_config, random_inputs, random_model, write_c


@pytest.fixture(scope="module")
def small_graph():
    cfg = random_config(3)
    return cfg, load_model(random_model(cfg, 3), input_shape(cfg))


@pytest.mark.parametrize("percentile", [99.99, 99.9, 97.5, 75.0, 50.001, 100.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tails_equal_numpy_percentile(percentile: float, dtype) -> None:
    rng = np.random.default_rng(int(percentile * 1000))
    for images, numel in [(37, 301), (1, 1), (2, 1), (3, 2), (200, 50)]:
        # Heavy tails, ties and both signs: what activations look like.
        data = np.round(rng.standard_t(2, size=(images, numel)), 2).astype(dtype)
        t = Tails(images * numel, percentile)
        for row in data:
            t.add(row)
        assert t.hi.size <= t.k_hi and t.lo.size <= t.k_lo
        flat = data.astype(np.float64).ravel()
        want = (np.percentile(flat, 100.0 - percentile), np.percentile(flat, percentile))
        assert t.range() == (float(want[0]), float(want[1]))
        assert t.extremes() == (flat.min(), flat.max())


def test_tails_memory_is_small() -> None:
    """256 images x 10k values at 99.99 keep a few hundred values, not 2.56 million."""
    t = Tails(256 * 10_000, 99.99)
    assert t.k_hi <= 258 and t.k_lo <= 258


def test_tails_needs_every_value() -> None:
    t = Tails(10, 99.0)
    t.add(np.arange(5.0))
    with pytest.raises(McucError):
        t.range()
    t.add(np.arange(5.0))
    with pytest.raises(McucError):
        t.add(np.arange(1.0))


def test_percentile_100_is_minmax(small_graph) -> None:
    cfg, graph = small_graph
    xs = random_inputs(cfg, 6, 0)
    ranges = observe_ranges(graph, xs, percentile=100.0)
    in_name = graph.inputs[0]
    want: dict[str, tuple[float, float]] = {}
    for x in xs:
        values = interpreter.run(graph, {in_name: x[None]}, keep_all=True)
        for name, v in values.items():
            if name in ranges:
                lo, hi = want.get(name, (np.inf, -np.inf))
                want[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
    assert ranges == want
    a = calibrate(graph, xs, method="minmax").qparams
    b = calibrate(graph, xs, method="percentile", percentile=100.0).qparams
    assert a == b


def test_percentile_narrows_ranges_but_not_the_input(small_graph) -> None:
    cfg, graph = small_graph
    xs = random_inputs(cfg, 6, 0)
    mm = calibrate(graph, xs, method="minmax").qparams
    pc = calibrate(graph, xs, method="percentile", percentile=99.0).qparams
    assert pc[graph.inputs[0]] == mm[graph.inputs[0]]
    assert all(pc[k].scale <= mm[k].scale * (1 + 1e-12) for k in mm)
    assert sum(pc[k].scale < mm[k].scale for k in mm) > len(mm) // 2


@pytest.mark.parametrize(("method", "percentile"), [
    ("mse", 99.99), ("percentile", 50.0), ("percentile", 100.5), ("percentile", -3.0),
    ("percentile", float("nan"))])
def test_bad_settings(method: str, percentile: float) -> None:
    with pytest.raises(McucError) as e:
        check_method(method, percentile)
    assert "\n" not in str(e.value)


def test_bad_image_count(small_graph, tmp_path) -> None:
    cfg, graph = small_graph
    with pytest.raises(McucError, match="calibration images"):
        calibration_samples(graph, "fashion-mnist", 0)
    with pytest.raises(McucError, match="percentile"):
        build(None, "host", out_dir=tmp_path, calib_percentile=40.0)


def test_heavy_clipping_keeps_qparams_valid_and_c_bit_exact(small_graph, tmp_path) -> None:
    """Even a percentile that saturates much of every tensor gives scale > 0, zero point
    in int8, ranges holding 0, and C that equals the integer reference bit for bit."""
    cfg, graph = small_graph
    c = compile_graph(graph, random_inputs(cfg, 8, 1), calib_method="percentile",
                      calib_percentile=60.0)
    for name, qp in c.qgraph.qparams.items():
        assert qp.scale > 0 and np.isfinite(qp.scale), name
        assert QMIN <= qp.zero_point <= QMAX, name
        if qp != SOFTMAX_OUT:
            lo, hi = qp.dequantize(np.array([QMIN, QMAX]))
            assert lo <= 1e-9 and hi >= -1e-9, name
    write_c(c, tmp_path)
    exe = build_host(tmp_path)
    for x in random_inputs(cfg, 3, 2):
        x_q = execute.quantize_input(c.schedule, x[None])
        np.testing.assert_array_equal(run_host(exe, x_q), execute.run(c.schedule, x_q, c.plan))


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, small_graph):
    import torch

    cfg, _ = small_graph
    d = tmp_path_factory.mktemp("calib_cli")
    path = d / "vit.onnx"
    torch.onnx.export(random_model(cfg, 3), (torch.zeros(input_shape(cfg)),), str(path),
                      dynamo=False, opset_version=17)
    calib = d / "calib.npy"
    np.save(calib, random_inputs(cfg, 8, 0))
    return path, calib


@pytest.mark.parametrize(("flags", "method", "percentile"), [
    ([], DEFAULT_METHOD, DEFAULT_PERCENTILE),
    (["--calib-method", "percentile"], "percentile", DEFAULT_PERCENTILE),
    (["--calib-method", "minmax"], "minmax", 100.0),
    (["--calib-method", "percentile", "--calib-percentile", "90"], "percentile", 90.0)])
def test_cli_flags_reach_qparams(small_onnx, tmp_path, monkeypatch, capsys, flags, method,
                                 percentile) -> None:
    import json

    import mcuc.pipeline
    import mcuc.sim.host
    from mcuc.cli import main

    seen = []
    real = mcuc.pipeline.compile_graph

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(mcuc.pipeline, "compile_graph", spy)
    monkeypatch.setattr(mcuc.sim.host, "build_host", lambda out: None)  # no C compile
    path, calib = small_onnx
    out = tmp_path / "b"
    assert main(["build", "--model", str(path), "--calib", str(calib), "--out", str(out),
                 *flags]) == 0
    capsys.readouterr()
    (c,) = seen
    want = calibrate(c.graph, np.load(calib), method=method, percentile=percentile)
    assert c.qgraph.qparams == want.qparams
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["method"] == method
    assert report["calibration"]["images"] == 8
    assert report["output"]["scale"] == want.qparams[want.output_name].scale


@pytest.mark.parametrize(("flags", "words"), [
    (["--calib-method", "mse"], "calibration method"),
    (["--calib-percentile", "50"], "(50, 100]"),
    (["--calib-percentile", "101"], "(50, 100]"),
    (["--calib-images", "0"], "calibration images")])
def test_cli_bad_calibration_values(capsys, tmp_path, flags, words) -> None:
    from mcuc.cli import main

    code = main(["build", "--out", str(tmp_path / "b"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("mcuc: error: ") and words in err
