#!/usr/bin/env python3
"""Run `make bench-search` on a small CPU machine as one-thread processes side by side.

The bench is hours of training on this project's 2-core machine, more than one session
gives. Its parts cache everything under OUT (a model mid-training keeps its last epoch),
so this runner starts them in the order they depend on each other, two at a time, and
a rerun of the same command after an interruption goes on where the last one stopped.
One thread per process keeps every part repeatable (a result does not depend on which
process ran it or how busy the machine was).

Order: the teacher (first, alone: every part needs its labels); the supernet, then the
searches, then the proxies (`--proxy-epochs`), then each repeat's picks (`--part train
--repeat I`), then measuring and the report (`--part all`). The baselines need neither
supernet nor search, so they fill whichever slot the critical path leaves free (with
`--baseline best`, after the grid's proxies, which fill it first).

Usage: .venv/bin/python scripts/bench_cpu.py [--jobs N] -- BENCH FLAGS (with --out)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import bench_search_stages
from bench_search import baseline_config, grid_fits, parse_args
from mcuc import McucError

# each part runs as its own process of the bench, the module beside this script
BENCH_SEARCH = Path(__file__).resolve().with_name("bench_search.py")


@dataclass
class Job:
    name: str
    args: list[str]
    after: tuple[str, ...] = ()
    threads: int = 1


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)

    def add(self, name: str, args: list[str], after: tuple[str, ...] = (), threads: int = 1
            ) -> None:
        self.jobs.append(Job(name, args, after, threads))

    def names(self, prefix: str) -> tuple[str, ...]:
        return tuple(j.name for j in self.jobs if j.name.startswith(prefix))


def plan(a: argparse.Namespace, groups: list[list[int]], grid: int, jobs: int) -> Plan:
    """The bench's parts as jobs, in priority order (a free slot takes the first ready
    one). `groups`: budgets that share a baseline (trained in one job); `grid`: how many
    grid models --baseline best trains as proxies before the baselines."""
    p = Plan()
    p.add("supernet", ["--part", "supernet"])
    for b in a.budgets:
        p.add(f"search{b}", ["--part", "search", "--only", str(b)], ("supernet",))
    searches = p.names("search")
    if a.proxy_epochs:
        trainees = a.proxy_shapes * (2 if a.proxy_plain else 1)
        for i in range(trainees):
            p.add(f"proxy{i}", ["--part", "proxy", "--finalist", str(i)], searches)
    for i in range(grid):
        p.add(f"grid{i}", ["--part", "grid", "--finalist", str(i)])
    for r in range(a.repeats):
        for budgets in groups:
            p.add(f"baseline{budgets[0]}_r{r}", ["--part", "baselines", "--repeat", str(r),
                                                  "--only", *map(str, budgets)], p.names("grid"))
    picks = p.names("proxy") or searches
    for r in range(a.repeats):
        p.add(f"train_r{r}", ["--part", "train", "--repeat", str(r)],
              picks + tuple(j.name for j in p.jobs if j.name.endswith(f"_r{r}")
                            and j.name.startswith("baseline")))
    p.add("all", ["--part", "all"], p.names("train"), threads=jobs)
    return p


def schedule(jobs: list[Job], slots: int, launch: Callable[[Job], subprocess.Popen],
             poll_s: float = 5.0) -> list[str]:
    """Start each job once all it waits for have ended well, at most `slots` at a time,
    the first ready job first; the names that ended well. A failed job stops new starts
    (running ones finish) and raises."""
    done: set[str] = set()
    running: dict[str, subprocess.Popen] = {}
    waiting = list(jobs)
    failed: list[str] = []
    while waiting or running:
        for name, proc in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[name]
            (done.add(name) if rc == 0 else failed.append(f"{name} (exit {rc})"))
        if failed:
            waiting.clear()
        while waiting and len(running) < slots:
            ready = next((j for j in waiting if set(j.after) <= done), None)
            if ready is None:
                break
            waiting.remove(ready)
            running[ready.name] = launch(ready)
        if not waiting and not running:
            break
        if waiting and not running:
            raise McucError("jobs wait for jobs that never run: "
                            + ", ".join(j.name for j in waiting))
        time.sleep(poll_s)
    if failed:
        raise McucError("failed: " + ", ".join(failed))
    return [j.name for j in jobs if j.name in done]


def baseline_groups(c) -> tuple[list[list[int]], int]:
    """(budgets grouped by the baseline they share, grid proxies to train first). The
    rule's baseline is known now, so budgets that share one share a job. --baseline
    best's pick is known only after its grid proxies, and budgets often pick the same
    grid model: one job a seed for all of them, so that no two processes ever train the
    same model (twice the work, and both writing its files)."""
    if c.a.baseline == "best":
        fits = [b for b in c.a.budgets if grid_fits(c, [b])]
        return ([fits] if fits else []), len(grid_fits(c, c.a.budgets))
    groups: dict[object, list[int]] = {}
    for b in c.a.budgets:
        key = baseline_config(c.space, c.models[b])
        if key is not None:
            groups.setdefault(key, []).append(b)
    return list(groups.values()), 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes side by side (default: one per core)")
    ours_a = ap.parse_args(ours)
    own = {"--threads", "--part", "--only", "--repeat", "--finalist"} & set(flags)
    if own:
        raise SystemExit(f"mcuc: error: bench_cpu.py sets {', '.join(sorted(own))} itself")
    a = parse_args(flags)
    try:
        torch.set_num_threads(1)
        out = Path(a.out)
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print("teacher (alone: every part needs its labels) ...", flush=True)
        c = bench_search_stages.setup(a)
        groups, grid = baseline_groups(c)
        env = {**os.environ, "TQDM_MININTERVAL": "30"}

        def launch(j: Job) -> subprocess.Popen:
            print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] start {j.name}", flush=True)
            cmd = [sys.executable, str(BENCH_SEARCH), *flags, *j.args,
                   "--threads", str(j.threads)]
            with open(logs / f"{j.name}.log", "a") as log:
                return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

        schedule(plan(a, groups, grid, ours_a.jobs).jobs, ours_a.jobs, launch)
    except McucError as e:
        raise SystemExit(f"mcuc: error: {e} (logs in {Path(a.out) / 'logs'})") from None
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min; report: "
          f"{Path(a.bench_dir) / 'search.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
