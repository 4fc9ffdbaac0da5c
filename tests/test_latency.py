"""The latency model (mcuc.latency) against exact emulator counts.

Four random small ViTs of the search space (a seed the calibration never drew), each
built for the STM32F746 as `mcuc build` does and run once in the Unicorn engine: the
build's own prediction (from its real schedule) and the search's (nas/cost.py, from the
fast schedule with dummy quantization) must both be within 3% of the measured
whole-inference count; and the bundled default model (trained weights, not random)
through `mcuc build`'s report.json. The full 30-config table is scripts/bench_latency.py's
(bench/latency.md)."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError, latency
from mcuc.boards import load_board
from mcuc.latency.features import (
    PRE_MAX_K,
    Variant,
    linear_plan,
    short_epilogue,
    step_features,
)
from mcuc.nas.cost import CostModel, fast_schedule
from mcuc.nas.space import load_space, parse_space

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from latency_data import measure, random_configs  # noqa: E402

TOLERANCE = 0.03
# small members of the default space (patch 7: 17 tokens), so the builds stay near a minute
SMALL = {"in_chans": 1, "num_classes": 10, "resolution": [28], "patch": [7],
         "dim": [32, 48, 64], "depth": [2, 3], "heads": [1, 2, 4],
         "mlp_ratio": [1.0, 1.5, 2.0, 3.0, 4.0], "lowrank_ratio": [1.0, 0.5, 0.25],
         "lowrank_per_layer": True}


def test_every_space_config_is_in_the_default_space() -> None:
    """SMALL is a slice of the search's space, not a space of its own."""
    full, small = load_space(), parse_space(SMALL)
    for key in ("patch", "dim", "depth", "heads", "mlp_ratio", "lowrank_ratio"):
        assert set(getattr(small, key)) <= set(getattr(full, key)), key


@pytest.fixture(scope="module")
def measured():
    cfgs = random_configs(4, seed=2026, space=parse_space(SMALL))
    t0 = time.perf_counter()
    out = [measure(c, "stm32f746") for c in cfgs]
    print(f"built and ran {len(out)} configs in {time.perf_counter() - t0:.0f} s")
    return out


def _rel(pred: int, meas: int) -> float:
    return pred / meas - 1.0


def test_build_prediction_within_3_percent(measured) -> None:
    board = load_board("stm32f746")
    for m in measured:
        p = latency.predict(m.schedule, board)
        assert not p.missing, p.missing
        assert abs(_rel(p.instructions, m.instructions)) < TOLERANCE, (m.cfg, p.instructions,
                                                                       m.instructions)


def test_search_prediction_within_3_percent(measured) -> None:
    cm = CostModel("stm32f746")
    for m in measured:
        pred = cm.cost(m.cfg).instructions
        assert pred is not None
        assert abs(_rel(pred, m.instructions)) < TOLERANCE, (m.cfg, pred, m.instructions)


def test_report_carries_the_prediction(tmp_path) -> None:
    """report.json has predicted_instructions per build and per layer, beside the count."""
    import json

    from mcuc.pipeline import build

    build(None, "stm32f746", "fashion-mnist", tmp_path / "b", samples=1)
    r = json.loads((tmp_path / "b" / "report.json").read_text())
    assert r["latency_table"] == "cortex-m7-dsp-size"
    assert abs(_rel(r["predicted_instructions"], r["instructions"])) < TOLERANCE
    assert len([row["predicted_instructions"] for row in r["layers"]]) == r["steps"]


def test_prediction_is_a_small_part_of_the_search_cost() -> None:
    """The search lowers every candidate anyway (its memory cost); the latency model
    adds its prediction on that schedule, which must stay a small part of it (measured
    rates, one process: bench/latency.md)."""
    sp, rng = load_space(), random.Random(11)
    cfgs = list(dict.fromkeys(sp.sample(rng) for _ in range(30)))
    t0 = time.perf_counter()
    scheds = [fast_schedule(c) for c in cfgs]
    t_lower = time.perf_counter() - t0
    board, table = load_board("stm32f746"), latency.load_table("cortex-m7-dsp-size")
    t0 = time.perf_counter()
    for s in scheds:
        latency.predict(s, board, exact=False, table=table)
    assert time.perf_counter() - t0 < 0.25 * t_lower


