"""The proxy's plain variants (mcuc.nas.proxy): the shape kept, one MLP ratio and one
rank in every block, the most MACs that the budget allows -- checked against every
plain form of the shape, with the compiler's real cost model."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from mcuc.nas.cost import CostModel
from mcuc.nas.proxy import Shape, plain_variant, with_plain
from mcuc.nas.space import SubnetConfig, load_space

SPACE = load_space()


def _cfg(patch: int, dim: int, heads, mlp, rank) -> SubnetConfig:
    return SubnetConfig(28, patch, dim, len(heads), tuple(heads), tuple(mlp), tuple(rank))


@pytest.mark.parametrize("kb, cfg", [
    (32, _cfg(4, 64, (2, 4, 4, 1), (3.0, 1.5, 4.0, 1.0), (0.25, 0.5, 1.0, 1.0))),
    (16, _cfg(7, 64, (4, 4, 2), (1.0, 2.0, 1.0), (0.5, 0.5, 0.25))),
    (64, _cfg(4, 96, (1, 2), (1.0, 1.0), (1.0, 0.25))),
])
def test_plain_variant_has_the_most_macs_of_the_shapes_plain_forms(kb: int,
                                                                  cfg: SubnetConfig) -> None:
    cm = CostModel("stm32f746", kb * 1024, 256 * 1024)
    got = plain_variant(SPACE, cfg, lambda f: cm.cost(f).fits, lambda f: cm.cost(f).macs)
    assert got is not None and cm.cost(got).fits
    assert (got.resolution, got.patch, got.dim, got.depth) == \
        (cfg.resolution, cfg.patch, cfg.dim, cfg.depth)
    n = cfg.depth
    assert got.mlp_ratio == (got.mlp_ratio[0],) * n and got.lowrank == (got.lowrank[0],) * n
    top_heads = max(set(cfg.heads), key=lambda h: (cfg.heads.count(h), -cfg.heads.index(h)))
    assert got.heads == (top_heads,) * n
    forms = [replace(got, mlp_ratio=(m,) * n, lowrank=(r,) * n)
             for m, r in itertools.product(SPACE.mlp_ratio, SPACE.lowrank_ratio)]
    best = max(cm.cost(f).macs for f in forms if cm.cost(f).fits)
    assert cm.cost(got).macs == best
    # and it is no toy: more MACs than the mixed config it stands for, where that fits
    assert cm.cost(got).macs >= cm.cost(cfg).macs or not cm.cost(cfg).fits


def test_plain_variant_is_none_when_no_plain_form_fits() -> None:
    cm = CostModel("stm32f746", 8 * 1024, 256 * 1024)
    cfg = _cfg(4, 128, (2,) * 4, (4.0,) * 4, (1.0,) * 4)
    assert plain_variant(SPACE, cfg, lambda f: cm.cost(f).fits,
                         lambda f: cm.cost(f).macs) is None


def test_with_plain_interleaves_and_drops_repeats() -> None:
    a = _cfg(4, 64, (2,) * 2, (2.0, 1.0), (1.0,) * 2)
    b = _cfg(7, 32, (1,) * 2, (1.0,) * 2, (1.0,) * 2)
    plain_a = replace(a, mlp_ratio=(4.0,) * 2)
    plains = {a: plain_a, b: b}     # b is plain already: not trained twice
    got = with_plain([Shape(a, 0.9), Shape(b, 0.8)], plains.get)
    assert [g for g, _ in got] == [a, plain_a, b]
    assert [s.config for _, s in got] == [a, a, b]
    # a plain variant that another shape's candidate already is: listed once
    got = with_plain([Shape(b, 0.9), Shape(a, 0.8)], lambda g: b)
    assert [g for g, _ in got] == [b, a]
    assert with_plain([Shape(a, 0.9)], lambda g: None) == [(a, Shape(a, 0.9))]
