"""scripts/bench_cpu.py: the bench's parts in dependency order, a few processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))   # the bench harness lives in scripts/, outside the package
SCRIPT = SCRIPTS / "bench_cpu.py"

import bench_cpu  # noqa: E402
from bench_search import parse_args  # noqa: E402
from mcuc import McucError  # noqa: E402
from mcuc.nas.space import SubnetConfig  # noqa: E402

# the defaults these tests were written against (the bench now takes mcuc search's recipe)
BEFORE = ["--recipe", str(Path(__file__).resolve().parent / "recipes" / "bench_before.toml")]
TABLE = [*BEFORE, "--budgets", "16", "32", "64", "128", "--proxy-epochs", "8",
         "--proxy-shapes", "6",
         "--proxy-plain", "--proxy-check", "--repeats", "2", "--init", "scratch",
         "--shared-finalists"]


def _cfg(dim: int) -> SubnetConfig:
    return SubnetConfig(28, 4, dim, 1, (2,), (2.0,), (1.0,), 1, 10)


def test_plan_orders_the_parts_and_shares_baselines() -> None:
    jobs = bench_cpu.plan(parse_args(TABLE), [[16], [32, 64, 128]], 0, 2).jobs
    names = [j.name for j in jobs]
    by = {j.name: j for j in jobs}
    assert names[0] == "supernet" and names[-1] == "all"
    assert len(set(names)) == len(names)
    for j in jobs:   # every job waits for jobs of the plan only, listed before it
        assert all(names.index(d) < names.index(j.name) for d in j.after)
    assert by["search16"].after == ("supernet",)
    assert len([n for n in names if n.startswith("proxy")]) == 12   # 6 shapes + plain
    assert set(by["proxy0"].after) == {"search16", "search32", "search64", "search128"}
    # budgets that share a baseline train it once per repeat, beside the critical path
    assert [n for n in names if n.startswith("baseline")] == [
        "baseline16_r0", "baseline32_r0", "baseline16_r1", "baseline32_r1"]
    assert by["baseline32_r1"].args[-4:] == ["--only", "32", "64", "128"]
    assert by["baseline16_r0"].after == ()
    assert set(by["train_r1"].after) == {f"proxy{i}" for i in range(12)} | {
        "baseline16_r1", "baseline32_r1"}
    assert by["train_r1"].args == ["--part", "train", "--repeat", "1"]
    assert set(by["all"].after) == {"train_r0", "train_r1"} and by["all"].threads == 2
    assert all(j.threads == 1 for j in jobs[:-1])
    # without proxies the picks wait for the searches
    plain = bench_cpu.plan(parse_args([*BEFORE, "--budgets", "16"]), [], 0, 1).jobs
    assert [j.name for j in plain] == ["supernet", "search16", "train_r0", "all"]
    assert plain[2].after == ("search16",)
    # --baseline best: the grid's proxies fill free slots, the baselines wait for them all
    best = bench_cpu.plan(parse_args([*TABLE, "--baseline", "best"]), [[16], [32]], 3, 2).jobs
    by = {j.name: j for j in best}
    assert [j.name for j in best if j.name.startswith("grid")] == ["grid0", "grid1", "grid2"]
    assert by["grid2"].args == ["--part", "grid", "--finalist", "2"] and by["grid2"].after == ()
    assert by["baseline32_r1"].after == ("grid0", "grid1", "grid2")


def test_budgets_that_pick_from_the_grid_share_one_baseline_job() -> None:
    """--baseline best's pick is known only after the grid is trained: one job a seed
    for every budget, or two processes could train the same grid model at once; the
    rule's baselines are known, so budgets share a job only when they share the model."""
    from types import SimpleNamespace

    from bench_search import uniform_grid
    from mcuc.nas.space import load_space

    space = load_space(None)
    grid = uniform_grid(space)

    class Budget:   # fits the grid models of at most `dim` width
        def __init__(self, dim: int) -> None:
            self.dim = dim

        def cost(self, g):
            return SimpleNamespace(fits=g.dim <= self.dim, macs=g.dim * g.depth)

    def ctx(baseline: str, dims: dict[int, int]):
        return SimpleNamespace(a=SimpleNamespace(baseline=baseline, budgets=list(dims)),
                               space=space, models={b: Budget(d) for b, d in dims.items()})

    dims = {16: 0, 32: 48, 64: 64, 128: 64}   # 16 KB fits nothing
    assert bench_cpu.baseline_groups(ctx("best", dims)) == (
        [[32, 64, 128]], len([g for g in grid if g.dim <= 64]))
    assert bench_cpu.baseline_groups(ctx("rule", dims)) == ([[32], [64, 128]], 0)
    assert bench_cpu.baseline_groups(ctx("best", {16: 0})) == ([], 0)