def test_linear_plan_follows_linear_c() -> None:
    """mcuc_linear_plan: the short epilogue needs x_zp 0, shifts in [-31, -1], multipliers
    in [2^30, 2^31) and small sums; the search's dummy params are read by the bias rule."""
    dsp = Variant(dsp=True, wide=False)
    shift, mult = np.full(8, -5, np.int32), np.full(8, 1 << 30, np.int32)
    assert linear_plan(0, None, mult, shift, 64, dsp) == "s"
    assert linear_plan(3, np.zeros(8, np.int32), mult, shift, 64, dsp) == "z"
    assert linear_plan(0, None, mult, np.full(8, 0, np.int32), 64, dsp) == "z"
    assert linear_plan(0, None, np.full(8, (1 << 30) - 1, np.int32), shift, 64, dsp) == "z"
    assert not short_epilogue(np.full(8, 1 << 30, np.int32), mult, shift, 64)
    assert linear_plan(0, None, mult, shift, 64, Variant(dsp=False, wide=False)) == "ref"
    guess = Variant(dsp=True, wide=False, exact=False)
    assert linear_plan(0, np.zeros(8, np.int32), None, None, 64, guess) == "s"
    assert linear_plan(0, None, None, None, 64, guess) == "z"


def test_linear_features_count_row_pairs_and_remainders() -> None:
    """17 rows x k 44 x n 10 on the DSP loop: 8 row pairs, one odd row; two blocks of
    four channels plus two plain rows; k = 5 x 8 + 4."""
    p = {"rows": 17, "k": 44, "n": 10, "x_zp": 0, "bias": None,
         "mult": np.full(10, 1 << 30, np.int32), "shift": np.full(10, -4, np.int32)}
    f = step_features("linear", p, 0, 170, Variant(dsp=True, wide=False))
    assert (f["ls_pair"], f["ls_odd"], f["ls_b2"], f["ls_b4"]) == (8, 1, 32, 2)
    assert (f["ls_b2_k8"], f["ls_b2_s4"], f["ls_b2_kt"]) == (32 * 5, 32, 0)
    assert (f["ls_d1"], f["ls_d1_k4"]) == (17 * 2, 17 * 2 * 11)


