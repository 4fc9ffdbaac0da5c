"""bench_search's own logic (the long run itself is `make bench-search`, not CI)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

# the bench harness lives in scripts/, outside the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_search  # noqa: E402
import bench_search_report  # noqa: E402
import bench_search_stages  # noqa: E402
from mcuc.datasets import load_fashion_mnist  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    base = dict(distill_epochs=1, seed=0, epochs=2, finetune_epochs=1, finetune_init="inherited",
                finetune_lr=1e-3, population=4, generations=2, pool=8, sampling="macs",
                augment=False, limit=None, test_limit=None)
    return argparse.Namespace(**{**base, **kw})


def test_teacher_labels_are_trained_once_and_reused(tmp_path: Path, monkeypatch) -> None:
    x, y = load_fashion_mnist("train", limit=300)
    first = bench_search_stages.distill_labels(_args(), tmp_path, x, y, x[:50], y[:50])
    assert first is not None and first["labels"].shape == (300,)
    assert (tmp_path / "teacher.npz").is_file()

    def no_training(*a, **k):
        raise AssertionError("the cached teacher should have been reused")

    monkeypatch.setattr("mcuc.models.teacher.train_teacher", no_training)
    again = bench_search_stages.distill_labels(_args(), tmp_path, x, y, x[:50], y[:50])
    assert np.array_equal(again["labels"], first["labels"])
    with pytest.raises(AssertionError, match="reused"):   # other epochs: trained anew
        bench_search_stages.distill_labels(_args(distill_epochs=2), tmp_path, x, y, x[:50], y[:50])
    assert bench_search_stages.distill_labels(_args(distill_epochs=0), tmp_path, x, y, x, y) is None


def _model(acc: float) -> dict:
    cfg = {"resolution": 28, "patch": 7, "dim": 64, "depth": 1, "heads": [2],
           "mlp_ratio": [2.0], "lowrank": [1.0]}
    return {"config": cfg, "params": 1, "macs": 1, "arena": 1, "ram": 1, "flash": 1,
            "float_acc": acc, "int8_acc": acc, "fw_acc": acc, "fw_bit_exact": 10,
            "fw_images": 10, "test_images": 100, "candidates": 8, "search_s": 1.0,
            "inherited_acc": acc, "val_acc": acc, "train_s": 1.0, "measure_s": 2.0,
            "first_budget": 16}


def test_report_counts_wins_and_the_goal() -> None:
    rows = [{"budget_kb": b, "searched": {**_model(s), "first_budget": b},
             "baseline": _model(base)}
            for b, s, base in ((16, 0.88, 0.89), (64, 0.91, 0.90))]
    text = bench_search.report(_args(), rows, 60.0, 8, {"seconds": 30.0, "test_acc": 0.92})
    assert "ahead of the baseline (int8 test accuracy) at 1 of 2 budgets" in text
    assert "91.00% int8 at 64 KB (meets the 90% goal)" in text
    assert "--distill-epochs 1" in text and "92.00% test" in text
    # each model's training and measuring counted once: the 64 KB baseline is the 16 KB one
    rows[1]["searched"]["config"] = {**rows[1]["searched"]["config"], "depth": 2}
    cost = bench_search_report.compute_seconds(rows, 60.0, {"seconds": 30.0})
    assert (cost["search"], cost["train"], cost["measure"]) == (2.0, 3.0, 6.0)
    assert cost["total"] == 60 + 30 + 2 + 3 + 6
    # shared finalists: the 64 KB row weighs the 16 KB model too; trained once, counted once
    rows[1]["searched"]["finalists"] = [
        {"config": rows[0]["searched"]["config"], "train_s": 1.0, "val_acc": 0.5,
         "found_at": 16},
        {"config": rows[1]["searched"]["config"], "train_s": 1.0, "val_acc": 0.9}]
    assert bench_search_report.compute_seconds(rows, 60.0, None)["train"] == 3.0
    assert "p7 d64 L1 50.00% (the 16 KB search's)" in bench_search.report(_args(), rows, 60.0, 8)
    rows[1]["searched"]["int8_acc"] = 0.895
    assert "(misses the 90% goal)" in bench_search.report(_args(), rows, 60.0, 8)


# the defaults these tests were written against (the bench now takes mcuc search's recipe)
BEFORE = ["--recipe", str(Path(__file__).resolve().parent / "recipes" / "bench_before.toml")]
QUICK = ["--limit", "600", "--test-limit", "50", "--budgets", "64", "--supernet-epochs", "1",
         "--finetune-epochs", "1", "--distill-epochs", "1", "--distill-supernet",
         "--population", "3", "--generations", "1", "--pool", "4", "--finalists", "2",
         *BEFORE]


def _refuse(name: str):
    def refuse(*a, **k):
        raise AssertionError(f"{name} ran: the cached result should have been reused")
    return refuse


def test_parts_are_cached_and_reused(tmp_path: Path, monkeypatch) -> None:
    """--part train caches supernet, search and every trained model; a second run with
    the same flags trains nothing (each stage refuses to run here), and another recipe
    (more fine-tune epochs) trains the models anew."""
    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--bench-dir", str(tmp_path / "bench")]
    bench_search.main([*flags, "--part", "train"])
    assert (out / "supernet.pt").is_file() and (out / "sram64k" / "search.json").is_file()
    trained = sorted(p.name for p in (out / "models").glob("*.pt"))
    assert any(n.startswith("baseline_") for n in trained)
    assert any(n.startswith("searched_") for n in trained)
    monkeypatch.setattr("mcuc.nas.train.train_supernet", _refuse("train_supernet"))
    monkeypatch.setattr("mcuc.nas.search.run_search", _refuse("run_search"))
    monkeypatch.setattr("mcuc.models.train.train", _refuse("train"))
    bench_search.main([*flags, "--part", "train"])
    with pytest.raises(AssertionError, match="train ran"):
        bench_search.main([*flags, "--part", "train", "--finetune-epochs", "2"])
    with pytest.raises(AssertionError, match="train ran"):   # retrained: a model of its own
        bench_search.main([*flags, "--part", "train", "--init", "scratch"])

    # A compiler that allocates differently makes the cached searches stale.
    import dataclasses

    from mcuc.nas.cost import CostModel

    cost = CostModel.cost
    monkeypatch.setattr(CostModel, "cost", lambda self, cfg: dataclasses.replace(
        cost(self, cfg), arena_bytes=cost(self, cfg).arena_bytes + 8))
    with pytest.raises(AssertionError, match="run_search ran"):
        bench_search.main([*flags, "--part", "train"])
    # ... and, when fewer configs fit, the supernet's pool: it is trained anew.
    monkeypatch.setattr(CostModel, "cost", lambda self, cfg: dataclasses.replace(
        cost(self, cfg), fits=cost(self, cfg).fits and cfg.dim <= 48))

    def train_supernet(*a, resume: bool, **k):
        raise AssertionError(f"train_supernet ran, resume={resume}")

    monkeypatch.setattr("mcuc.nas.train.train_supernet", train_supernet)
    with pytest.raises(AssertionError, match="train_supernet ran, resume=False"):
        bench_search.main([*flags, "--part", "train"])


def test_cached_search_needs_the_same_options(tmp_path: Path) -> None:
    """A search.json is reused when it ran with the same options (how it ran -- device,
    progress bars -- aside; an option newer than the file counts at its default)."""
    from mcuc.nas.search import SearchOptions

    work = tmp_path / "sram64k"
    work.mkdir()
    opts = SearchOptions(sram=65536, population=5, device="cuda")
    saved = {k: v for k, v in vars(opts).items() if k not in ("extra", "distill_supernet")}
    (work / "search.json").write_text(json.dumps({"meta": {"options": saved}}))
    assert bench_search_stages._cached_search(work, SearchOptions(sram=65536, population=5))
    assert bench_search_stages._cached_search(work, SearchOptions(sram=65536, population=6)) is None
    assert bench_search_stages._cached_search(
        work, SearchOptions(sram=65536, population=5, distill_supernet=True)) is None


@pytest.mark.parametrize("args, needle", [
    (["--finalist", "0"], "--finalist goes with --part finetune"),
    (["--part", "proxy"], "--part proxy needs --proxy-epochs"),
    (["--proxy-shapes", "0"], "--proxy-shapes >= 1"),
    (["--proxy-plain"], "--proxy-plain needs --proxy-epochs"),
    (["--only", "48"], "must be among --budgets"),
    (["--repeat", "1"], "--repeat in 0..repeats-1"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--repeats", "2", "--repeat", "1"], "--repeat goes with a part other than all"),
])
def test_bench_usage_errors(args: list[str], needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        bench_search.main([*BEFORE, *args])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_shared_finalists_pool_what_fits(tmp_path: Path) -> None:
    """With --shared-finalists a budget weighs its own finalists first, then the other
    budgets' finalists that fit it (and only those); without it, only its own."""
    from types import SimpleNamespace

    from mcuc.nas.space import SubnetConfig

    def cfg(patch: int, dim: int) -> SubnetConfig:
        return SubnetConfig(28, patch, dim, 1, (2,), (2.0,), (1.0,), 1, 10)

    def found(*cfgs: SubnetConfig) -> dict:
        return {"candidates": [{"config": g.to_dict(), "accuracy": 0.5,
                                "cost": {"ram_bytes": 0, "macs": 0}} for g in cfgs]}

    small, wide, wide7 = cfg(7, 32), cfg(4, 96), cfg(4, 48)
    founds = {16: found(small), 32: found(wide7), 64: found(wide)}
    fits_up_to = {16: 32, 32: 48, 64: 96}    # a fake cost model: dims that fit a budget
    models = {b: SimpleNamespace(cost=lambda g, m=m: SimpleNamespace(fits=g.dim <= m))
              for b, m in fits_up_to.items()}
    c = SimpleNamespace(a=argparse.Namespace(finalists=2, shared_finalists=True), models=models)
    founds = {b: bench_search_stages.finalists(c, f) for b, f in founds.items()}
    assert bench_search.candidates(c, 16, founds) == [small]
    assert bench_search.candidates(c, 32, founds) == [wide7, small]
    assert bench_search.candidates(c, 64, founds) == [wide, small, wide7]
    c.a.shared_finalists = False
    assert bench_search.candidates(c, 32, founds) == [wide7]


