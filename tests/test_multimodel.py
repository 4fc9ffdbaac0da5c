"""Model names (issue 25 item 1) and weight placement (item 3).

Two different models, each built on its own with its own --name, are linked into one
stm32f746 firmware (mcuc.target.multimodel.link_models: their files side by side, the runtime
compiled once) and run in the Unicorn engine; each model's outputs must equal its own numpy
integer reference bit for bit. A build whose weights section is placed in the F746's QSPI
window (0x90000000) must run bit-exact too, its weights really there.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from mcuc import McucError
from mcuc.codegen.modelname import BUNDLED_NAME, check_name, default_name, name_problem
from mcuc.pipeline import build
from mcuc.target.elf import symbol
from mcuc.target.multimodel import LinkedModel, link_models
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import quantize, reference

from helpers import cli_error_line, compile_random, input_shape, random_inputs, random_model

needs_unicorn = pytest.mark.skipif(not unicorn_available(),
                                   reason="mcuc.sim.unicorn_m7 not available")
# Two small random ViTs of different shapes (seed: image, channels, classes differ).
SEEDS = {"kws": 4, "vww": 5}


def _build(seed: int, out, board: str = "host", **kw) -> tuple:
    """Build the random model of `seed` like compile_random compiles it (same calibration
    inputs), so that compile_random's schedule is its reference."""
    cfg, c = compile_random(seed)
    report = build(random_model(cfg, seed), board, random_inputs(cfg, 16, seed), out,
                   input_shape=input_shape(cfg), **{"samples": 1, **kw})
    return cfg, c, report


def test_generated_files_carry_the_name(tmp_path) -> None:
    _, _, report = _build(SEEDS["kws"], tmp_path / "k", name="kws")
    assert report["name"] == "kws"
    out = tmp_path / "k"
    names = {p.name for p in out.iterdir()}
    assert {"kws.h", "kws.c", "kws_weights.h", "kws_weights.c"} <= names
    assert not names & {"model.h", "model.c", "weights.c", "weights.h"}
    h = (out / "kws.h").read_text()
    for needle in ("#ifndef KWS_H", "kws_status_t kws_run(", "kws_run_with_arena(",
                   "kws_step_name(", "#define KWS_ARENA_SIZE", "#define KWS_INPUT_SIZE",
                   "KWS_OK = 0", '".kws_weights"', '".kws_arena"'):
        assert needle in h, needle
    text = "".join((out / n).read_text() for n in ("kws.h", "kws.c", "kws_weights.h",
                                                   "kws_weights.c"))
    # nothing model-specific is left unprefixed: only the step hooks and runtime are mcuc's
    leftover = set(re.findall(r"\b(?:mcuc|MCUC)_\w+", text))
    assert leftover <= {"MCUC_STEP_BEGIN", "MCUC_STEP_END"} | {
        w for w in leftover if w.startswith("mcuc_") and w.endswith(("_s8", "_params_t"))}
    arrays = re.findall(r"^extern const \w+ (\w+)\[", (out / "kws_weights.h").read_text(), re.M)
    assert arrays and all(a.startswith("kws_m_") for a in arrays)


@needs_unicorn
def test_two_models_in_one_f746_firmware(tmp_path, capsys) -> None:
    """The issue's test: both models in one image, each bit-exact with its own reference."""
    refs, linked = {}, []
    for name, seed in SEEDS.items():
        cfg, c, _ = _build(seed, tmp_path / name, name=name)
        xq = quantize(c, random_inputs(cfg, 2, seed + 100))
        refs[name] = (xq, reference(c, xq))
        linked.append(LinkedModel(tmp_path / name, xq))
    assert refs["kws"][0].shape[1] != refs["vww"][0].shape[1]   # two different models
    info = link_models("stm32f746", linked, tmp_path / "fw")
    fw = tmp_path / "fw"
    # the runtime is compiled once, both models' files sit side by side
    objs = sorted(p.name for p in (fw / "obj" / "runtime" / "src").glob("*.o"))
    assert objs and len(objs) == len(set(objs))
    assert {"kws.c", "vww.c", "kws_weights.c", "vww_weights.c"} <= {p.name for p in fw.iterdir()}
    res = run_unicorn(info["elf"])   # the inputs baked into flash at link time
    print(res["stdout"])
    assert list(res["by_model"]) == ["kws", "vww"]
    for name, (_xq, ref) in refs.items():
        got = res["by_model"][name]
        assert len(got) == len(ref) == 2
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, r.reshape(-1), err_msg=name)
    # each model's arena and weights are in their own sections, in RAM and flash
    mp = (fw / "firmware.map").read_text()
    for name in SEEDS:
        assert re.search(rf"^\.{name}_weights\s+0x08", mp, re.M), name
        assert re.search(rf"^\.{name}_arena\s+0x2", mp, re.M), name
    # other inputs through the same image: patched over one model's samples only
    xq, ref = refs["vww"]
    res = run_unicorn(info["elf"], {"vww": xq[1:]})
    assert res["by_model"]["kws"] == [] and len(res["by_model"]["vww"]) == 1
    np.testing.assert_array_equal(res["by_model"]["vww"][0], ref[1].reshape(-1))


