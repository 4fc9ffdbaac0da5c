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

import bench_boards  # noqa: E402
import bench_boards_report  # noqa: E402
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


def test_proxy_shapes_are_the_best_of_each_shape_that_fits() -> None:
    """One candidate per (patch, dim, depth), its best; only what fits; k best shapes;
    on equal inherited accuracy the budget's own search comes first."""
    from types import SimpleNamespace

    from bench_search_proxy import budget_shapes

    def found(*cands) -> dict:
        return {"candidates": [{"config": g.to_dict(), "accuracy": a} for g, a in cands]}

    a1, a4, b1, wide = _cfg(7, 32, heads=1), _cfg(7, 32, heads=4), _cfg(4, 48), _cfg(4, 96)
    founds = {16: found((a1, 0.70), (a4, 0.72), (b1, 0.71)),
              64: found((wide, 0.80), (b1, 0.71), (_cfg(7, 32, 2), 0.60))}
    fits_up_to = {16: 48, 64: 96}    # a fake cost model: dims that fit a budget
    models = {b: SimpleNamespace(cost=lambda g, m=m: SimpleNamespace(fits=g.dim <= m))
              for b, m in fits_up_to.items()}
    c = SimpleNamespace(a=argparse.Namespace(shared_finalists=True, proxy_shapes=5),
                        models=models)
    got = budget_shapes(c, 16, founds)
    assert [s.config for s in got] == [a4, b1, _cfg(7, 32, 2)]
    assert [s.found_at for s in got] == [16, 16, 64]
    assert [s.found_at for s in budget_shapes(c, 64, founds)][2] == 64   # the tie: own first
    c.a.proxy_shapes = 2
    assert [s.config for s in budget_shapes(c, 64, founds)] == [wide, a4]
    c.a.shared_finalists = False
    assert [s.config for s in budget_shapes(c, 64, founds)] == [wide, b1]


def test_proxy_pick_takes_the_best_held_out_proxy(monkeypatch) -> None:
    """The proxies' best on held-out images is the one finalist, whatever the inherited
    order; `only` trains one shape and picks nothing."""
    from types import SimpleNamespace

    import bench_search_proxy

    first, second = _cfg(7, 32), _cfg(7, 48)
    founds = {16: {"candidates": [{"config": first.to_dict(), "accuracy": 0.8},
                                  {"config": second.to_dict(), "accuracy": 0.7}]}}
    val = {first: 0.85, second: 0.87}
    calls = []

    def fake_trained(c, kind, cfg):
        calls.append((kind, cfg))
        return None, {"val_acc": val[cfg], "train_s": 1.0}

    monkeypatch.setattr(bench_search_stages, "trained", fake_trained)
    fits = SimpleNamespace(cost=lambda g: SimpleNamespace(fits=True))
    c = SimpleNamespace(a=argparse.Namespace(shared_finalists=False, proxy_shapes=4,
                                             proxy_epochs=3), models={16: fits})
    best, recs = bench_search_proxy.proxy_pick(c, 16, founds)
    assert best == second and [r["val_acc"] for r in recs] == [0.85, 0.87]
    assert calls == [("proxy", first), ("proxy", second)] and recs[0]["epochs"] == 3
    calls.clear()
    assert bench_search_proxy.proxy_pick(c, 16, founds, only=1)[0] is None
    assert calls == [("proxy", second)]


