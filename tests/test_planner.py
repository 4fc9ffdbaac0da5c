"""Activation-memory planner: every plan valid, never below the bound, optimal where provable;
and the validator provably rejects broken plans."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import mcuc  # noqa: F401
except ImportError:  # source checkout without an editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compiler"))

from mcuc.memory import (  # noqa: E402
    Buffer,
    Plan,
    PlanError,
    live_at,
    lower_bound,
    plan,
    plan_greedy_by_breadth,
    plan_greedy_by_size,
    usage_timeline,
    validate,
)

PLANNERS = {
    "greedy-size": plan_greedy_by_size,
    "greedy-breadth": plan_greedy_by_breadth,
    "best": plan,
}
N_STEPS = 300
ALIGNS = st.sampled_from([1, 4, 8, 16])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def round16(n: int) -> int:
    return -(-n // 16) * 16


@st.composite
def buffer_sets(draw, min_size: int = 1, max_size: int = 200) -> list[Buffer]:
    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        first = draw(st.integers(0, N_STEPS - 1))
        last = draw(
            st.integers(first, min(N_STEPS - 1, first + draw(st.sampled_from([0, 3, 30, 300]))))
        )
        out.append(Buffer(f"b{i}", draw(st.integers(0, 100_000)), first, last, draw(ALIGNS)))
    return out


def conflicts_brute_force(buffers: list[Buffer], offsets: dict[str, int]) -> bool:
    """O(n^2) reference for the validator's overlap check."""
    for a, b in itertools.combinations(buffers, 2):
        if a.size == 0 or b.size == 0:
            continue
        if a.first <= b.last and b.first <= a.last:
            oa, ob = offsets[a.name], offsets[b.name]
            if oa < ob + b.size and ob < oa + a.size:
                return True
    return False


# --- planners on random inputs ------------------------------------------------------------


@SETTINGS
@given(buffer_sets())
def test_every_strategy_valid_and_above_lower_bound(buffers):
    lb = lower_bound(buffers)
    for name, fn in PLANNERS.items():
        p = fn(buffers)
        validate(buffers, p)
        assert not conflicts_brute_force(buffers, p.offsets), name
        assert p.lower_bound_bytes == lb
        assert p.arena_bytes >= lb
        assert p.arena_bytes % 16 == 0
        assert p.arena_bytes == round16(max(p.offsets[b.name] + b.size for b in buffers))
        assert set(p.offsets) == {b.name for b in buffers}
    best = plan(buffers)
    assert best.arena_bytes == min(
        plan(buffers, s).arena_bytes for s in ("greedy-size", "greedy-breadth")
    )
    assert best.planner in ("greedy-size", "greedy-breadth")


@SETTINGS
@given(st.data())
def test_disjoint_lifetimes_reach_the_bound(data):
    n = data.draw(st.integers(1, 100))
    cuts = sorted(data.draw(st.sets(st.integers(1, 2 * N_STEPS), min_size=n, max_size=n)))
    starts = [0, *cuts[:-1]]
    buffers = [
        Buffer(f"b{i}", data.draw(st.integers(0, 100_000)), s, e - 1, data.draw(ALIGNS))
        for i, (s, e) in enumerate(zip(starts, cuts, strict=True))
    ]
    lb = lower_bound(buffers)
    assert lb == max(b.size for b in buffers)
    for name, fn in PLANNERS.items():
        p = fn(buffers)
        validate(buffers, p)
        assert p.arena_bytes == round16(lb), name
        assert all(off == 0 for off in p.offsets.values())


@SETTINGS
@given(st.data())
def test_all_live_at_one_step(data):
    """Everything live at once: nothing can share, so the arena is the (padded) sum."""
    n = data.draw(st.integers(1, 150))
    step = data.draw(st.integers(0, N_STEPS - 1))
    sixteen = data.draw(st.booleans())  # sizes multiples of 16: alignment never pads
    buffers = []
    for i in range(n):
        size = data.draw(st.integers(0, 100_000))
        if sixteen:
            size = size // 16 * 16
        first = data.draw(st.integers(0, step))
        last = data.draw(st.integers(step, N_STEPS - 1))
        buffers.append(Buffer(f"b{i}", size, first, last, data.draw(ALIGNS)))
    total = sum(b.size for b in buffers)
    assert lower_bound(buffers) == total
    for name, fn in PLANNERS.items():
        p = fn(buffers)
        validate(buffers, p)
        if sixteen:
            assert p.arena_bytes == total, name
        else:
            # Each placement pads by less than its alignment.
            assert round16(total) <= p.arena_bytes
            assert p.arena_bytes <= round16(sum(b.size + b.align - 1 for b in buffers))


def test_chain_is_optimal():
    """a(0,1) b(1,2) c(2,3) d(3,4) e(4,5): peak is the heaviest adjacent pair, c+d = 608."""
    sizes = {"a": 96, "b": 320, "c": 208, "d": 400, "e": 112}
    buffers = [Buffer(n, s, i, i + 1) for i, (n, s) in enumerate(sizes.items())]
    assert lower_bound(buffers) == 608
    p = plan_greedy_by_size(buffers)
    validate(buffers, p)
    # d largest at 0; b (disjoint from d) at 0; c above both; e above d; a above b.
    assert p.offsets == {"d": 0, "b": 0, "c": 400, "e": 400, "a": 320}
    assert p.arena_bytes == p.lower_bound_bytes == 608
    assert p.planner == "greedy-size"
    for fn in PLANNERS.values():
        assert fn(buffers).arena_bytes == 608


def test_empty_and_zero_size():
    p = plan([])
    assert (p.offsets, p.arena_bytes, p.lower_bound_bytes) == ({}, 0, 0)
    validate([], p)
    buffers = [Buffer("z", 0, 0, 5), Buffer("x", 10, 0, 5, align=8), Buffer("y", 0, 3, 3)]
    p = plan(buffers)
    validate(buffers, p)
    assert p.arena_bytes == 16 and p.lower_bound_bytes == 10