def test_linear_features_of_the_unpacked_pairs() -> None:
    """k % 16 == 0 up to linear_internal.h's MCUC_PRE_MAX_K takes unpacked_rows (x unpacked once per
    row pair, sixteen inputs per step); one step more of k takes the loops above."""
    src = (Path(__file__).resolve().parent.parent
           / "runtime_c/src/linear_internal.h").read_text()
    assert f"#define MCUC_PRE_MAX_K {PRE_MAX_K}\n" in src
    for k, prefix in ((64, "lp_"), (PRE_MAX_K, "lp_"), (PRE_MAX_K + 16, "ls_")):
        p = {"rows": 17, "k": k, "n": 10, "x_zp": 0, "bias": None,
             "mult": np.full(10, 1 << 30, np.int32), "shift": np.full(10, -4, np.int32)}
        f = step_features("linear", p, 0, 17 * k * 10, Variant(dsp=True, wide=False))
        assert (f[prefix + "pair"], f[prefix + "odd"], f[prefix + "d1"]) == (8, 1, 17 * 2)
        if prefix == "lp_":
            assert (f["lp_p2"], f["lp_p2_k16"], f["lp_pair_k4"]) == (32, 32 * k // 16, 8 * k // 4)
    f = step_features("linear", dict(p, k=64), 0, 0, Variant(dsp=True, wide=True))
    assert (f["lwp_pair"], f["lwp_odd"], f["lwp_b4"]) == (8, 1, 2)


def test_missing_table_is_one_line() -> None:
    with pytest.raises(McucError, match="no latency table for nope"):
        latency.load_table("nope")


def test_search_under_a_time_budget(tmp_path) -> None:
    """--latency / --instructions: feasible = fits the memory and the instruction budget;
    every candidate the evolution scores is within it, and pareto.png shows it."""
    from mcuc.nas.evolution import evolve, plot_pareto
    from mcuc.nas.search import SearchOptions, instructions_limit

    limit, budget = instructions_limit(SearchOptions(latency_ms=20.0))
    assert limit == 4_320_000 and budget["cpi_assumed"] == 1.0
    assert instructions_limit(SearchOptions(instructions=5_000_000))[0] == 5_000_000
    with pytest.raises(McucError, match="not both"):
        instructions_limit(SearchOptions(latency_ms=20.0, instructions=5))
    free = CostModel("stm32f746", sram_bytes=48 * 1024)
    timed = CostModel("stm32f746", sram_bytes=48 * 1024, instructions=limit)
    sp, rng = load_space(), random.Random(3)
    seen = {"in": 0, "out": 0}
    for _ in range(40):
        cfg = sp.sample(rng)
        a, b = free.cost(cfg), timed.cost(cfg)
        assert a.instructions == b.instructions
        assert b.fits == (a.fits and a.instructions <= limit)
        if a.fits:
            seen["in" if b.fits else "out"] += 1
    assert seen["in"] and seen["out"]   # the budget binds on this space

    def acc(cfg) -> float:   # bigger is better: the time budget must hold it back
        return 1 - 1 / (1 + cfg.dim * cfg.depth)

    r = evolve(sp, timed, acc, population=6, generations=2, parents=3, progress=False)
    assert all(c.cost.fits and c.cost.instructions <= limit for c in r.candidates)
    png = tmp_path / "pareto.png"
    plot_pareto(r, png, 48 * 1024, "t", instructions_limit=limit, clock_hz=216_000_000)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_time_budget_needs_a_table() -> None:
    with pytest.raises(McucError, match="no latency table for host"):
        CostModel("host", instructions=1000)


# A low-rank block's residual add at initial weights (a compiled one: its branch's scale is
# 2^-17 of the residual's, whose zero point is 4), and the same add with the branch's scale
# one order below the residual's (as with the calibration's noisy weights).
FAST_ADD = {"size": 1088, "b_size": 1088, "a_zp": 4, "b_zp": -12, "y_zp": 4,
            "a_mult": 1 << 30, "a_shift": 0, "b_mult": 1287160781, "b_shift": -19,
            "y_mult": 2147482995, "y_shift": -19}
EXACT_ADD = dict(FAST_ADD, b_shift=-4)


def test_add_features_count_elements_by_path() -> None:
    """Every add counts add_call / add_el; one that add.c sends to add_fast (or add_ref,
    or add_exact's loop for an output shift it does not inline) also counts that path's
    extra, by kernels.add.dsp_path; the portable build counts none, and on the DSP build
    the search's dummy params (a guess) and an add with the compiler's tables add_tab's."""
    from mcuc.kernels import add
    from mcuc.kernels.add import dsp_path

    dsp, portable = Variant(dsp=True, wide=False), Variant(dsp=False, wide=False)
    guess = Variant(dsp=True, wide=False, exact=False)
    assert (dsp_path(FAST_ADD), dsp_path(EXACT_ADD)) == ("fast", "exact")
    f = step_features("add", FAST_ADD, 0, 1088, dsp)
    assert dict(f) == {"add_call": 1, "add_el": 1088, "add_fast_call": 1, "add_fast_el": 1088}
    assert dict(step_features("add", EXACT_ADD, 0, 1088, dsp)) == {"add_call": 1,
                                                                    "add_el": 1088}
    f = step_features("add", dict(EXACT_ADD, y_shift=-21, y_zp=0), 0, 1088, dsp)
    assert (f["add_el"], f["add_ev_el"], f["add_fast_el"]) == (1088, 1088, 0)
    f = step_features("add", dict(FAST_ADD, y_shift=1), 0, 1088, dsp)
    assert (f["add_ref_call"], f["add_ref_el"], f["add_fast_el"]) == (1, 1088, 0)
    assert dict(step_features("add", FAST_ADD, 0, 1088, portable)) == {"add_call": 1,
                                                                        "add_el": 1088}
    tab1 = {"add_call": 1, "add_el": 1088, "add_tab1_call": 1, "add_tab1_el": 1088}
    assert dict(step_features("add", FAST_ADD, 0, 1088, guess)) == tab1   # DSP: add_tab
    for p in (FAST_ADD, EXACT_ADD):   # with the compiler's tables, both take add_tab
        assert dict(step_features("add", add.with_tables(p), 0, 1088, dsp)) == tab1
        assert dict(step_features("add", add.with_tables(p), 0, 1088, portable)) == {
            "add_call": 1, "add_el": 1088}
    two = add.with_tables(dict(EXACT_ADD, a_mult=1 << 29))   # neither input at 1/2
    assert dict(step_features("add", two, 0, 1088, dsp)) == {
        "add_call": 1, "add_el": 1088, "add_tab_call": 1, "add_tab_el": 1088}
    f = step_features("add", add.with_tables(dict(EXACT_ADD, y_shift=-21, y_zp=0)), 0, 1088,
                      dsp)
    assert (f["add_tab1_el"], f["add_ev_el"]) == (1088, 1088)


def test_tokenwise_residual_add_takes_its_path_per_tile() -> None:
    """tokenwise.c calls the add once per tile over t * n elements (b_size the same), so
    the tiles' elements are counted under the residual add's path."""
    from test_tokenwise import tokenwise_params

    rng = np.random.default_rng(5)
    p = tokenwise_params(rng, 17, k=16, h=24, n=16, has_ln=1, has_lut=1, has_l2=1,
                         has_res=1, tile=5, y_free=0, x_rs=16)
    dsp = Variant(dsp=True, wide=False)
    for add_p, extra in ((FAST_ADD, "add_fast_el"), (EXACT_ADD, None)):
        q = dict(p, add=dict(add_p, size=17 * 16, b_size=17 * 16))
        f = step_features("tokenwise", q, 0, 17 * 16, dsp)
        assert (f["add_call"], f["add_el"]) == (4, 17 * 16)   # tiles of 5, 5, 5, 2
        if extra:
            assert (f["add_fast_call"], f[extra]) == (4, 17 * 16)
        else:
            assert not any(k.startswith("add_fast") for k in f)
