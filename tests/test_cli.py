"""The command line: a working build/run round trip, and one clear line for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from mcuc.cli import main

from helpers import cli_error_line, input_shape, random_config, random_model


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> tuple[Path, Path]:
    """A small random ViT as ONNX plus a calibration .npy."""
    d = tmp_path_factory.mktemp("cli")
    cfg = random_config(3)
    model = random_model(cfg, 3)
    path = d / "vit.onnx"
    torch.onnx.export(model, (torch.zeros(input_shape(cfg)),), str(path), dynamo=False,
                      opset_version=17)
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((8,) + input_shape(cfg)[1:]).astype("f4"))
    return path, calib


def test_build_and_run_roundtrip(small_onnx, tmp_path, capsys) -> None:
    path, calib = small_onnx
    out = tmp_path / "build"
    assert main(["build", "--board", "host", "--model", str(path), "--calib", str(calib),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "arena (SRAM)" in text and "<- peak" in text
    report = json.loads((out / "report.json").read_text())
    for key in ("board", "arena_bytes", "arena_lower_bound_bytes", "weights_bytes", "macs",
                "layers"):
        assert key in report
    assert report["arena_bytes"] >= report["arena_lower_bound_bytes"] > 0
    assert all({"name", "macs", "bytes_live"} <= set(row) for row in report["layers"])
    assert report["macs"] == sum(row["macs"] for row in report["layers"]) > 0
    x = np.load(calib)[0]
    xf = tmp_path / "x.npy"
    np.save(xf, x)
    assert main(["run", str(out), "--input", str(xf), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"output", "argmax"}
    assert res["argmax"] == int(np.argmax(res["output"]))


def test_console_script_runs(small_onnx, tmp_path) -> None:
    exe = shutil.which("mcuc") or str(Path(sys.executable).parent / "mcuc")
    proc = subprocess.run([exe, "boards"], capture_output=True, text=True)
    assert proc.returncode == 0 and "host" in proc.stdout


def test_missing_model_file(capsys, tmp_path) -> None:
    err = cli_error_line(capsys, ["build", "--model", str(tmp_path / "nope.onnx"),
                               "--out", str(tmp_path / "o")])
    assert "nope.onnx" in err


def test_corrupt_onnx(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf\xff\xfe" * 10)
    err = cli_error_line(capsys, ["build", "--model", str(bad), "--out", str(tmp_path / "o")])
    assert "bad.onnx" in err


def test_unsupported_op(capsys, tmp_path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Hardmax", ["x"], ["y"], name="weird_node")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "unsup.onnx"
    onnx.save(model, path)
    err = cli_error_line(capsys, ["build", "--model", str(path), "--calib",
                               str(_npy(tmp_path, (4, 1, 4))), "--out", str(tmp_path / "o")])
    assert "Hardmax" in err and "weird_node" in err


def test_dynamic_shape(capsys, tmp_path, small_onnx) -> None:
    path, _ = small_onnx
    m = onnx.load(path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    dyn = tmp_path / "dyn.onnx"
    onnx.save(m, dyn)
    err = cli_error_line(capsys, ["build", "--model", str(dyn), "--out", str(tmp_path / "o")])
    assert "dynamic" in err


def test_wrong_input_shape_for_run(small_onnx, tmp_path, capsys) -> None:
    path, calib = small_onnx
    out = tmp_path / "b"
    assert main(["build", "--model", str(path), "--calib", str(calib), "--out", str(out)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 5), dtype=np.float32))
    err = cli_error_line(capsys, ["run", str(out), "--input", str(bad)])
    assert "(3, 5)" in err


def test_run_without_build(capsys, tmp_path) -> None:
    err = cli_error_line(capsys, ["run", str(tmp_path), "--input", str(_npy(tmp_path, (1,)))])
    assert "mcuc build" in err


def test_unknown_board(capsys, tmp_path) -> None:
    err = cli_error_line(capsys, ["build", "--board", "nosuchboard", "--out", str(tmp_path)])
    assert "nosuchboard" in err


def _npy(d: Path, shape: tuple[int, ...]) -> Path:
    p = d / f"r{'x'.join(map(str, shape))}.npy"
    np.save(p, np.random.default_rng(1).random(shape).astype(np.float32))
    return p