def _cfg(patch: int, dim: int, depth: int = 1, heads: int = 2):
    from mcuc.nas.space import SubnetConfig

    return SubnetConfig(28, patch, dim, depth, (heads,) * depth, (2.0,) * depth,
                        (1.0,) * depth, 1, 10)


def test_repeats_train_each_table_model_with_other_seeds(tmp_path: Path, monkeypatch) -> None:
    """--repeats 2 trains every table model twice (training seeds 0 and 1, cached apart);
    --repeat 1 alone finds them all cached."""
    import torch

    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--finalists", "1", "--repeats", "2"]
    bench_search.main([*flags, "--part", "train"])
    models = out / "models"
    for kind in ("baseline", "searched"):
        names = sorted(models.glob(f"{kind}_*.pt"))
        first = [p for p in names if not p.stem.endswith("_r1")]
        again = [p for p in names if p.stem.endswith("_r1")]
        assert len(first) == len(again) == 1
        a, b = (torch.load(p, weights_only=False) for p in (first[0], again[0]))
        assert (a["recipe"]["seed"], b["recipe"]["seed"]) == (0, 1)
        assert a["config"] == b["config"]
        assert {k: v for k, v in a["recipe"].items() if k != "seed"} == \
               {k: v for k, v in b["recipe"].items() if k != "seed"}
        assert not all(torch.equal(a["state_dict"][k], b["state_dict"][k])
                       for k in a["state_dict"])
    monkeypatch.setattr("mcuc.models.train.train", _refuse("train"))
    bench_search.main([*flags, "--part", "train", "--repeat", "1"])


