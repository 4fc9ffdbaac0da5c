"""Training loop and ONNX export, on a toy ViT that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mcuc import McucError  # noqa: E402
from mcuc.datasets import load_fashion_mnist  # noqa: E402
from mcuc.models.teacher import teacher_labels, train_teacher  # noqa: E402
from mcuc.models.train import (  # noqa: E402
    augment_batch,
    count_params,
    evaluate,
    export_onnx,
    predict,
    run_onnx,
    train,
)
from mcuc.models.vit import ViTConfig, build_vit  # noqa: E402

TINY = dict(patch=7, dim=32, depth=1, heads=2, mlp_ratio=2.0)


def mean_loss(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    logits = torch.from_numpy(predict(model, x))
    return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)))


def test_one_epoch_lowers_loss() -> None:
    x, y = load_fashion_mnist("train", limit=512)
    torch.manual_seed(0)
    model = build_vit(ViTConfig(**TINY))
    before = mean_loss(model, x, y)
    train(model, x, y, epochs=1, batch_size=16, lr=3e-3, seed=0, progress=False,
          label_smoothing=0.0)
    after = mean_loss(model, x, y)
    assert not model.training
    assert len(model.train_losses) == 1
    # From chance (ln 10 = 2.30) to about 2.03 after 32 steps; leave margin for BLAS noise.
    assert after < before - 0.15, (before, after)
    assert evaluate(model, x, y) > 0.15


def test_training_is_repeatable() -> None:
    x, y = load_fashion_mnist("train", limit=128)
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_vit(ViTConfig(**TINY))
        train(model, x, y, epochs=1, batch_size=32, seed=5, progress=False, augment=True)
        outs.append(predict(model, x[:8]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_train_rejects_bad_input() -> None:
    model = build_vit(ViTConfig(**TINY))
    x = np.zeros((4, 1, 28, 28), np.float32)
    with pytest.raises(McucError):
        train(model, x, np.zeros(3, np.int64), epochs=1, progress=False)
    with pytest.raises(McucError):
        train(model, x, np.zeros(4, np.int64), epochs=0, progress=False)


def test_augment_batch_shifts_and_flips() -> None:
    gen = torch.Generator().manual_seed(0)
    xb = torch.rand(64, 1, 28, 28)
    out = augment_batch(xb, gen, pad=2)
    assert out.shape == xb.shape
    # Each output is the input shifted by at most 2 pixels, possibly mirrored.
    for i in range(8):
        padded = torch.nn.functional.pad(xb[i], (2, 2, 2, 2))
        cands = [padded[:, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)]
        cands += [c.flip(-1) for c in cands]
        assert any(torch.equal(out[i], c) for c in cands)


@pytest.mark.parametrize("encoder,pool", [("mcuc", "cls"), ("torch", "mean")])
def test_export_onnx_matches_torch(tmp_path: Path, encoder: str, pool: str) -> None:
    torch.manual_seed(0)
    model = build_vit(ViTConfig(**TINY, encoder=encoder, pool=pool))
    x, y = load_fashion_mnist("train", limit=256)
    train(model, x, y, epochs=1, batch_size=64, progress=False)
    path = export_onnx(model, (1, 1, 28, 28), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    assert not proto.graph.initializer or all(
        i.data_location != onnx.TensorProto.EXTERNAL for i in proto.graph.initializer
    )
    assert sum(int(np.prod(i.dims)) for i in proto.graph.initializer) >= count_params(model) // 2
    xt, _ = load_fashion_mnist("test", limit=4)
    for img in xt:
        got = run_onnx(path, img[None])
        ref = predict(model, img[None])
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_export_rejects_batched_shape(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="batch 1"):
        export_onnx(build_vit(ViTConfig(**TINY)), (2, 1, 28, 28), tmp_path / "m.onnx")


def test_distillation_follows_the_teachers_labels() -> None:
    """With all the weight on the teacher, the model learns the teacher's labels, not the
    true ones: here a teacher that names every image's class plus one."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    shifted = (y + 1) % 10
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    train(net, x, y, 60, batch_size=50, lr=1e-2, progress=False, distill=shifted,
          distill_weight=1.0)
    pred = predict(net, x).argmax(1)
    assert (pred == shifted).mean() > 0.9 and (pred == y).mean() < 0.1
    with pytest.raises(McucError, match="teacher label per image"):
        train(net, x, y, 1, progress=False, distill=shifted[:10])
    with pytest.raises(McucError, match="distillation weight"):
        train(net, x, y, 1, progress=False, distill=shifted, distill_weight=1.5)


def test_train_on_cuda_without_cuda_is_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    x = np.zeros((4, 1, 4, 4), np.float32)
    with pytest.raises(McucError, match="no CUDA device"):
        train(net, x, np.zeros(4, np.int64), 1, progress=False, device="cuda")


def test_teacher_learns_fashion_mnist() -> None:
    x, y = load_fashion_mnist("train", limit=1000)
    net = train_teacher(x, y, 3, progress=False)
    labels = teacher_labels(net, x)
    assert labels.shape == (1000,) and labels.dtype == np.int64
    assert (labels == y).mean() > 0.4   # 10 classes: chance is 0.1
    with pytest.raises(McucError, match="teacher epochs"):
        train_teacher(x, y, 0)


def test_teacher_is_repeatable_whatever_the_global_seed() -> None:
    """torch seeds each process's generator at random, so the initial weights must come
    from the training seed: two processes (here: two global seeds) give one teacher."""
    x, y = load_fashion_mnist("train", limit=128)
    nets = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        nets.append(train_teacher(x, y, 1, seed=3, progress=False))
    for p, q in zip(nets[0].state_dict().values(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(p, q)
    torch.manual_seed(1)
    other = train_teacher(x, y, 1, seed=4, progress=False)
    assert not torch.equal(other[0].weight, nets[0][0].weight)


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """A run killed after an epoch goes on from its kept state and ends where an
    uninterrupted run ends; a state kept under another key is not used."""
    x, y = load_fashion_mnist("train", limit=96)
    kw = dict(epochs=3, batch_size=32, seed=5, progress=False, augment=True)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(1)
        return build_vit(ViTConfig(**TINY))

    straight = train(fresh(), x, y, **kw)
    state = tmp_path / "model.partial.pt"

    def killed(epoch: int, loss: float) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), x, y, **kw, resume=state, resume_key="k", on_epoch=killed)
    assert torch.load(state, weights_only=False)["epoch"] == 1
    torch.manual_seed(99)   # another process: its own global generator
    resumed = train(fresh(), x, y, **kw, resume=state, resume_key="k")
    assert not state.exists()
    np.testing.assert_array_equal(predict(resumed, x[:8]), predict(straight, x[:8]))
    assert resumed.train_losses == straight.train_losses

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), x, y, **kw, resume=state, resume_key="k", on_epoch=killed)
    other = train(fresh(), x, y, **{**kw, "epochs": 1}, resume=state, resume_key="other")
    assert len(other.train_losses) == 1   # started over: the kept state was another run's
