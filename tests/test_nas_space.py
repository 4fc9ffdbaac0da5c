"""NAS foundation: search space, subnet module, and the compiler-backed cost model.

The key test is exactness: the fast path (canonical graph built directly, dummy
quantization) must give the same arena and weight bytes as the real path (torch subnet
-> exporter -> frontend -> calibration -> compile_graph), byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mcuc import McucError
from mcuc.nas.cost import CostModel, fast_schedule, schedule_cost, slow_schedule
from mcuc.nas.graph_builder import build_graph, dummy_qgraph
from mcuc.nas.space import SubnetConfig, load_space, parse_space
from mcuc.quant.qparams import QParams
from mcuc.schedule.lower import lower

# A wider space than the default, so exactness covers RGB input, odd ranks, mlp 4.0.
WIDE = {"resolution": [16, 32], "patch": [4, 8], "dim": [16, 24, 48], "depth": [1, 2, 3],
        "heads": [1, 2, 4], "mlp_ratio": [1.0, 1.5, 4.0], "lowrank_ratio": [1.0, 0.5, 0.3],
        "in_chans": 3, "num_classes": 5}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


BASE = ('resolution = [28]\npatch = [4, 7]\ndim = [32, 64]\ndepth = [2]\nheads = [1, 2]\n'
        'mlp_ratio = [2.0]\nlowrank_ratio = [1.0, 0.5]\n')


def test_default_space_loads() -> None:
    sp = load_space()
    assert sp.in_chans == 1 and sp.num_classes == 10 and 28 in sp.resolution
    assert sp.size() > 1000


@pytest.mark.parametrize("text, needle", [
    (BASE + "colour = 3\n", "unknown key(s) colour"),
    (BASE.replace("dim = [32, 64]", "dim = []"), "dim has an empty choice list"),
    (BASE.replace("patch = [4, 7]", "patch = [4, 5]"), "patch 5 divides no resolution in [28]"),
    (BASE.replace("resolution = [28]", "resolution = [28, 30]"),
     "no patch in [4, 7] divides resolution 30"),
    (BASE.replace("heads = [1, 2]", "heads = [3]"), "dim 32 is not divisible by heads 3"),
    (BASE.replace("depth = [2]\n", ""), "missing key(s) depth"),
    (BASE.replace("depth = [2]", "depth = [2.5]"), "depth choices must be integers"),
    (BASE.replace("lowrank_ratio = [1.0, 0.5]", "lowrank_ratio = [1.5]"), "in (0, 1]"),
    (BASE + "lowrank_per_layer = 1\n", "lowrank_per_layer must be true or false"),
    (BASE + "in_chans = 0\n", "in_chans must be a positive integer"),
    ("resolution = [28\n", "invalid TOML"),
])
def test_space_errors_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(McucError) as e:
        load_space(_write(tmp_path, text))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="not found"):
        load_space(tmp_path / "nope.toml")


@pytest.mark.parametrize("per_layer", [True, False])
def test_operators_stay_in_space(per_layer: bool) -> None:
    sp = parse_space({**WIDE, "lowrank_per_layer": per_layer})
    rng = random.Random(0)
    pop = [sp.sample(rng) for _ in range(50)]
    for _ in range(2000):
        a, b = rng.choice(pop), rng.choice(pop)
        child = sp.mutate(sp.crossover(a, b, rng), rng, prob=rng.random())
        sp.check(child)
        assert SubnetConfig.from_dict(child.to_dict()) == child
        pop[rng.randrange(len(pop))] = child
    depths = {c.depth for c in pop}
    assert len(depths) > 1  # mutation does move depth


# Resolutions whose patches differ: 28 takes 4 and 7, 32 takes 4 and 8, 35 takes 7 only.
FAMILIES = {**WIDE, "resolution": [28, 32, 35], "patch": [4, 7, 8]}


def test_operators_keep_patch_dividing_resolution() -> None:
    """With families that differ per resolution, sample/mutate/crossover still draw only
    patches that tile the resolution, and every family is reached."""
    sp = parse_space(FAMILIES)
    assert sp.families == ((28, 4), (28, 7), (32, 4), (32, 8), (35, 7))
    rng = random.Random(1)
    pop = [sp.sample(rng) for _ in range(40)]
    seen = set()
    for _ in range(3000):
        a, b = rng.choice(pop), rng.choice(pop)
        child = sp.mutate(sp.crossover(a, b, rng), rng, prob=rng.random())
        sp.check(child)
        seen.add((child.resolution, child.patch))
        pop[rng.randrange(len(pop))] = child
    assert seen == set(sp.families)
    with pytest.raises(McucError, match="patch 8 does not divide resolution 28"):
        sp.check(SubnetConfig(28, 8, 16, 1, (1,), (1.0,), (1.0,), 3, 5))
    per_layer = 3 * 3 * 3   # heads x mlp x rank choices of one block
    assert sp.size() == 5 * 3 * sum(per_layer ** d for d in (1, 2, 3))


def test_check_rejects_foreign_configs() -> None:
    sp = load_space()
    cfg = sp.sample(random.Random(1))
    assert sp.contains(cfg)
    bad = SubnetConfig.from_dict({**cfg.to_dict(), "heads": [3] * cfg.depth})
    with pytest.raises(McucError, match="heads"):
        sp.check(bad)
    with pytest.raises(McucError, match="bad subnet config"):
        SubnetConfig.from_dict({"dim": 8})


def _configs() -> list[SubnetConfig]:
    rng = random.Random(7)
    wide = parse_space(WIDE)
    return [load_space().sample(rng) for _ in range(3)] + [wide.sample(rng) for _ in range(3)]


@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: f"d{c.dim}x{c.depth}p{c.patch}")
def test_fast_path_is_exact(cfg: SubnetConfig) -> None:
    """Directly built graph + dummy qparams == exporter + frontend + real calibration."""
    assert schedule_cost(fast_schedule(cfg)) == schedule_cost(slow_schedule(cfg))


@pytest.mark.parametrize("disabled", [("head-split",), ("fusion", "token-overwrite")])
def test_fast_path_is_exact_with_techniques_disabled(disabled: tuple[str, ...]) -> None:
    cfg = SubnetConfig(28, 7, 32, 2, (2, 1), (2.0, 1.5), (0.5, 1.0))
    assert schedule_cost(fast_schedule(cfg, disabled)) == \
        schedule_cost(slow_schedule(cfg, disabled))


def test_sizes_do_not_depend_on_scales() -> None:
    """The fast path's premise: quantization scales change values, never byte counts."""
    cfg = SubnetConfig(28, 4, 32, 2, (2, 4), (2.0, 1.0), (1.0, 0.25))
    sizes = {schedule_cost(lower(dummy_qgraph(build_graph(cfg), qp)))
             for qp in (QParams(1 / 64, 0), QParams(0.37, -20), QParams(3e-4, 101))}
    assert len(sizes) == 1


