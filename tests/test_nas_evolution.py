"""Evolutionary search: real compiler-backed costs, a synthetic deterministic accuracy.

The budget (24 KB of SRAM on the STM32F746) is tight enough that the default space
has configs over it (patch 4 with dim >= 64), so feasibility filtering is exercised.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from mcuc import McucError
from mcuc.nas.cost import Cost, CostModel
from mcuc.nas.evolution import (
    Candidate,
    SearchResult,
    evolve,
    pareto_front,
    plot_pareto,
    write_search_json,
)
from mcuc.nas.space import SearchSpace, SubnetConfig, load_space, parse_space

BOARD = "stm32f746"
SRAM = 24_000
SMALL = dict(population=8, generations=3, parents=4, progress=False)


def synthetic_accuracy(cfg: SubnetConfig) -> float:
    """Bigger is better: width x per-layer capacity, more tokens help."""
    cap = cfg.dim * sum(1 + m * r for m, r in zip(cfg.mlp_ratio, cfg.lowrank, strict=True))
    cap *= 2.0 if cfg.patch == 4 else 1.0
    return cap / (cap + 2000.0)


class Run:
    def __init__(self, seed: int = 0) -> None:
        self.space = load_space()
        self.cm = CostModel(BOARD, sram_bytes=SRAM)
        self.calls: Counter[SubnetConfig] = Counter()
        self.result = evolve(self.space, self.cm, self.accuracy, seed=seed, **SMALL)

    def accuracy(self, cfg: SubnetConfig) -> float:
        self.calls[cfg] += 1
        return synthetic_accuracy(cfg)


@pytest.fixture(scope="module")
def run() -> Run:
    return Run(seed=0)


def dominated(c: Candidate, others: list[Candidate]) -> bool:
    return any(o.accuracy >= c.accuracy and o.cost.ram_bytes <= c.cost.ram_bytes
               and (o.accuracy > c.accuracy or o.cost.ram_bytes < c.cost.ram_bytes)
               for o in others)


def brute_front(cands: list[Candidate]) -> set[int]:
    return {id(c) for c in cands if not dominated(c, cands)}


def test_candidates_fit_and_are_in_space(run: Run) -> None:
    r, cm = run.result, run.cm
    assert len(r.candidates) == SMALL["population"] * SMALL["generations"]
    for c in r.candidates:
        run.space.check(c.config)
        assert c.cost.fits and c.cost.ram_bytes <= SRAM and c.cost.flash_bytes <= cm.flash_limit
        assert c.cost == cm.cost(c.config)
        assert c.accuracy == synthetic_accuracy(c.config)
        assert (c.origin == "random") == (c.generation == 0)
        assert c.origin in ("random", "mutation", "crossover")
    per_gen = Counter(c.generation for c in r.candidates)
    assert per_gen == {0: 8, 1: 8, 2: 8}
    assert [c.generation for c in r.candidates] == sorted(c.generation for c in r.candidates)
    origins = Counter(c.origin for c in r.candidates if c.generation == 1)
    assert origins == {"mutation": 4, "crossover": 4}


def test_no_duplicates_and_counts(run: Run) -> None:
    r = run.result
    configs = [c.config for c in r.candidates]
    assert len(set(configs)) == len(configs)
    assert set(run.calls) == set(configs) and set(run.calls.values()) == {1}  # scored once
    assert r.rejected > 0  # the budget does bite
    assert r.cost_evals == len(r.candidates) + r.rejected  # fresh model: each config costed once
    assert r.candidates_per_s > 0 and r.seconds > 0


def test_best_is_argmax_and_on_front(run: Run) -> None:
    r = run.result
    top = max(c.accuracy for c in r.candidates)
    assert r.best.accuracy == top
    tied = [c for c in r.candidates if c.accuracy == top]
    assert (r.best.cost.ram_bytes, r.best.cost.macs) == \
        min((c.cost.ram_bytes, c.cost.macs) for c in tied)
    assert any(p is r.best for p in r.pareto)


def test_pareto_matches_brute_force(run: Run) -> None:
    r = run.result
    assert {id(c) for c in r.pareto} == brute_front(r.candidates)
    rams = [c.cost.ram_bytes for c in r.pareto]
    assert rams == sorted(rams)
    accs = [c.accuracy for c in r.pareto]
    assert accs == sorted(accs)  # along a front, more RAM must buy accuracy


def _cand(acc: float, ram: int, macs: int = 0, cfg: SubnetConfig | None = None) -> Candidate:
    cfg = cfg or load_space().sample(random.Random(0))
    return Candidate(cfg, Cost(0, 0, 0, ram, macs, True), acc, 0, "random")


def test_pareto_front_hand_made() -> None:
    a, b = _cand(0.9, 100), _cand(0.9, 100, macs=5)  # exact tie: both kept
    c = _cand(0.9, 120)                                 # same accuracy, more RAM
    d, g = _cand(0.95, 150), _cand(0.95, 150)           # tie at the top
    e = _cand(0.5, 50)
    f = _cand(0.5, 60)                                  # dominated by e
    h = _cand(0.4, 50)                                  # same RAM as e, less accurate
    i = _cand(0.3, 400)                                 # dominated by everything better
    front = pareto_front([i, h, g, f, e, d, c, b, a])
    assert [x.cost.ram_bytes for x in front] == [50, 100, 100, 150, 150]
    assert {id(x) for x in front} == {id(x) for x in (e, a, b, d, g)}
    assert pareto_front([]) == []
    assert pareto_front([h]) == [h]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_random_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    cfg = load_space().sample(rng)
    cands = [_cand(rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]), rng.choice([10, 20, 30, 40]),
                   cfg=cfg) for _ in range(60)]
    front = pareto_front(cands)
    assert {id(c) for c in front} == brute_front(cands)
    assert len(front) == len({id(c) for c in front})


def test_reproducible_with_same_seed(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    # Same cost model (cached) and the progress bar on: neither may change the draws.
    again = evolve(run.space, run.cm, synthetic_accuracy, seed=0,
                   **{**SMALL, "progress": True})
    assert "evolution" in capsys.readouterr().err
    key = [(c.config, c.accuracy, c.generation, c.origin, c.cost) for c in run.result.candidates]
    assert [(c.config, c.accuracy, c.generation, c.origin, c.cost)
            for c in again.candidates] == key
    assert again.rejected == run.result.rejected and again.best.config == run.result.best.config
    assert again.cost_evals == 0 and again.candidates_per_s > 0  # all cached
    other = evolve(run.space, run.cm, synthetic_accuracy, seed=1, **SMALL)
    assert [c.config for c in other.candidates] != [c.config for c in run.result.candidates]


def test_evolution_improves_on_generation_zero(run: Run) -> None:
    gains = []
    for r in (run.result, Run(seed=1).result, Run(seed=2).result):
        gen0 = max(c.accuracy for c in r.candidates if c.generation == 0)
        assert r.best.accuracy >= gen0
        gains.append(r.best.accuracy - gen0)
    assert max(gains) > 0  # selection + variation found something better at least once


def test_impossible_budget_is_one_line_error() -> None:
    cm = CostModel(BOARD, sram_bytes=1000)
    with pytest.raises(McucError) as e:
        evolve(load_space(), cm, synthetic_accuracy, max_draws=10, **SMALL)
    msg = str(e.value)
    assert "\n" not in msg
    assert "smallest RAM seen" in msg and "limit 1,000 B" in msg and BOARD in msg


def tiny_space() -> SearchSpace:
    return parse_space({"resolution": [28], "patch": [7], "dim": [32], "depth": [2],
                        "heads": [1], "mlp_ratio": [1.0], "lowrank_ratio": [1.0, 0.5]})


def test_exhausted_space_terminates() -> None:
    # 4 configs in all: generation 0 cannot reach 8 and no child is ever new.
    sp = tiny_space()
    assert sp.size() == 4
    r = evolve(sp, CostModel(BOARD), synthetic_accuracy, max_draws=200, **SMALL)
    assert len(r.candidates) == 4 and len({c.config for c in r.candidates}) == 4
    assert r.rejected == 0 and r.to_dict()["stats"]["generations_run"] == 1


@pytest.mark.parametrize("kwargs, needle", [
    ({"population": 0}, "population must be at least 1"),
    ({"generations": 0}, "generations must be at least 1"),
    ({"mutation_prob": 1.5}, "mutation probability"),
])
def test_bad_settings(kwargs: dict, needle: str) -> None:
    with pytest.raises(McucError, match=needle):
        evolve(tiny_space(), CostModel(BOARD), synthetic_accuracy,
               **{**SMALL, **kwargs})


def test_bad_accuracy_is_an_error() -> None:
    with pytest.raises(McucError, match=r"must be a fraction in \[0, 1\]"):
        evolve(tiny_space(), CostModel(BOARD), lambda c: 87.5, **SMALL)


def test_search_json_round_trip_and_plot(run: Run, tmp_path: Path) -> None:
    r: SearchResult = run.result
    meta = {"board": BOARD, "sram": SRAM}
    write_search_json(r, tmp_path / "out" / "search.json", meta)
    d = json.loads((tmp_path / "out" / "search.json").read_text())
    assert d["meta"] == meta
    st = d["stats"]
    assert (st["candidates"], st["rejected"], st["cost_evals"]) == \
        (len(r.candidates), r.rejected, r.cost_evals)
    assert st["settings"]["population"] == 8 and st["generations_run"] == 3

    def rebuild(x: dict) -> tuple:
        return (SubnetConfig.from_dict(x["config"]), Cost(**x["cost"]), x["accuracy"],
                x["generation"], x["origin"])

    def orig(c: Candidate) -> tuple:
        return (c.config, c.cost, c.accuracy, c.generation, c.origin)

    assert [rebuild(x) for x in d["candidates"]] == [orig(c) for c in r.candidates]
    assert [rebuild(x) for x in d["pareto"]] == [orig(c) for c in r.pareto]
    assert rebuild(d["best"]) == orig(r.best)

    png = tmp_path / "out" / "pareto.png"
    plot_pareto(r, png, SRAM, title="test")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