def test_planning_is_deterministic():
    buffers = [Buffer(f"b{i}", (i * 7919) % 5000, i % 17, i % 17 + i % 5, 4) for i in range(120)]
    assert plan(list(reversed(buffers))).offsets == plan(buffers).offsets


def test_bad_inputs_rejected():
    with pytest.raises(PlanError, match="duplicate"):
        plan([Buffer("a", 4, 0, 0), Buffer("a", 8, 1, 1)])
    with pytest.raises(ValueError, match="unknown planning strategy"):
        plan([Buffer("a", 4, 0, 0)], strategy="optimal")
    for kwargs in (
        dict(size=-1, first=0, last=0),
        dict(size=4, first=3, last=2),
        dict(size=4, first=-1, last=2),
        dict(size=4, first=0, last=0, align=3),
        dict(size=4, first=0, last=0, align=0),
    ):
        with pytest.raises(ValueError):
            Buffer("a", **kwargs)


# --- liveness helpers ---------------------------------------------------------------------


def test_liveness_helpers():
    buffers = [Buffer("a", 10, 0, 1), Buffer("b", 20, 1, 2), Buffer("c", 5, 3, 3)]
    assert [b.name for b in live_at(buffers, 1)] == ["a", "b"]
    assert live_at(buffers, 4) == []
    assert usage_timeline(buffers, 5) == [10, 30, 20, 5, 0]
    assert lower_bound(buffers) == 30
    with pytest.raises(PlanError):
        usage_timeline(buffers, 3)


@SETTINGS
@given(buffer_sets(max_size=60))
def test_lower_bound_matches_timeline(buffers):
    timeline = usage_timeline(buffers, N_STEPS)
    assert lower_bound(buffers) == max(timeline)
    for step in (0, N_STEPS // 2, N_STEPS - 1):
        assert timeline[step] == sum(b.size for b in live_at(buffers, step))


# --- the validator can fail ---------------------------------------------------------------


def _good():
    buffers = [
        Buffer("a", 32, 0, 2, align=16),
        Buffer("b", 16, 2, 4, align=8),
        Buffer("c", 32, 3, 5, align=16),  # lifetime disjoint from a: reuses its bytes
        Buffer("z", 0, 0, 5),
    ]
    p = Plan({"a": 0, "b": 32, "c": 0, "z": 0}, 48, lower_bound(buffers), "hand")
    validate(buffers, p)
    return buffers, p


def test_validator_accepts_touching_ranges_and_adjacent_lifetimes():
    buffers, p = _good()
    # b's bytes [32, 48) touch a's and c's [0, 32); c shares a's bytes at disjoint steps.
    validate(buffers, p)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"b": 16}, "overlap"),  # a [0,32) steps 0..2 vs b [16,32) steps 2..4
        ({"c": 16}, "overlap"),  # c [16,48) steps 3..5 vs b [32,48) steps 2..4
        ({"b": 36}, "not a multiple of 8"),
        ({"a": -16}, "negative"),
        ({"c": 32}, "past the arena"),  # c [32,64) in a 48-byte arena
        ({"ghost": 0}, "unknown"),
        ({"a": 0.0}, "not an int"),
    ],
)
def test_validator_rejects_broken_plans(change, message):
    buffers, p = _good()
    p.offsets.update(change)
    with pytest.raises(PlanError, match=message):
        validate(buffers, p)


def test_validator_rejects_missing_and_small_arena():
    buffers, p = _good()
    del p.offsets["b"]
    with pytest.raises(PlanError, match="no offset.*'b'"):
        validate(buffers, p)
    buffers, p = _good()
    p.arena_bytes = 47
    with pytest.raises(PlanError, match="past the arena"):
        validate(buffers, p)


def test_validator_names_both_buffers():
    buffers, p = _good()
    p.offsets["b"] = 16
    with pytest.raises(PlanError) as exc:
        validate(buffers, p)
    assert "'a'" in str(exc.value) and "'b'" in str(exc.value)


def test_zero_size_buffers_never_conflict():
    buffers = [Buffer("a", 64, 0, 9), Buffer("z", 0, 0, 9), Buffer("y", 0, 5, 5)]
    validate(buffers, Plan({"a": 0, "z": 32, "y": 0}, 64, 64, "hand"))


@SETTINGS
@given(buffer_sets(max_size=25), st.data())
def test_validator_agrees_with_brute_force(buffers, data):
    """Random 16-aligned offsets: validate raises exactly when some pair collides."""
    offsets = {b.name: data.draw(st.integers(0, 12_500)) * 16 for b in buffers}
    arena = max(offsets[b.name] + b.size for b in buffers)
    p = Plan(offsets, arena, lower_bound(buffers), "random")
    if conflicts_brute_force(buffers, offsets):
        with pytest.raises(PlanError, match="overlap"):
            validate(buffers, p)
    else:
        validate(buffers, p)


@SETTINGS
@given(buffer_sets(min_size=2, max_size=100), st.data())
def test_validator_catches_a_moved_buffer(buffers, data):
    """Take a valid plan, move one buffer onto a lifetime-overlapping neighbour."""
    p = plan(buffers)
    pairs = [
        (a, b)
        for a, b in itertools.combinations(buffers, 2)
        if a.size and b.size and a.first <= b.last and b.first <= a.last and a.align == b.align
    ]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    p.offsets[a.name] = p.offsets[b.name]
    p.arena_bytes = max(p.arena_bytes, p.offsets[a.name] + a.size)
    with pytest.raises(PlanError, match="overlap"):
        validate(buffers, p)
