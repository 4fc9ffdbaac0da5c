"""bench_search's proxies: the shapes it trains briefly, the pick among them, and
--baseline best (the grid model with the best held-out proxy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

# the bench harness lives in scripts/, outside the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_search  # noqa: E402
import bench_search_report  # noqa: E402
import bench_search_stages  # noqa: E402
from test_bench_search import BEFORE, QUICK, _args, _cfg, _model, _refuse  # noqa: E402


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
