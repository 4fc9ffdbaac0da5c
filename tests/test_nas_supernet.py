"""The one-shot supernet: extracted subnets compute what the supernet computes, weights
are really shared, training learns, resume is exact, and DDP under torchrun with two
gloo processes gives the same weights as one process on the same batches."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuc import McucError
from mcuc.nas.space import SubnetConfig, load_space, parse_space
from mcuc.nas.supernet import SuperViT
from mcuc.nas.train import (
    TrainSettings,
    feasible_pool,
    holdout_split,
    load_supernet,
    sampling_weights,
    subnet_accuracy,
    train_supernet,
)

SMALL = parse_space({"resolution": [28], "patch": [4, 7], "dim": [16, 24], "depth": [1, 2],
                     "heads": [1, 2], "mlp_ratio": [1.0, 2.0], "lowrank_ratio": [1.0, 0.5]})


def _perturbed(space, seed: int = 0) -> SuperViT:
    torch.manual_seed(seed)
    m = SuperViT(space).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("seed", range(8))
def test_extracted_subnet_equals_supernet(seed: int) -> None:
    space = load_space()
    m = _perturbed(space, seed)
    cfg = space.sample(random.Random(seed))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = m(x, cfg)
        got = m.extract(cfg)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_weights_are_shared_between_subnets() -> None:
    """A narrow subnet's weights are the leading slice of a wide one's."""
    m = _perturbed(SMALL)
    wide = SubnetConfig(28, 4, 24, 2, (2, 2), (2.0, 2.0), (1.0, 1.0))
    narrow = SubnetConfig(28, 4, 16, 1, (1,), (1.0,), (1.0,))
    a, b = m.extract(wide), m.extract(narrow)
    qa, qb = a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight
    for part in range(3):   # q, k and v rows of the narrow net sit inside the wide ones
        torch.testing.assert_close(qb[16 * part:16 * (part + 1)],
                                   qa[24 * part:24 * part + 16, :16])
    torch.testing.assert_close(b.blocks[0].mlp[0].weight, a.blocks[0].mlp[0].weight[:16, :16])
    torch.testing.assert_close(b.head.weight, a.head.weight[:, :16])


def test_extract_rejects_configs_outside_the_space() -> None:
    with pytest.raises(McucError, match="not in the search space"):
        SuperViT(SMALL).extract(SubnetConfig(28, 4, 64, 1, (1,), (1.0,), (1.0,)))


def _data(n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two easy classes of ten (bright top half vs bright bottom half) plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.3
    x[y % 2 == 0, :, :14] += 0.7
    x[y % 2 == 1, :, 14:] += 0.7
    return x, y


def test_training_learns_and_checkpoints(tmp_path: Path) -> None:
    x, y = _data(1024)
    pool = feasible_pool(SMALL, lambda c: True, 6, seed=0)
    settings = TrainSettings(epochs=8, batch_size=64, lr=3e-3, augment=False)
    m = train_supernet(SMALL, x, y, settings, pool, checkpoint=tmp_path / "s.pt",
                       progress=False, meta={"dataset": "toy"})
    assert m.train_losses[-1] < m.train_losses[0]
    xv, yv = (torch.from_numpy(a) for a in _data(200, seed=1))
    accs = [subnet_accuracy(m, c, xv, yv) for c in pool]
    assert min(accs) > 0.9, accs   # every pooled subnet learned it, through shared weights
    loaded, ck = load_supernet(tmp_path / "s.pt")
    assert ck["epoch"] == 8 and ck["meta"] == {"dataset": "toy"}
    assert [SubnetConfig.from_dict(d) for d in ck["pool"]] == pool
    for k, v in m.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, atol=0, rtol=0)


def test_resume_is_exact(tmp_path: Path) -> None:
    """Two epochs straight == one epoch, interrupted, then --resume."""
    x, y = _data(256)
    pool = feasible_pool(SMALL, lambda c: True, 5, seed=1)
    full = train_supernet(SMALL, x, y, TrainSettings(epochs=2, batch_size=64), pool,
                          checkpoint=tmp_path / "a.pt", progress=False)
    one = _first_epoch_checkpoint(x, y, pool, tmp_path / "b.pt")
    assert torch.load(one, weights_only=False)["epoch"] == 1
    resumed = train_supernet(SMALL, x, y, TrainSettings(epochs=2, batch_size=64), pool,
                             checkpoint=one, resume=True, progress=False)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=0, rtol=0, msg=k)
    assert resumed.train_losses == full.train_losses


def _first_epoch_checkpoint(x, y, pool, path: Path) -> Path:
    """Run the two-epoch job but kill it after epoch 1, as a user's Ctrl-C would."""
    import mcuc.nas.train as nt

    real = nt.save_checkpoint

    class Stop(Exception):
        pass

    def save_then_stop(p, state):
        real(p, state)
        raise Stop

    nt.save_checkpoint = save_then_stop
    try:
        with pytest.raises(Stop):
            train_supernet(SMALL, x, y, TrainSettings(epochs=2, batch_size=64), pool,
                           checkpoint=path, progress=False)
    finally:
        nt.save_checkpoint = real
    return path


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    x, y = _data(64)
    pool = feasible_pool(SMALL, lambda c: True, 2, seed=0)
    train_supernet(SMALL, x, y, TrainSettings(epochs=1, batch_size=32), pool,
                   checkpoint=tmp_path / "s.pt", progress=False)
    with pytest.raises(McucError, match="another space or settings"):
        train_supernet(SMALL, x, y, TrainSettings(epochs=1, batch_size=16), pool,
                       checkpoint=tmp_path / "s.pt", resume=True, progress=False)


