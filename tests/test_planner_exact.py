"""Exact (branch-and-bound) planner, the "auto" strategy, and memory.png.

The exact planner is checked against an independent brute force: the best first-fit plan
over every placement order is optimal (place the buffers of an optimal plan in order of
offset, and first-fit puts none of them higher), so on <= 8 buffers we can enumerate it.
"""

from __future__ import annotations

import random
import struct
import sys
import time
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
    lower_bound,
    plan,
    plan_exact,
    plan_greedy_by_breadth,
    plan_greedy_by_size,
    search_exact,
    validate,
)
from mcuc.memory.plot import plot_plan  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def round16(n: int) -> int:
    return -(-n // 16) * 16


@st.composite
def buffer_sets(draw, min_size: int = 1, max_size: int = 60, n_steps: int = 40) -> list[Buffer]:
    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        first = draw(st.integers(0, n_steps - 1))
        span = draw(st.sampled_from([0, 1, 3, 10, n_steps]))
        last = draw(st.integers(first, min(n_steps - 1, first + span)))
        size = draw(st.one_of(st.integers(0, 5000), st.integers(1, 40).map(lambda k: 16 * k)))
        out.append(Buffer(f"b{i}", size, first, last, draw(st.sampled_from([1, 4, 8, 16]))))
    return out


def brute_force_optimum(buffers: list[Buffer]) -> int:
    """Smallest rounded arena over all placement orders, each placed first-fit.

    First-fit = lowest aligned offset clear of every placed, lifetime-overlapping buffer;
    that offset is 0 or the (aligned) end of one of them. Branches that already reach the
    best arena found are cut, which keeps 8 buffers (40320 orders) fast.

    A buffer with a tail (Buffer.above) and its tail are one item, put at the lowest
    offset where both parts fit (0, or one part ending at a placed buffer's end).
    """
    tails = {b.above: b for b in buffers if b.above}
    items = [b for b in buffers if not b.above]
    n = len(items)
    best = [round16(sum(b.size + b.align for b in buffers))]

    def parts(b: Buffer) -> list[tuple[int, Buffer]]:
        return [(0, b), (b.size, tails[b.name])] if b.name in tails else [(0, b)]

    def rec(placed: list[tuple[int, int, Buffer]], used: int, end: int) -> None:
        if round16(end) >= best[0]:
            return
        if used == (1 << n) - 1:
            best[0] = round16(end)
            return
        for i, b in enumerate(items):
            if used >> i & 1:
                continue
            if b.size == 0:
                rec(placed, used | 1 << i, end)
                continue
            ps = parts(b)

            def busy(q: Buffer) -> list[tuple[int, int]]:
                return [(o, e) for o, e, p in placed if p.first <= q.last and q.first <= p.last]

            cands = {0} | {-(-(e - d) // b.align) * b.align for d, q in ps for _, e in busy(q)}
            for off in sorted(c for c in cands if c >= 0):
                if all(all(off + d + q.size <= o or off + d >= e for o, e in busy(q))
                       for d, q in ps):
                    break
            new = [(off + d, off + d + q.size, q) for d, q in ps]
            rec([*placed, *new], used | 1 << i, max(end, *(e for _, e, _ in new)))

    rec([], 0, 0)
    return best[0]


def random_buffers(n: int, seed: int, n_steps: int = 300) -> list[Buffer]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        first = rng.randrange(n_steps)
        last = rng.randint(first, min(n_steps - 1, first + rng.choice([0, 3, 30, 300])))
        out.append(Buffer(f"b{i}", rng.randint(0, 100_000), first, last, rng.choice([1, 4, 16])))
    return out


# --- exact planner --------------------------------------------------------------------------


@SETTINGS
@given(buffer_sets())
def test_exact_valid_and_never_worse_than_greedy(buffers):
    greedy = plan(buffers)
    for strategy in ("exact", "auto"):
        p = plan(buffers, strategy, time_limit_s=0.05)
        validate(buffers, p)
        assert set(p.offsets) == {b.name for b in buffers}
        assert lower_bound(buffers) <= p.arena_bytes <= greedy.arena_bytes
        assert p.arena_bytes % 16 == 0
        assert p.arena_bytes == round16(max(p.offsets[b.name] + b.size for b in buffers))
        if p.planner != "exact":
            assert p.planner == greedy.planner and p.arena_bytes == greedy.arena_bytes
        if greedy.optimal:  # greedy met the rounded bound: nothing to search for
            assert p.optimal and p.arena_bytes == greedy.arena_bytes


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffer_sets(max_size=8, n_steps=8))
def test_exact_matches_brute_force_on_small_instances(buffers):
    opt = brute_force_optimum(buffers)
    p, stats = search_exact(buffers, plan(buffers), time_limit_s=10.0)
    validate(buffers, p)
    assert p.arena_bytes >= opt  # nothing beats the true optimum
    assert p.optimal, stats  # 8 buffers: the search always finishes
    assert p.arena_bytes == opt


def test_greedy_suboptimal_instance():
    """Greedy-by-size puts both 96-byte buffers at 0 (their lifetimes are disjoint), so c
    must go above d and a above both: 208 bytes. The optimum is the lower bound, 160: e.g.
    c at 0 under d, and a at 112 above c and b -- d is dead by the time a is born."""
    buffers = [
        Buffer("a", 48, 1, 4),
        Buffer("b", 96, 2, 2),
        Buffer("c", 64, 0, 1),
        Buffer("d", 96, 0, 0),
    ]
    assert lower_bound(buffers) == 160
    assert plan_greedy_by_size(buffers).arena_bytes == 208
    assert plan_greedy_by_breadth(buffers).arena_bytes == 208
    assert plan(buffers).arena_bytes == 208 and not plan(buffers).optimal
    validate(buffers, Plan({"a": 112, "b": 0, "c": 0, "d": 64}, 160, 160, "hand"))
    assert brute_force_optimum(buffers) == 160
    for strategy in ("exact", "auto"):
        p = plan(buffers, strategy)
        validate(buffers, p)
        assert (p.arena_bytes, p.planner, p.optimal) == (160, "exact", True)
    assert plan_exact(buffers).arena_bytes == 160


def test_time_limit_respected_on_big_instance():
    buffers = random_buffers(400, seed=3)
    greedy = plan(buffers)
    t0 = time.perf_counter()
    p = plan(buffers, "exact", time_limit_s=0.1)
    elapsed = time.perf_counter() - t0
    validate(buffers, p)
    assert p.arena_bytes <= greedy.arena_bytes
    assert elapsed < 2.0  # ~0.1 s of search plus greedy and setup; generous for slow CI


def test_node_limit_and_stats():
    buffers = random_buffers(120, seed=4, n_steps=100)
    p, stats = search_exact(buffers, plan(buffers), time_limit_s=30.0, node_limit=500)
    validate(buffers, p)
    assert stats.nodes <= 500
    if not p.optimal:
        assert stats.stopped_by == "nodes" and not stats.exhausted


def test_optimal_flag_and_auto_shortcut():
    # Disjoint lifetimes: greedy meets the bound, is marked optimal, "auto" adds nothing.
    chain = [Buffer(f"b{i}", 100 + i, i, i) for i in range(50)]
    for strategy in ("best", "auto", "exact", "greedy-size"):
        p = plan(chain, strategy)
        assert p.optimal and p.arena_bytes == round16(149)
        assert p.planner in ("greedy-size", "greedy-breadth")
    # Hand-built plans keep working without the new field.
    assert plan([]).optimal
    # "auto" skips the search above 400 buffers even when greedy is far from the bound.
    big = random_buffers(401, seed=5)
    assert plan(big, "auto").planner in ("greedy-size", "greedy-breadth")


def test_strategy_names():
    buffers = [Buffer("a", 4, 0, 0)]
    for strategy in ("best", "exact", "auto", "greedy-size", "greedy-breadth"):
        validate(buffers, plan(buffers, strategy))
    with pytest.raises(ValueError, match="exact, auto"):
        plan(buffers, strategy="optimal")


def test_exact_handles_zero_sizes_and_duplicates():
    buffers = [Buffer("z", 0, 0, 9), Buffer("x", 10, 0, 5, align=8), Buffer("y", 0, 3, 3)]
    p = plan(buffers, "exact")
    validate(buffers, p)
    assert p.arena_bytes == 16 and p.optimal
    with pytest.raises(PlanError, match="duplicate"):
        plan([Buffer("a", 4, 0, 0), Buffer("a", 8, 1, 1)], "exact")


# --- tails (Buffer.above): a buffer whose upper bytes die first -------------------------------


@st.composite
def sets_with_tail(draw, max_size: int = 60, n_steps: int = 40) -> list[Buffer]:
    """A random buffer set plus one tail on one of its non-empty buffers, inside its life."""
    bufs = draw(buffer_sets(max_size=max_size, n_steps=n_steps))
    bases = [b for b in bufs if b.size]
    if not bases:
        bufs.append(Buffer("base", 16, 0, n_steps - 1))
        bases = bufs[-1:]
    base = draw(st.sampled_from(bases))
    first = draw(st.integers(base.first, base.last))
    last = draw(st.integers(first, base.last))
    size = draw(st.integers(1, 5000))
    return [*bufs, Buffer("tail", size, first, last, 1, above=base.name)]


@SETTINGS
@given(sets_with_tail())
def test_tails_sit_on_their_base_in_every_strategy(buffers):
    """Every strategy puts the tail directly above its base; no plan beats the bound,
    exact never loses to greedy, and the tail's bytes are reused once it dies."""
    greedy = plan(buffers)
    for strategy in ("greedy-size", "greedy-breadth", "best", "exact", "auto"):
        p = plan(buffers, strategy, time_limit_s=0.05)
        validate(buffers, p)
        tail = buffers[-1]
        base = next(b for b in buffers if b.name == tail.above)
        assert p.offsets[tail.name] == p.offsets[base.name] + base.size
        assert lower_bound(buffers) <= p.arena_bytes
        if strategy in ("exact", "auto"):
            assert p.arena_bytes <= greedy.arena_bytes


def stacked(buffers: list[Buffer]) -> Plan:
    """A valid but poor plan: every buffer above the last (each tail right above its
    base), so a search seeded with it must find its own plans."""
    offsets, end = {}, 0
    for b in buffers:
        if b.above is None:
            offsets[b.name] = end = -(-end // b.align) * b.align
            end += b.size
            for t in buffers:
                if t.above == b.name:
                    offsets[t.name] = end
                    end += t.size
    return Plan(offsets, round16(end) + 16, lower_bound(buffers), "stacked")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sets_with_tail(max_size=6, n_steps=8))
def test_exact_with_a_tail_matches_brute_force(buffers):
    opt = brute_force_optimum(buffers)
    for seed in (plan(buffers), stacked(buffers)):
        validate(buffers, seed)
        p, stats = search_exact(buffers, seed, time_limit_s=10.0)
        validate(buffers, p)
        assert p.optimal, stats
        assert p.arena_bytes == opt


def test_tail_frees_its_bytes_for_later_buffers():
    """A patch embedding in miniature: tokens (base) live on, the image above them (tail)
    dies at step 1, and a 300-byte buffer born at step 2 takes the image's bytes. As one
    block the pair would need 400 + 300; a tail never costs more than that block (the
    greedy plans also try the block)."""
    buffers = [Buffer("tokens", 100, 0, 5), Buffer("image", 300, 0, 1, 1, above="tokens"),
               Buffer("mlp", 300, 2, 5)]
    for strategy in ("greedy-size", "greedy-breadth", "best", "exact"):
        p = plan(buffers, strategy)
        validate(buffers, p)
        assert p.arena_bytes == 400 and p.offsets["image"] == p.offsets["tokens"] + 100
    moved = plan(buffers)
    moved.offsets["image"] += 4
    moved.arena_bytes += 16
    with pytest.raises(PlanError, match="not directly above 'tokens'"):
        validate(buffers, moved)


@pytest.mark.parametrize("bad, message", [
    ([Buffer("a", 8, 0, 2), Buffer("t", 8, 0, 3, 1, above="a")], "outlives 'a'"),
    ([Buffer("t", 8, 0, 0, 1, above="a")], "missing"),
    ([Buffer("a", 6, 0, 2), Buffer("t", 8, 0, 1, 4, above="a")], "alignment 4"),
    ([Buffer("a", 8, 0, 2), Buffer("t", 8, 0, 1, 1, above="a"),
      Buffer("u", 8, 0, 1, 1, above="a")], "another tail"),
    ([Buffer("a", 8, 0, 2), Buffer("t", 8, 0, 1, 1, above="a"),
      Buffer("u", 8, 0, 1, 1, above="t")], "a tail itself"),
])
def test_bad_tails_rejected(bad, message):
    for strategy in ("best", "exact"):
        with pytest.raises(PlanError, match=message):
            plan(bad, strategy)


# --- memory.png -----------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("n", [5, 300])
def test_plot_plan_writes_png(tmp_path, n):
    buffers = random_buffers(n, seed=n, n_steps=max(n, 10))
    buffers += [Buffer(f"scratch_step{i}", 2000 + i, i, i) for i in range(3)]
    p = plan(buffers)
    out = plot_plan(buffers, p, tmp_path / "sub" / "memory.png", title="test",
                    names={buffers[0].name: "first"})
    assert out.is_file() and out.stat().st_size > 5000
    assert png_size(out) == (1200, 600)


def test_plot_plan_empty(tmp_path):
    out = plot_plan([], plan([]), tmp_path / "empty.png")
    assert png_size(out) == (1200, 600)