def test_repeat_alone_trains_that_seed_only(tmp_path: Path) -> None:
    """--repeat 1 trains seed 1 of each table model and not seed 0 (which a process
    beside it may be training)."""
    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--finalists", "1", "--repeats", "2"]
    bench_search.main([*flags, "--part", "train", "--repeat", "1"])
    names = sorted(p.stem for p in (out / "models").glob("*.pt"))
    assert {n.split("_")[0] for n in names} == {"baseline", "searched"}
    assert all(n.endswith("_r1") for n in names), names


def test_report_averages_the_repeats() -> None:
    """With --repeats the table gives each model's mean and every seed's accuracy, and
    "ahead" compares the means: one lucky seed does not win a budget."""
    rows = [{"budget_kb": 64,
             "searched": {**_model(0.90), "first_budget": 64, "repeats": [_model(0.88)]},
             "baseline": {**_model(0.895), "config": {**_model(0)["config"], "depth": 2},
                          "first_budget": 64,
                          "repeats": [_model(0.895)]}}]
    text = bench_search.report(_args(repeats=2), rows, 60.0, 8)
    assert "| 89.00% (90.00 / 88.00) |" in text and "| 89.50% (89.50 / 89.50) |" in text
    assert "(20/20 bit-exact)" in text and "--repeats 2" in text
    assert "ahead of the baseline (mean int8 test accuracy) at 0 of 1 budgets" in text
    assert "89.00% int8 at 64 KB (misses the 90% goal)" in text
    assert "training seeds 0-1" in text
    # each repeat is a training run and a measurement of its own
    cost = bench_search_report.compute_seconds(rows, 0.0, None)
    assert (cost["train"], cost["measure"]) == (4.0, 4 * 2.0)


