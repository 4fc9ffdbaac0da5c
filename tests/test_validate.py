"""`mcuc validate`: the default model's host build and an stm32f746 build through Unicorn
agree with the int8 reference bit for bit and score near the model's known accuracy; a
patched build is reported as mismatching on exactly the inputs it changes; bad input is
one error line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
from mcuc.buildmeta import load_build, write_meta
from mcuc.cli import main
from mcuc.pipeline import build
from mcuc.sim.host import build_host
from mcuc.target.unicorn import unicorn_available
from mcuc.validation import float_available, validate

from helpers import cli_error_line as _err

N = 50
# Calibration images for the builds here: fewer than the default 64, so the build is
# quick; the default model still scores within a point or two of its ~89%.
CALIB = 16


@pytest.fixture(scope="module")
def host_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validate") / "host"
    build(out_dir=out, calib_images=CALIB)
    return out


def test_host_build_bit_exact_and_accurate(host_build, capsys) -> None:
    v = validate(host_build, f"fashion-mnist:{N}")
    assert v.images == N and v.labelled and v.engine == "host"
    assert v.mismatches == 0 and v.bit_exact and v.first_mismatch is None
    assert v.target.agreement == 1.0 and v.reference.agreement == 1.0
    assert v.target.accuracy == v.reference.accuracy
    assert 0.82 <= v.reference.accuracy <= 0.96   # the model's ~89% on 50 images
    assert v.target.vs_reference.rmse == 0.0 and v.target.vs_reference.max_abs == 0.0
    assert not v.warnings
    if float_available():
        assert v.float_model.note is None
        assert v.float_model.agreement >= 0.94
        assert v.reference.vs_float.cosine > 0.99
        assert v.reference.vs_float.rel_l2 < 0.1
        assert v.reference.vs_float == v.target.vs_float
    else:
        assert "onnxruntime" in v.float_model.note
    # The CLI prints the table; --json the same figures.
    assert main(["validate", str(host_build), "--data", "fashion-mnist:5"]) == 0
    text = capsys.readouterr().out
    assert "target (host)" in text and "bit for bit on all 5 inputs" in text
    assert main(["validate", str(host_build), "--data", "fashion-mnist:5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["images"] == 5 and d["bit_exact"] and d["mismatches"] == 0


def test_npy_data_with_labels_and_int8_inputs(host_build, tmp_path) -> None:
    from mcuc.datasets import load_fashion_mnist

    x, y = load_fashion_mnist("test", limit=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    v = validate(host_build, str(tmp_path / "x.npy"), tmp_path / "y.npy")
    w = validate(host_build, "fashion-mnist:6")
    assert v.bit_exact and v.images == 6 and v.labelled
    assert v.reference.accuracy == w.reference.accuracy
    # Already quantized int8 inputs pass as they are; no labels: no accuracy.
    qp = load_build(host_build).input_qp
    np.save(tmp_path / "q.npy", qp.quantize(x))
    q = validate(host_build, str(tmp_path / "q.npy"))
    assert q.bit_exact and q.reference.accuracy is None and q.reference.agreement == 1.0
    assert q.reference.vs_float is None or q.reference.vs_float.cosine > 0.99


def test_patched_target_is_reported(host_build, tmp_path) -> None:
    """A build whose program clears the lowest bit of the first logit: validate must count
    exactly the inputs whose reference output has an odd first logit."""
    out = tmp_path / "patched"
    shutil.copytree(host_build, out)
    main_c = out / "main.c"
    src = main_c.read_text()
    line = 'printf(" %d", output[i]);'
    assert line in src
    main_c.write_text(src.replace(line, 'printf(" %d", i == 0 ? (output[0] & ~1) : output[i]);'))
    build_host(out)
    meta = json.loads((out / "mcuc.json").read_text())
    write_meta(out, {k: v for k, v in meta.items() if k not in ("format", "mcuc", "files")})
    v = validate(out, "fashion-mnist:20")   # the unpatched build: bit-exact (test above)
    from mcuc.datasets import load_fashion_mnist
    from mcuc.quant.qparams import prepare_input
    from mcuc.schedule import execute
    from mcuc.validation import rebuild_reference

    b = load_build(out)
    c, _ = rebuild_reference(b)
    x, _ = load_fashion_mnist("test", limit=20)
    odd = [i for i, xi in enumerate(x)
           if execute.run(c.schedule, prepare_input(xi, b.input_shape, b.input_qp),
                          c.plan)[0] & 1]
    assert odd, "no input with an odd first logit: the mutation would go unnoticed"
    assert v.mismatches == len(odd) and v.first_mismatch == odd[0]
    assert not v.bit_exact and v.target.vs_reference.max_abs > 0
    assert not v.warnings   # the model sources are untouched; only the driver differs




def test_bad_inputs_are_one_line(host_build, tmp_path, capsys) -> None:
    b = str(host_build)
    assert "not an mcuc build" in _err(capsys, ["validate", str(tmp_path), "--data",
                                                "fashion-mnist:2"])
    assert "count after ':'" in _err(capsys, ["validate", b, "--data", "fashion-mnist:x"])
    assert "at least 1" in _err(capsys, ["validate", b, "--data", "fashion-mnist:0"])
    assert "neither a data set" in _err(capsys, ["validate", b, "--data", "nope.txt"])
    assert "not found" in _err(capsys, ["validate", b, "--data", str(tmp_path / "no.npy")])
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    assert "expected [N, 1, 28, 28]" in _err(capsys, ["validate", b, "--data",
                                                      str(tmp_path / "bad.npy")])
    (tmp_path / "pickle.npy").write_bytes(b"\x80\x04K\x01.")
    assert "pickle" in _err(capsys, ["validate", b, "--data", str(tmp_path / "pickle.npy")])
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 28, 28), np.float32))
    np.save(tmp_path / "y2.npy", np.zeros(2, np.int64))
    assert "2 labels for 3" in _err(capsys, ["validate", b, "--data", str(tmp_path / "x.npy"),
                                             "--labels", str(tmp_path / "y2.npy")])
    np.save(tmp_path / "yf.npy", np.zeros(3, np.float32))
    assert "integer" in _err(capsys, ["validate", b, "--data", str(tmp_path / "x.npy"),
                                      "--labels", str(tmp_path / "yf.npy")])
    nan = np.zeros((2, 1, 28, 28), np.float32)
    nan[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert "NaN" in _err(capsys, ["validate", b, "--data", str(tmp_path / "nan.npy")])
    assert "runs on the host" in _err(capsys, ["validate", b, "--data", "fashion-mnist:2",
                                               "--engine", "unicorn"])
    # A build from before the reference record (or with it removed): one line, no run.
    old = tmp_path / "old"
    shutil.copytree(host_build, old)
    meta = json.loads((old / "mcuc.json").read_text())
    del meta["reference"]
    (old / "mcuc.json").write_text(json.dumps(meta))
    assert "records no model" in _err(capsys, ["validate", str(old), "--data",
                                               "fashion-mnist:2"])
    meta["reference"] = {"model": None}
    (old / "mcuc.json").write_text(json.dumps(meta))
    assert "malformed reference" in _err(capsys, ["validate", str(old), "--data",
                                                  "fashion-mnist:2"])
    # A model file that is not the one built: refused, not compared against.
    meta = json.loads((host_build / "mcuc.json").read_text())
    meta["reference"]["model_sha256"] = "0" * 64
    (old / "mcuc.json").write_text(json.dumps(meta))
    assert "not the one this build" in _err(capsys, ["validate", str(old), "--data",
                                                     "fashion-mnist:2"])
    assert "not the one this build" in _err(capsys, ["validate", b, "--data", "fashion-mnist:2",
                                                     "--model", str(tmp_path / "x.npy")])
    assert "--model" in _err(capsys, ["validate", b, "--data", "fashion-mnist:2",
                                      "--model", str(tmp_path / "gone.onnx")])


def test_moved_model(host_build, tmp_path) -> None:
    """A build whose model file moved: --model names its new place."""
    from mcuc.pipeline import DEFAULT_MODEL

    shutil.copy(DEFAULT_MODEL, tmp_path / "moved.onnx")
    out = tmp_path / "b"
    shutil.copytree(host_build, out)
    meta = json.loads((out / "mcuc.json").read_text())
    meta["reference"]["model"] = str(tmp_path / "gone.onnx")
    (out / "mcuc.json").write_text(json.dumps(meta))
    with pytest.raises(McucError, match="missing"):
        validate(out, "fashion-mnist:2")
    assert validate(out, "fashion-mnist:2", model=tmp_path / "moved.onnx").bit_exact


def test_without_onnxruntime(host_build, monkeypatch, capsys) -> None:
    """mcuc[search] not installed: the float row says so in one line; the rest runs."""
    import mcuc.validation

    monkeypatch.setattr(mcuc.validation, "float_available", lambda: False)
    v = validate(host_build, "fashion-mnist:2")
    assert "onnxruntime not installed" in v.float_model.note
    assert v.reference.vs_float is None and v.bit_exact and v.reference.accuracy is not None
    assert main(["validate", str(host_build), "--data", "fashion-mnist:2"]) == 0
    out = capsys.readouterr().out
    assert "float (onnxruntime)   onnxruntime not installed" in out


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or not unicorn_available(),
                    reason="needs arm-none-eabi-gcc and the Unicorn engine")
def test_stm32f746_through_unicorn(tmp_path) -> None:
    out = tmp_path / "f746"
    # Two samples in flash: the four images take two emulator launches.
    build(board="stm32f746", out_dir=out, calib_images=CALIB, samples=2)
    v = validate(out, "fashion-mnist:4", engine="unicorn")
    assert v.engine == "unicorn" and v.images == 4
    assert v.bit_exact and v.target.agreement == 1.0
    assert v.seconds["target_per_image"] > 0 and v.per_launch == 2


def test_per_layer(host_build, capsys) -> None:
    v = validate(host_build, "fashion-mnist:3", per_layer=True)
    layers = v.per_layer
    assert layers and {"Conv", "LayerNorm", "Linear", "Gelu", "Softmax"} <= {r.op for r in layers}
    assert not {"Reshape", "Transpose"} & {r.op for r in layers}
    # One layer: rounding, and clipping where a test image leaves the calibrated range.
    assert layers[0].op == "Conv" and layers[0].cosine > 0.999 and layers[0].max_lsb < 8
    assert all(r.cosine > 0.98 for r in layers)
    # The last layer is the model's output: the same figures as the reference's own row
    # (the float interpreter and onnxruntime agree to float32 rounding).
    if v.reference.vs_float is not None:
        assert layers[-1].cosine == pytest.approx(v.reference.vs_float.cosine, abs=1e-5)
        assert layers[-1].max_abs == pytest.approx(v.reference.vs_float.max_abs, abs=1e-3)
    assert main(["validate", str(host_build), "--data", "fashion-mnist:2", "--per-layer"]) == 0
    assert "per layer:" in capsys.readouterr().out
