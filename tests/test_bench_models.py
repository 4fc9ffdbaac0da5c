"""A bench model: trained from scripts/bench_config.py, the same from any process, tied
to its teacher's labels, and resumed from its last epoch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

# the bench harness lives in scripts/, outside the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_search  # noqa: E402
import bench_search_stages  # noqa: E402
from test_bench_search import QUICK  # noqa: E402


def test_bench_config_trains_one_config_as_a_searched_model(tmp_path: Path) -> None:
    """scripts/bench_config.py trains the given config (per-block keys from one number)
    with the searched models' recipe and cache, so a bench run that picks it reuses it;
    a config outside the space is one line of error."""
    import subprocess
    import sys

    import torch

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_config.py"
    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--init", "scratch", "--part", "train"]
    cfg = {"resolution": 28, "patch": 7, "dim": 32, "depth": 2, "heads": 2,
           "mlp_ratio": 1.5, "lowrank": 1}
    run = subprocess.run([sys.executable, str(script), "--config", json.dumps(cfg), "--",
                          *flags], capture_output=True, text=True, check=True)
    row = json.loads(run.stdout.strip().splitlines()[-1])
    assert row["config"]["heads"] == [2, 2] and row["config"]["mlp_ratio"] == [1.5, 1.5]
    assert row["arena"] > 0 and 0.0 <= row["val_acc"] <= 1.0
    (model,) = (out / "models").glob("*.pt")
    assert model.name.startswith("searched-scratch_p7_d32_L2_")
    a = bench_search.parse_args(flags)
    c = bench_search_stages.setup(a)
    ck = torch.load(model, weights_only=False)
    assert ck["recipe"] == bench_search_stages.recipe(c, "searched")
    assert ck["recipe"] == bench_search_stages.recipe(c, "baseline")
    bad = subprocess.run([sys.executable, str(script), "--config", json.dumps(
        {**cfg, "dim": 33}), "--", *flags], capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "mcuc: error: subnet config not in the search space: dim 33 not in "
        f"{list(c.space.dim)}"]


def test_a_bench_model_is_the_same_from_any_process(tmp_path: Path) -> None:
    """A model trained from scratch for the table depends on its recipe only (the seed
    included), not on what the process drew before: a rerun in another session, with the
    cache lost, trains the same weights; the next repeat's seed trains other ones."""
    import torch

    from mcuc.nas.space import SubnetConfig

    cfg = SubnetConfig(28, 7, 16, 1, (2,), (2.0,), (1.0,), 1, 10)
    weights = []
    for run, rep in ((0, 0), (1, 0), (2, 1)):
        c = bench_search_stages.setup(bench_search.parse_args(
            [*QUICK, "--out", str(tmp_path / f"out{run}"), "--distill-epochs", "0"]))
        torch.manual_seed(run)
        net, _ = bench_search_stages.trained(c, "baseline", cfg, rep)
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_a_cached_model_is_not_reused_under_another_teachers_labels(tmp_path: Path) -> None:
    c = bench_search_stages.setup(bench_search.parse_args([*QUICK, "--out", str(tmp_path)]))
    mine = bench_search_stages.recipe(c, "baseline")
    assert mine["teacher"] is not None
    c.teacher = {**c.teacher, "labels": (c.labels + 1) % 10}
    assert bench_search_stages.recipe(c, "baseline")["teacher"] != mine["teacher"]
    c.teacher = None
    assert bench_search_stages.recipe(c, "baseline")["teacher"] is None


def test_a_bench_training_cut_short_goes_on_from_its_last_epoch(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """A session that ends mid-training leaves the state of its last epoch; the next run
    goes on from there and trains the weights an uninterrupted run trains."""
    import torch

    from mcuc.models import train as train_mod
    from mcuc.nas.space import SubnetConfig

    cfg = SubnetConfig(28, 7, 16, 1, (2,), (2.0,), (1.0,), 1, 10)

    def ctx(name: str):
        return bench_search_stages.setup(bench_search.parse_args(
            [*QUICK, "--out", str(tmp_path / name), "--distill-epochs", "0",
             "--finetune-epochs", "2"]))

    def flat(net) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    straight = flat(bench_search_stages.trained(ctx("straight"), "baseline", cfg)[0])
    c = ctx("cut")
    keep = train_mod._keep

    def keep_then_die(*a, **k) -> None:
        keep(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_keep", keep_then_die)
    with pytest.raises(KeyboardInterrupt):
        bench_search_stages.trained(c, "baseline", cfg)
    part = bench_search_stages.partial_path(bench_search_stages.model_path(c, "baseline", cfg))
    assert part.is_file() and torch.load(part, weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train_mod, "_keep", keep)
    resumed = flat(bench_search_stages.trained(c, "baseline", cfg)[0])
    assert torch.equal(resumed, straight) and not part.exists()