def test_proxy_plain_trains_each_shapes_plain_variant_after_it(monkeypatch) -> None:
    """--proxy-plain: each shape's plain variant (one MLP ratio and rank, the most MACs
    that fit) is trained right after the shape's candidate, scored with the supernet's
    inherited weights, and may be the pick."""
    from types import SimpleNamespace

    import bench_search_proxy
    from mcuc.nas.space import SubnetConfig, load_space

    mixed = SubnetConfig(28, 4, 64, 2, (2, 4), (1.0, 3.0), (0.5, 1.0), 1, 10)
    plain = SubnetConfig(28, 4, 64, 2, (2, 2), (3.0, 3.0), (1.0, 1.0), 1, 10)
    small = _cfg(7, 32, heads=1)    # MLP ratio 2: its plain variant is MLP 3, full rank
    founds = {32: {"candidates": [{"config": mixed.to_dict(), "accuracy": 0.8},
                                  {"config": small.to_dict(), "accuracy": 0.7}]}}
    # a fake cost model: MLP ratios up to 3 fit; MACs grow with MLP ratio and rank
    cost = lambda g: SimpleNamespace(fits=max(g.mlp_ratio) <= 3,   # noqa: E731
                                     macs=int(sum(g.mlp_ratio) * 100 + sum(g.lowrank) * 10))
    val = {mixed: 0.85, plain: 0.88}
    calls = []

    def fake_trained(c, kind, cfg):
        calls.append(cfg)
        return None, {"val_acc": val.get(cfg, 0.5), "train_s": 1.0}

    monkeypatch.setattr(bench_search_stages, "trained", fake_trained)
    monkeypatch.setattr(bench_search_proxy, "inherited", lambda c, g: 0.42)
    c = SimpleNamespace(a=argparse.Namespace(shared_finalists=False, proxy_shapes=4,
                                             proxy_epochs=3, proxy_plain=True),
                        models={32: SimpleNamespace(cost=cost)}, space=load_space())
    best, recs = bench_search_proxy.proxy_pick(c, 32, founds)
    small_plain = SubnetConfig(28, 7, 32, 1, (1,), (3.0,), (1.0,), 1, 10)
    assert calls == [mixed, plain, small, small_plain] and best == plain
    assert [r["plain"] for r in recs] == [False, True, False, True]
    assert [r["inherited_acc"] for r in recs] == [0.8, 0.42, 0.7, 0.42]
    c.a.proxy_plain = False
    calls.clear()
    assert bench_search_proxy.proxy_pick(c, 32, founds)[0] == mixed and calls == [mixed, small]


def test_proxy_models_are_trained_and_cached(tmp_path: Path, monkeypatch) -> None:
    """--proxy-epochs trains each proxy shape from scratch (cached apart from the full
    models), and a rerun reuses them all."""
    out = tmp_path / "out"
    flags = [*QUICK, "--out", str(out), "--proxy-epochs", "1", "--proxy-shapes", "2"]
    bench_search.main([*flags, "--part", "proxy", "--finalist", "0"])
    assert [p.name.split("_")[0] for p in (out / "models").glob("*.pt")] == ["proxy"]
    bench_search.main([*flags, "--part", "train"])
    names = [p.name.split("_")[0] for p in (out / "models").glob("*.pt")]
    assert names.count("proxy") == 2 and names.count("searched") == 1
    monkeypatch.setattr("mcuc.models.train.train", _refuse("train"))
    bench_search.main([*flags, "--part", "train"])