def test_sampling_weights_follow_macs() -> None:
    pool = feasible_pool(SMALL, lambda c: True, 5, seed=3)
    macs = {c: 100 * (i + 1) for i, c in enumerate(pool)}
    w = sampling_weights(pool, macs.__getitem__, "macs")
    assert w == pytest.approx([m / sum(macs.values()) for m in macs.values()])
    assert sampling_weights(pool, macs.__getitem__, "uniform") == pytest.approx([0.2] * 5)
    with pytest.raises(McucError, match="sampling must be one of macs, uniform"):
        TrainSettings(sampling="sandwich")


@pytest.mark.parametrize("weights, p7_trained", [([1.0, 0.0], False), ([0.5, 0.5], True)])
def test_training_draws_by_weight(tmp_path: Path, weights, p7_trained: bool) -> None:
    """A subnet with weight 0 is never drawn: its own patch embedding stays at init."""
    x, y = _data(128)
    pool = [SubnetConfig(28, p, 16, 1, (1,), (1.0,), (1.0,)) for p in (4, 7)]
    settings = TrainSettings(epochs=1, batch_size=16)
    m = train_supernet(SMALL, x, y, settings, pool, progress=False, weights=weights,
                       checkpoint=tmp_path / "s.pt")
    torch.manual_seed(settings.seed)
    init = SuperViT(SMALL)   # the initial weights train_supernet starts from
    assert not torch.equal(m.patch_w["p4"], init.patch_w["p4"])
    assert torch.equal(m.patch_w["p7"], init.patch_w["p7"]) is not p7_trained
    assert torch.load(tmp_path / "s.pt", weights_only=False)["weights"] == weights
    with pytest.raises(McucError, match="another space or settings"):
        train_supernet(SMALL, x, y, settings, pool, progress=False, resume=True,
                       weights=[0.2, 0.8], checkpoint=tmp_path / "s.pt")


def test_holdout_split_is_disjoint_and_seeded() -> None:
    tr, va = holdout_split(100, 10, 3)
    assert len(tr) == 90 and len(va) == 10 and not set(tr) & set(va)
    assert np.array_equal(va, holdout_split(100, 10, 3)[1])
    assert not np.array_equal(va, holdout_split(100, 10, 4)[1])
    with pytest.raises(McucError, match="held-out split"):
        holdout_split(10, 10, 0)


def test_feasible_pool_respects_the_predicate() -> None:
    pool = feasible_pool(SMALL, lambda c: c.dim == 16 and c.depth == 1, 50, seed=0)
    assert pool and all(c.dim == 16 and c.depth == 1 for c in pool)
    assert len(set(pool)) == len(pool)
    with pytest.raises(McucError, match="no config of the search space fits"):
        feasible_pool(SMALL, lambda c: False, 5, seed=0, max_draws=50)