class _Proc:
    """A process that ends with `rc` after `polls` polls."""

    def __init__(self, log: list, name: str, polls: int, rc: int) -> None:
        self.log, self.name, self.polls, self.rc = log, name, polls, rc

    def poll(self) -> int | None:
        self.polls -= 1
        if self.polls > 0:
            return None
        self.log.append(("end", self.name))
        return self.rc


def test_schedule_keeps_to_the_slots_and_the_order() -> None:
    J = bench_cpu.Job
    jobs = [J("a", []), J("b", [], ("a",)), J("c", [], ("a",)), J("filler", []),
            J("d", [], ("b", "c"))]
    log: list = []
    polls = {"a": 3, "b": 1, "c": 2, "filler": 5, "d": 1}

    def launch(j):
        running = sum(1 for e, _ in log if e == "start") - sum(1 for e, _ in log if e == "end")
        assert running < 2   # never more than the slots
        log.append(("start", j.name))
        return _Proc(log, j.name, polls[j.name], 0)

    assert bench_cpu.schedule(jobs, 2, launch, poll_s=0) == ["a", "b", "c", "filler", "d"]
    starts = [n for e, n in log if e == "start"]
    assert starts[:2] == ["a", "filler"]   # b and c wait for a; the filler takes the slot
    for later, first in (("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")):
        assert log.index(("start", later)) > log.index(("end", first))


def test_schedule_stops_starting_after_a_failure() -> None:
    J = bench_cpu.Job
    log: list = []

    def launch(j):
        log.append(("start", j.name))
        return _Proc(log, j.name, 1, 3 if j.name == "a" else 0)

    with pytest.raises(McucError, match=r"failed: a \(exit 3\)"):
        bench_cpu.schedule([J("a", []), J("b", [], ("a",)), J("c", [])], 1, launch, poll_s=0)
    assert ("start", "b") not in log and ("start", "c") not in log


def test_bench_cpu_runs_the_bench_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    """End to end on a few hundred images: the report is written; run again, every part
    finds its results cached (the logs say no epoch was trained the second time)."""
    out, bench = tmp_path / "out", tmp_path / "bench"
    flags = [*BEFORE, "--limit", "600", "--test-limit", "50", "--budgets", "64",
             "--supernet-epochs",
             "1", "--finetune-epochs", "1", "--distill-epochs", "1", "--distill-supernet",
             "--population", "3", "--generations", "1", "--pool", "4", "--init", "scratch",
             "--proxy-epochs", "1", "--proxy-shapes", "1", "--proxy-plain", "--repeats", "2",
             "--fw-images", "2", "--out", str(out), "--bench-dir", str(bench)]
    cmd = [sys.executable, str(SCRIPT), "--jobs", "2", "--", *flags]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "| searched |" in (bench / "search.md").read_text()
    rows = json.loads((out / "bench.json").read_text())
    assert len(rows[0]["searched"]["repeats"]) == 1 and len(rows[0]["baseline"]["repeats"]) == 1
    logs = list((out / "logs").glob("*.log"))
    assert any("epoch 1/" in p.read_text() for p in logs)   # what the rerun must not show
    for log in logs:
        log.write_text("")
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    trained = [p.name for p in (out / "logs").glob("*.log") if "epoch 1/" in p.read_text()]
    assert trained == []
    bad = subprocess.run([sys.executable, str(SCRIPT), "--", *flags, "--part", "train"],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.strip() == "mcuc: error: bench_cpu.py sets --part itself"