@needs_unicorn
def test_weights_in_qspi_flash(tmp_path) -> None:
    """--weights-region qspi: .<name>_weights in the F746's QSPI window, run bit-exact."""
    from mcuc.boards import load_board

    b = load_board("stm32f746")
    cfg, c, report = _build(SEEDS["kws"], tmp_path / "q", board="stm32f746", name="kws",
                            weights_region="qspi", samples=2)
    out = tmp_path / "q"
    assert re.search(r"\.kws_weights :.*?\} > QSPI", (out / "linker.ld").read_text(), re.S)
    arrays = re.findall(r"^extern const \w+ (\w+)\[", (out / "kws_weights.h").read_text(), re.M)
    for a in arrays:
        addr, _ = symbol(out / "firmware.elf", a)
        assert b.qspi_origin <= addr < b.qspi_origin + b.qspi_bytes, (a, hex(addr))
    fw = report["firmware"]
    assert fw["qspi_bytes"] >= c.schedule.weights_bytes() > 0
    assert report["flash_bytes"] < c.schedule.weights_bytes() + fw["text_bytes"]
    xq = quantize(c, random_inputs(cfg, 2, 77))
    res = run_unicorn(out / "firmware.elf", xq)
    for g, r in zip(res["outputs"], reference(c, xq), strict=True):
        np.testing.assert_array_equal(g, r.reshape(-1))


@pytest.mark.parametrize("bad", ["", "Kws", "1kws", "kws-v2", "kws__x", "kws_", "_kws",
                                 "int", "default", "main", "mcuc_model", "error", "isr",
                                 "string", "to_x", "kws_weights", "a" * 25, "kws\n", "board"])
def test_bad_names_are_one_line_errors(bad) -> None:
    assert name_problem(bad) is not None
    with pytest.raises(McucError) as e:
        check_name(bad)
    assert "\n" not in str(e.value)


def test_default_names() -> None:
    assert default_name(None) == BUNDLED_NAME == "vit"
    assert default_name("models/kws.onnx") == "kws"
    assert default_name("My Model-v2.onnx") == "my_model_v2"
    assert default_name("default.onnx") == "model_default"      # a keyword
    assert default_name("3d.onnx") == "model_3d"
    assert default_name("x; touch CANARY$(id)\n.onnx") == "x_touch_canary_id"
    assert default_name("???.onnx") == "model"
    assert default_name(object()) == "model"
    for stem in ("ünïcödé", "a" * 300, "__STDC__", "mcuc_run", "e1", "x_weights"):
        got = default_name(f"{stem}.onnx")
        assert name_problem(got) is None, (stem, got)


def test_cli_rejects_a_bad_name(capsys, tmp_path) -> None:
    err = cli_error_line(capsys, ["build", "--name", "int", "--out", str(tmp_path / "o")])
    assert "--name 'int'" in err and "keyword" in err
    err = cli_error_line(capsys, ["build", "--board", "stm32f427", "--weights-region", "qspi",
                                  "--out", str(tmp_path / "o")])
    assert "--weights-region" in err


def test_hostile_file_stem_becomes_a_clean_name(tmp_path, monkeypatch, capsys) -> None:
    """The stem is model-side text: it reaches file names, symbols, the Makefile only as a
    checked identifier; nothing in it runs."""
    from mcuc.cli import main
    from test_hostile_names import _tiny_onnx

    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    path = work / "x; touch PWNED $(id) `id`.onnx"
    _tiny_onnx(path)
    np.save(work / "calib.npy", np.random.default_rng(0).random((4, 1, 8, 8), np.float32))
    assert main(["build", "--model", str(path), "--calib", str(work / "calib.npy"),
                 "--out", str(work / "o")]) == 0, capsys.readouterr().err
    names = {p.name for p in (work / "o").iterdir()}
    assert {"x_touch_pwned_id_id.h", "x_touch_pwned_id_id.c"} <= names
    assert "x_touch_pwned_id_id_run(" in (work / "o" / "x_touch_pwned_id_id.h").read_text()
    assert not (work / "PWNED").exists() and not (work / "o" / "PWNED").exists()
    assert "touch" not in (work / "o" / "Makefile").read_text().replace("x_touch", "")
