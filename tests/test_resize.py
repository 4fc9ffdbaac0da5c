"""Input resolution as a search dimension: the one resize (mcuc.resize) equals what the
supernet does inside its forward pass, so a subnet picked at a resolution other than the
dataset's sees the same pixels when it is fine-tuned, calibrated, built and run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mcuc import McucError
from mcuc.cli import main
from mcuc.datasets import load_calibration, load_dataset, load_fashion_mnist
from mcuc.nas.space import SubnetConfig, parse_space
from mcuc.nas.supernet import SuperViT
from mcuc.pipeline import compile_graph, load_graph
from mcuc.resize import resize_images
from mcuc.runner import run_built
from mcuc.schedule import execute


@pytest.mark.parametrize("shape, size", [
    ((3, 1, 28, 28), 32), ((2, 3, 28, 28), 24), ((2, 1, 28, 28), (14, 40)),
    ((1, 2, 5, 7), (11, 3)), ((2, 1, 28, 28), 7),
])
def test_resize_is_torch_bilinear(shape: tuple, size) -> None:
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    hw = (size, size) if isinstance(size, int) else size
    want = F.interpolate(torch.from_numpy(x), size=hw, mode="bilinear",
                         align_corners=False).numpy()
    got = resize_images(x, size)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_resize_keeps_a_matching_size_and_refuses_bad_input() -> None:
    x = np.random.default_rng(1).random((2, 1, 9, 9), dtype=np.float32)
    np.testing.assert_array_equal(resize_images(x, 9), x)
    with pytest.raises(McucError, match=r"\[N, C, H, W\]"):
        resize_images(x[0], 4)
    with pytest.raises(McucError, match="cannot resize images to 0x4"):
        resize_images(x, (0, 4))


def test_supernet_and_extracted_subnet_agree_across_resolutions() -> None:
    """The search scores a subnet inside the supernet on native images; the exported
    model gets resize_images' pixels: the logits must be the same."""
    space = parse_space({"resolution": [20, 28, 32], "patch": [4, 5, 7], "dim": [16],
                         "depth": [2], "heads": [2], "mlp_ratio": [2.0],
                         "lowrank_ratio": [1.0]})
    torch.manual_seed(0)
    sn = SuperViT(space).eval()
    x = load_fashion_mnist("test", limit=8)[0]
    for res, patch in space.families:
        cfg = SubnetConfig(res, patch, 16, 2, (2, 2), (2.0, 2.0), (1.0, 1.0))
        with torch.no_grad():
            inside = sn(torch.from_numpy(x), cfg).numpy()
            alone = sn.extract(cfg)(torch.from_numpy(resize_images(x, res))).numpy()
        np.testing.assert_allclose(alone, inside, atol=1e-5, err_msg=f"{res=} {patch=}")


def test_named_datasets_resize_to_the_model_input() -> None:
    x = load_fashion_mnist("train", limit=None)[0]
    cal = load_calibration("fashion-mnist", (1, 1, 32, 32), count=5, seed=3)
    idx = np.sort(np.random.default_rng(3).choice(len(x), size=5, replace=False))
    np.testing.assert_array_equal(cal, resize_images(x[idx], 32))
    big, _, _ = load_dataset("fashion-mnist", "test", limit=3, size=36)
    np.testing.assert_array_equal(big, resize_images(load_fashion_mnist("test", 3)[0], 36))
    with pytest.raises(McucError, match="yields inputs shaped") as e:
        load_calibration("fashion-mnist", (1, 3, 28, 28))
    assert "\n" not in str(e.value)


def test_search_at_other_resolutions_builds_and_runs(tmp_path: Path) -> None:
    """A space whose resolutions are not the dataset's (20: patches 4 and 5; 24: patch 4
    only): each family's finalist keeps the accuracy the search gave it, and `mcuc build
    --calib fashion-mnist` on best.onnx gives the predicted sizes and a firmware equal to
    the integer reference on resized test images."""
    space = tmp_path / "space.toml"
    space.write_text("resolution = [20, 24]\npatch = [4, 5]\ndim = [16, 24]\ndepth = [1, 2]\n"
                     "heads = [1, 2]\nmlp_ratio = [1.0, 2.0]\nlowrank_ratio = [1.0, 0.5]\n")
    out = tmp_path / "run"
    # the defaults this test was written against, not the measured recipe
    bare = Path(__file__).resolve().parent / "recipes" / "bare.toml"
    assert main(["search", "--recipe", str(bare), "--board", "stm32f746", "--sram", "64K",
                 "--flash", "256K", "--dataset", "fashion-mnist", "--space", str(space),
                 "--finalists", "3",
                 "--finetune-epochs", "1", "--limit", "400", "--val", "100", "--epochs", "1",
                 "--pool", "12", "--population", "8", "--generations", "2", "--parents", "4",
                 "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "search.json").read_text())
    scored = {json.dumps(c["config"], sort_keys=True): c["accuracy"] for c in s["candidates"]}
    fins = s["meta"]["best"]["finalists"]
    assert len(fins) >= 2
    for f in fins:   # 100 held-out images: a float rounding may move one of them
        assert abs(f["val_accuracy_inherited"] -
                   scored[json.dumps(f["config"], sort_keys=True)]) <= 0.01
    best = s["best"]
    res = best["config"]["resolution"]
    assert res in (20, 24) and np.load(out / "calib.npy").shape[1:] == (1, res, res)

    build = tmp_path / "f746"
    assert main(["build", "--board", "stm32f746", "--model", str(out / "best.onnx"),
                 "--calib", "fashion-mnist", "--out", str(build)]) == 0
    rep = json.loads((build / "report.json").read_text())
    assert rep["arena_bytes"] == best["cost"]["arena_bytes"]
    assert rep["estimate"]["flash_bytes"] == best["cost"]["flash_bytes"]
    c = compile_graph(load_graph(out / "best.onnx"),
                      load_calibration("fashion-mnist", (1, 1, res, res)))
    for xi in resize_images(load_fashion_mnist("test", limit=2)[0], res):
        got = run_built(build, xi[None])
        ref = execute.run(c.schedule, execute.quantize_input(c.schedule, xi[None]), c.plan)
        np.testing.assert_array_equal(got.output.reshape(-1), ref.reshape(-1))