def test_measurements_are_redone_when_the_memory_plan_changes(tmp_path: Path,
                                                               monkeypatch) -> None:
    """A cached measurement (accuracies plus the build's RAM) is reused only while the
    compiler still predicts the same arena for the model."""
    from types import SimpleNamespace

    arena = {"bytes": 1000}
    cost = SimpleNamespace(cost=lambda cfg: SimpleNamespace(arena_bytes=arena["bytes"]),
                           board=SimpleNamespace(name="stm32f746"))
    c = SimpleNamespace(a=_args(finetune_init="scratch", fw_images=0, budgets=(64,),
                                proxy_epochs=None),
                        out=tmp_path, models={64: cost}, x=np.zeros((64, 1, 28, 28)),
                        tr=np.arange(64), x_test=np.zeros((2, 1, 28, 28)), y_test=np.zeros(2),
                        labels=None)
    (tmp_path / "models").mkdir()
    runs = []
    monkeypatch.setattr(bench_search_stages, "trained", lambda *a, **k: (None, {}))
    monkeypatch.setattr(bench_search_stages, "measure",
                        lambda *a, **k: runs.append(1) or {"arena": arena["bytes"]})
    cfg = _cfg(4, 32)
    assert bench_search_stages.measured(c, "baseline", cfg)["arena"] == 1000
    assert bench_search_stages.measured(c, "baseline", cfg)["arena"] == 1000
    assert len(runs) == 1
    arena["bytes"] = 800
    assert bench_search_stages.measured(c, "baseline", cfg)["arena"] == 800
    assert len(runs) == 2


def test_search_part_trains_no_model(tmp_path: Path, monkeypatch) -> None:
    """--part search runs the searches only, also with --proxy-epochs (the proxies are
    --part proxy's): processes searching budgets side by side train nothing twice."""
    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--finalists", "1", "--proxy-epochs", "1"]
    bench_search.main([*flags, "--part", "supernet"])
    monkeypatch.setattr("mcuc.models.train.train", _refuse("train"))
    bench_search.main([*flags, "--part", "search"])
    assert (out / "sram64k" / "search.json").is_file()
    assert not (out / "models").exists() or not list((out / "models").glob("*.pt"))


def test_a_space_at_another_resolution_is_trained_and_measured(tmp_path: Path) -> None:
    """--space with resolution 32 only: the searched model is trained and measured
    (int8 reference and firmware) on resized images, the baseline grid stays at 28."""
    space = tmp_path / "space.toml"
    space.write_text("resolution = [32]\npatch = [8]\ndim = [16]\ndepth = [1]\nheads = [1, 2]\n"
                     "mlp_ratio = [1.0]\nlowrank_ratio = [1.0]\n")
    out, bench = tmp_path / "out", tmp_path / "bench"
    bench_search.main([*QUICK, "--finalists", "1", "--fw-images", "2", "--space", str(space),
                       "--out", str(out), "--bench-dir", str(bench)])
    rows = json.loads((out / "bench.json").read_text())
    searched, base = rows[0]["searched"], rows[0]["baseline"]
    assert searched["config"]["resolution"] == 32 and searched["config"]["patch"] == 8
    assert base["config"]["resolution"] == 28
    for row in (searched, base):   # every test image went through the int8 reference
        assert 0.0 <= row["int8_acc"] <= 1.0 and row["fw_bit_exact"] == row["fw_images"] == 2
        assert row["test_images"] == 50
    text = (bench / "search.md").read_text()
    assert f"--space {space}" in text and "| searched | 32px p8 d16 L1 " in text