def test_cache_hits() -> None:
    cm = CostModel("stm32f746")
    cfg = load_space().sample(random.Random(3))
    first = cm.cost(cfg)
    again = cm.cost(SubnetConfig.from_dict(cfg.to_dict()))
    assert again is first and (cm.hits, cm.misses, len(cm)) == (1, 1, 1)
    assert first.arena_bytes > 0 and first.weights_bytes > 0 and first.macs > 0
    assert first.flash_bytes > first.weights_bytes and first.ram_bytes > first.arena_bytes


def test_overheads_match_the_build_fit_check() -> None:
    """ram/flash are firmware.estimate's sram/flash for the compiled sizes."""
    from mcuc.boards import load_board
    from mcuc.target.fit import estimate

    cm = CostModel("stm32f746")
    cfg = SubnetConfig(28, 7, 48, 3, (4, 2, 1), (1.0, 2.0, 3.0), (1.0, 0.5, 0.25))
    c = cm.cost(cfg)
    f = estimate(load_board("stm32f746"), c.arena_bytes, c.weights_bytes, c.steps,
                 28 * 28, 10, 4)
    assert (c.ram_bytes, c.flash_bytes, c.fits) == (f.sram, f.flash, not f.problems())
    assert c.fits


def test_tiny_budget_does_not_fit() -> None:
    cfgs = [load_space().sample(random.Random(s)) for s in range(5)]
    tiny = CostModel("stm32f746", sram_bytes=8 * 1024, flash_bytes=16 * 1024)
    assert not any(tiny.cost(c).fits for c in cfgs)  # the 8 KB stack alone fills it
    for c in cfgs:  # a budget one byte short of the need fails; the exact need fits
        need = CostModel("stm32f746").cost(c)
        exact = CostModel("stm32f746", sram_bytes=need.ram_bytes, flash_bytes=need.flash_bytes)
        assert exact.cost(c).fits
        short = CostModel("stm32f746", sram_bytes=need.ram_bytes - 1,
                          flash_bytes=need.flash_bytes)
        assert not short.cost(c).fits
    big = CostModel("stm32f746", sram_bytes=10**8, flash_bytes=10**9)
    assert all(big.cost(c).fits for c in cfgs)


def test_cost_many_parallel_matches_serial() -> None:
    cfgs = [load_space().sample(random.Random(100 + s)) for s in range(6)]
    serial = CostModel("stm32f746").cost_many(cfgs)
    cm = CostModel("stm32f746")
    assert cm.cost_many(cfgs + cfgs[:2], workers=2) == serial + serial[:2]
    assert (cm.misses, len(cm)) == (6, 6)  # duplicates are computed once
    assert cm.cost(cfgs[0]) is cm.cost_many(cfgs[:1], workers=2)[0] and cm.hits == 2