def test_distilled_supernet_follows_the_teacher(tmp_path: Path) -> None:
    """All the weight on a teacher that names each image's class plus one: every pooled
    subnet learns the teacher's labels through the shared weights, not the true ones.
    The checkpoint keeps each epoch's seconds."""
    x, y = _data(1024)
    shifted = (y + 1) % 2
    pool = feasible_pool(SMALL, lambda c: True, 4, seed=0)
    settings = TrainSettings(epochs=6, batch_size=64, lr=3e-3, distill_weight=1.0)
    m = train_supernet(SMALL, x, y, settings, pool, checkpoint=tmp_path / "s.pt",
                       progress=False, distill=shifted)
    xv, yv = (torch.from_numpy(a) for a in _data(200, seed=1))
    for c in pool:
        assert subnet_accuracy(m, c, xv, (yv + 1) % 2) > 0.9, c
    ck = torch.load(tmp_path / "s.pt", weights_only=False)
    assert len(ck["epoch_seconds"]) == 6 and sum(ck["epoch_seconds"]) == ck["seconds"]
    with pytest.raises(McucError, match="needs teacher labels"):
        train_supernet(SMALL, x, y, settings, pool, progress=False)
    with pytest.raises(McucError, match="needs teacher labels"):   # labels, no weight
        train_supernet(SMALL, x, y, TrainSettings(epochs=1), pool, progress=False,
                       distill=shifted)
    with pytest.raises(McucError, match="teacher label per image"):
        train_supernet(SMALL, x, y, settings, pool, progress=False, distill=shifted[:10])
    with pytest.raises(McucError, match="distillation weight must be in"):
        TrainSettings(distill_weight=2.0)


def test_cuda_without_cuda_is_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    x, y = _data(32)
    with pytest.raises(McucError, match="no CUDA device"):
        train_supernet(SMALL, x, y, TrainSettings(epochs=1), device="cuda", progress=False)


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def _space_file(tmp_path: Path) -> Path:
    p = tmp_path / "space.toml"
    p.write_text('resolution = [28]\npatch = [7]\ndim = [16, 24]\ndepth = [1, 2]\n'
                 'heads = [1, 2]\nmlp_ratio = [1.0, 2.0]\nlowrank_ratio = [1.0, 0.5]\n')
    return p


def test_ddp_two_processes_match_one_process(tmp_path: Path) -> None:
    """torchrun --nproc_per_node=2 (gloo): each rank takes half of every batch; the
    averaged gradients must give the weights one process gets on the whole batches."""
    space = _space_file(tmp_path)
    common = ["--limit", "256", "--val", "32", "--epochs", "1", "--pool", "4",
              "--space", str(space), "--no-progress", "--sram", "320K"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        _torchrun() + ["--nproc_per_node=2", "--master_port", "29517", "-m", "mcuc.nas.train",
                       *common, "--batch-size", "16", "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "mcuc.nas.train", *common, "--batch-size", "32",
         "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    a = torch.load(tmp_path / "ddp" / "supernet.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "supernet.pt", weights_only=False)
    assert a["world"] == 2 and b["world"] == 1
    for k, v in b["model"].items():
        torch.testing.assert_close(a["model"][k], v, atol=2e-5, rtol=1e-4, msg=k)
    assert not torch.equal(a["model"]["head.weight"], SuperViT(parse_space(a["space"])
                                                               ).state_dict()["head.weight"])


def test_ddp_no_fit_error_reaches_every_rank(tmp_path: Path) -> None:
    """Rank 0 costs the pool; when nothing fits, rank 1 gets the error too instead of
    waiting for a pool that never comes."""
    r = subprocess.run(
        _torchrun() + ["--nproc_per_node=2", "--master_port", "29518", "-m", "mcuc.nas.train",
                       "--limit", "64", "--val", "8", "--pool", "4", "--no-progress",
                       "--space", str(_space_file(tmp_path)), "--sram", "2K",
                       "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    assert r.stderr.count("mcuc: error: no config of the search space fits") == 2, r.stderr[-2000:]


def test_train_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mcuc.nas.train", "--out", str(tmp_path),
                        "--dataset", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "mcuc: error:" in r.stderr