def test_report_lists_the_proxies_and_checks_their_order() -> None:
    """The proxies appear on the search line, are counted once in the compute (a shape
    two budgets share, and a baseline trained as a proxy too), and --proxy-check says
    whether the proxy ordered searched and baseline as their full training did."""
    rows = [{"budget_kb": b, "searched": {**_model(0.9), "first_budget": 16},
             "baseline": {**_model(base), "config": {**_model(0)["config"], "depth": 2},
                          "proxy": {"val_acc": proxy_base, "train_s": 5.0}}}
            for b, base, proxy_base in ((16, 0.89, 0.80), (32, 0.91, 0.80))]
    for r in rows:
        r["searched"]["proxies"] = [
            {"config": _model(0)["config"], "val_acc": 0.85, "inherited_acc": 0.7,
             "found_at": 16, "epochs": 3, "train_s": 2.0},
            {"config": {**_model(0)["config"], "dim": 32}, "val_acc": 0.84,
             "inherited_acc": 0.71, "found_at": 16, "epochs": 3, "train_s": 2.0},
            {"config": {**_model(0)["config"], "dim": 32, "mlp_ratio": [4.0]}, "plain": True,
             "val_acc": 0.83, "inherited_acc": 0.69, "found_at": 16, "epochs": 3,
             "train_s": 2.0}]
    a = _args(proxy_epochs=3, proxy_shapes=2, proxy_check=True, proxy_plain=True)
    text = bench_search.report(a, rows, 60.0, 8)
    assert "--proxy-epochs 3 --proxy-shapes 2 --proxy-plain --proxy-check" in text
    assert "proxy ranking (3 epochs from scratch" in text
    assert "p7 d64 L1 85.00% (70.00%), p7 d32 L1 84.00% (71.00%), " \
           "p7 d32 L1 h2 mlp4 r1 (plain) 83.00% (69.00%)" in text
    assert "(the 16 KB search's)" in text   # on the 32 KB line
    assert "- 16 KB: proxy 85.00% searched vs 80.00% baseline; full training 90.00% vs " \
           "89.00%: the same order" in text
    assert "- 32 KB: proxy 85.00% searched vs 80.00% baseline; full training 90.00% vs " \
           "91.00%: the order reversed" in text
    # searched 1 + baseline 1 (one config for both budgets) + three proxies + baseline proxy
    assert bench_search_report.compute_seconds(rows, 0.0, None)["train"] == 1 + 1 + 6 + 5


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


def test_baseline_best_is_the_grid_model_with_the_best_held_out_proxy(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """--baseline best trains every grid model that fits as a proxy and takes the best on
    held-out images (the first in grid order on a tie); --baseline rule stays the one
    with the most MACs; --part grid trains one grid proxy; the report lists the ranking."""
    c = bench_search_stages.setup(bench_search.parse_args(
        [*QUICK, "--out", str(tmp_path), "--budgets", "16", "--proxy-epochs", "1",
         "--baseline", "best", "--distill-epochs", "0"]))
    fits = bench_search.grid_fits(c, [16])
    assert fits and all(c.models[16].cost(g).fits for g in fits)
    assert fits == [g for g in bench_search.uniform_grid(c.space) if g in fits]
    score = {g: 0.5 for g in fits}
    score[fits[2]] = score[fits[4]] = 0.9
    calls = []

    def fake(c, kind, cfg, rep=0):
        calls.append((kind, cfg))
        return None, {"val_acc": score[cfg]}

    monkeypatch.setattr(bench_search, "trained", fake)
    cfg, recs = bench_search.pick_baseline(c, 16)
    assert cfg == fits[2] and len(recs) == len(fits)
    assert {k for k, _ in calls} == {"proxy"}
    c.a.baseline = "rule"
    assert bench_search.pick_baseline(c, 16) == (
        bench_search.baseline_config(c.space, c.models[16]), None)
    calls.clear()
    c.a.baseline, c.a.part, c.a.finalist = "best", "grid", 1
    monkeypatch.setattr(bench_search, "setup", lambda a: c)
    assert bench_search.run(c.a) is None and calls == [("proxy", fits[1])]
    row = {"budget_kb": 16, "baseline": {"config": fits[2].to_dict(), "grid": [
        {"config": g.to_dict(), "val_acc": score[g]} for g in fits]}}
    line = bench_search_report._grid_line(row)
    assert line.startswith(f"- 16 KB: **{bench_search_report._shape_text(fits[2].to_dict())}"
                           " 90.00%**, ")
    assert line.count("**") == 2


@pytest.mark.parametrize("args, needle", [
    (["--baseline", "best"], "--baseline best needs --proxy-epochs"),
    (["--part", "grid", "--proxy-epochs", "1"], "--part grid goes with --baseline best"),
])
def test_baseline_best_usage_errors(args: list[str], needle: str, capsys) -> None:
    with pytest.raises(SystemExit):
        bench_search.parse_args([*BEFORE, *args])
    assert needle in capsys.readouterr().err


# --------------------------------------------------------------- board rows (bench_boards)


@pytest.mark.parametrize("row, needle", [
    ("stm32f746:320:1024", "BOARD:SRAM_KB:FLASH_KB:MS"),
    ("stm32f746:321:1024:100", "a row's limits must be within them"),
    ("stm32f427:64:2048:100", "a row's limits must be within them"),
    ("qemu-m7:64:256:100", "a board with a clock"),
    ("nosuchboard:64:256:100", "nosuchboard"),
])
def test_board_rows_are_checked_against_the_board(row: str, needle: str, capsys) -> None:
    with pytest.raises(SystemExit):
        bench_boards.parse_args(["--rows", row])
    assert needle in capsys.readouterr().err


def test_board_rows_default_to_the_issues_five() -> None:
    a = bench_boards.parse_args([])
    assert [(r.board, r.sram // 1024, r.flash // 1024, r.ms) for r in a.rows] == [
        ("stm32f746", 320, 1024, 100.0), ("stm32f427", 192, 1024, 100.0),
        ("stm32h743", 512, 2048, 100.0), ("stm32f746", 320, 1024, 50.0),
        ("stm32f746", 320, 1024, 200.0)]
    # the time budget at each board's own clock (1 cycle per instruction)
    assert [r.instructions() for r in a.rows[:3]] == [21_600_000, 18_000_000, 48_000_000]
    assert bench_boards.parse_args(["--rows", "stm32f746:64:256:-"]).rows[0].instructions() \
        is None


def test_a_model_over_a_rows_limits_is_reported_so() -> None:
    lim = {"sram": 64 * 1024, "flash": 256 * 1024, "instructions": 1000}
    fits = {"ram": 64 * 1024, "flash": 256 * 1024, "instructions": 1000}
    assert bench_boards_report.over(lim, fits) == []
    assert bench_boards_report.over(lim, {**fits, "instructions": 1001}) == ["time"]
    assert bench_boards_report.over(lim, {**fits, "ram": 64 * 1024 + 1}) == ["RAM"]
    assert bench_boards_report.over({**lim, "instructions": None},
                                    {**fits, "instructions": 10 ** 9}) == []


def test_board_rows_end_to_end_meet_their_limits(tmp_path: Path) -> None:
    """One row on the F427 at toy scale: searched and baseline meet the row's RAM, flash
    and time (emulator count within the budget), the build's latency prediction agrees
    with the emulator's count within 3%, and the search predicted the same schedule."""
    space = tmp_path / "space.toml"
    space.write_text("resolution = [28]\npatch = [7]\ndim = [16, 32]\ndepth = [1, 2]\n"
                     "heads = [2]\nmlp_ratio = [1.0, 2.0]\nlowrank_ratio = [1.0]\n")
    out = tmp_path / "out"
    bench_boards.main(["--rows", "stm32f427:48:256:3", "--limit", "600", "--test-limit", "20",
                       "--fw-images", "2", "--supernet-epochs", "1", "--finetune-epochs", "1",
                       "--distill-epochs", "0", "--proxy-epochs", "0", "--population", "3",
                       "--generations", "1", "--pool", "4", "--space", str(space),
                       "--grid-dims", "16", "32", "--out", str(out), "--bench-dir", str(out)])
    [row] = json.loads((out / "bench_boards.json").read_text())
    lim = row["limits"]
    assert (lim["board"], lim["instructions"]) == ("stm32f427", 540_000)   # 3 ms at 180 MHz
    for m in (row["searched"], row["baseline"]):
        assert m["ram"] <= lim["sram"] and m["flash"] <= lim["flash"]
        assert m["search_cost"]["fits"] and m["search_cost"]["instructions"] <= 540_000
        assert abs(m["predicted_instructions"] - m["instructions"]) < 0.03 * m["instructions"]
        assert m["instructions"] <= 540_000 and bench_boards_report.over(lim, m) == []
        assert m["fw_bit_exact"] == m["fw_images"] == 2 and m["test_images"] == 20
    text = (out / "search_boards.md").read_text()
    assert text.count("| stm32f427 | 48 KB / 256 KB / 3 ms (540,000 instr.) |") == 2
    assert "--rows stm32f427:48:256:3 " in text and text.count("| yes |") == 2
