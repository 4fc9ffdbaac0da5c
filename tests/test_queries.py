"""Attention writing its output over its queries (schedule/queries.py).

The outputs of these schedules against the reference with every technique off, and the
generated C against the reference, are checked for random ViTs in test_tokenwise.py
(the pass is part of "token-overwrite"). Here: where the pass puts things (each output
element exactly on its query element, consumers reading the rows apart), that it fires
for both encoders, what it saves, and that it leaves the schedule alone when something
else still needs the queries.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mcuc import memory
from mcuc.models.vit import ViTConfig, build_vit
from mcuc.pipeline import load_graph
from mcuc.quant.calibrate import calibrate
from mcuc.schedule import passes
from mcuc.schedule.lower import lower
from mcuc.schedule.queries import overwrite_queries, root_index
from mcuc.schedule.schedule import Operand, Schedule

from helpers import compile_random


def _placed(s: Schedule) -> list[int]:
    """Attention steps whose output lives over their queries (checked element-wise)."""
    out = []
    for a, st in enumerate(s.steps):
        if st.kernel != "attention":
            continue
        q, o, p = st.inputs[0].name, st.output, st.params
        if s.root(o)[0] != s.root(q)[0]:
            continue
        assert np.array_equal(root_index(s, o, p, "o"), root_index(s, q, p, "q"))
        for slot, op in (("k", st.inputs[1]), ("v", st.inputs[2])):
            if s.root(op.name)[0] == s.root(q)[0]:
                assert not np.intersect1d(root_index(s, op.name, p, slot),
                                          root_index(s, q, p, "q")).size
        readers = [st2 for st2 in s.steps[a + 1:]
                   if o in [op.name for op in st2.inputs if op.kind == "buf"]]
        assert readers and all(r.kernel == "tokenwise" and r.inputs[0].name == o
                               and r.params["x_rs"] == p["q_rs"] for r in readers)
        out.append(a)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_outputs_land_on_their_queries(seed: int) -> None:
    cfg, c = compile_random(seed)
    n_att = sum(st.kernel == "attention" for st in c.schedule.steps)
    assert n_att == cfg.depth
    assert len(_placed(c.schedule)) == cfg.depth, (cfg, [st.name for st in c.schedule.steps])


def _qgraph(cfg: ViTConfig):
    torch.manual_seed(0)
    shape = (1, cfg.in_chans, cfg.img_size, cfg.img_size)
    graph = load_graph(build_vit(cfg).eval(), shape)
    return calibrate(graph, np.random.default_rng(0).random((4,) + shape[1:], dtype=np.float32))


def _lower_with(qg, monkeypatch: pytest.MonkeyPatch, keep) -> Schedule:
    """`lower` with all techniques on, running only the passes `keep` selects."""
    with monkeypatch.context() as m:
        m.setattr(passes, "PASSES", [(t, fn) for t, fn in passes.PASSES if keep(fn)])
        return lower(qg, ())


def _without_it(qg, monkeypatch: pytest.MonkeyPatch) -> Schedule:
    return _lower_with(qg, monkeypatch, lambda fn: fn is not overwrite_queries)


def _fused(qg, monkeypatch: pytest.MonkeyPatch) -> Schedule:
    """The schedule as overwrite_queries gets it: the passes before it only."""
    names = [fn for _, fn in passes.PASSES]
    before = names[:names.index(overwrite_queries)]
    return _lower_with(qg, monkeypatch, lambda fn: fn in before)


@pytest.mark.parametrize("encoder", ["mcuc", "torch"])
def test_peak_drops_from_five_to_four_nd(encoder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """p4 d64 on 28x28 (50 tokens): residual + qkv + output = 5ND before, 4ND after."""
    cfg = ViTConfig(img_size=28, in_chans=1, patch=4, dim=64, depth=2, heads=2, mlp_ratio=2,
                    encoder=encoder)
    n_d = 50 * 64
    qg = _qgraph(cfg)
    full = lower(qg, ())
    a_full = memory.plan(full.liveness()).arena_bytes
    a_without = memory.plan(_without_it(qg, monkeypatch).liveness()).arena_bytes
    assert 5 * n_d <= a_without <= 5 * n_d + 128
    assert 4 * n_d <= a_full <= 4 * n_d + 128, (a_full, a_without)
    assert len(_placed(full)) == cfg.depth


def _first_attention(s: Schedule) -> int:
    return next(a for a, st in enumerate(s.steps) if st.kernel == "attention")


CFG = ViTConfig(img_size=28, in_chans=1, patch=7, dim=32, depth=1, heads=2, mlp_ratio=2)


def test_fires_on_the_plain_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fused(_qgraph(CFG), monkeypatch)
    a = _first_attention(s)
    out = overwrite_queries(s)
    assert out.buffers[s.steps[a].output].parent is not None
    assert s.buffers[s.steps[a].output].parent is None  # the input is not modified


def test_not_when_a_reader_takes_it_as_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fused(_qgraph(CFG), monkeypatch)
    a = _first_attention(s)
    o = s.steps[a].output
    j = next(j for j, st in enumerate(s.steps) if st.inputs and st.inputs[0].name == o)
    steps = list(s.steps)
    steps[j] = replace(steps[j], inputs=[steps[j].inputs[0], Operand("buf", o)])
    out = overwrite_queries(replace(s, steps=steps))
    assert out.buffers[o].parent is None


def test_not_when_keys_share_the_queries_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fused(_qgraph(CFG), monkeypatch)
    a = _first_attention(s)
    st = s.steps[a]
    steps = list(s.steps)
    steps[a] = replace(st, params=dict(st.params, k_off=st.params["q_off"]))
    out = overwrite_queries(replace(s, steps=steps))
    assert out.buffers[st.output].parent is None


def test_not_when_the_queries_are_read_later(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fused(_qgraph(CFG), monkeypatch)
    a = _first_attention(s)
    st = s.steps[a]
    q = st.inputs[0].name
    j = next(j for j in range(a + 1, len(s.steps)) if s.steps[j].kernel == "tokenwise")
    steps = list(s.steps)
    later = steps[j]
    steps[j] = replace(later, inputs=[later.inputs[0], Operand("buf", q)])
    out = overwrite_queries(replace(s, steps=steps))
    assert out.buffers[st.output].parent is None


def test_low_rank_blocks_too() -> None:
    """A low-rank projection's first linear (no residual add) reads the output too."""
    from mcuc.nas.cost import fast_schedule
    from mcuc.nas.space import SubnetConfig

    cfg = SubnetConfig(resolution=28, patch=4, dim=64, depth=3, heads=(4, 2, 1),
                       mlp_ratio=(2.0, 1.0, 1.5), lowrank=(0.25, 1.0, 0.5))
    s = fast_schedule(cfg)
    assert len(_placed(s)) == cfg.depth
    # 4ND, plus the [N, r] input of the r -> 3D linear that ends block 3's qkv (r = 32)
    assert memory.plan(s.liveness()).arena_bytes <= 4 * 50 * 64 + 50 * 32 + 64


def _expect_x_free(s: Schedule, i: int) -> bool:
    """x_free recomputed from the steps: no later step touches x's root, the root is not
    the model's input or output, and x's bytes overlap neither y's nor r's."""
    st = s.steps[i]
    x, r, y = st.inputs[0].name, st.inputs[1].name, st.output
    root, off = s.root(x)
    if root in (s.root(s.input_buffer)[0], s.root(s.output_buffer)[0]):
        return False
    for later in s.steps[i + 1:]:
        names = [op.name for op in later.inputs if op.kind == "buf"] + [later.output]
        if any(s.root(name)[0] == root for name in names):
            return False
    for other in (y, r):
        o_root, o_off = s.root(other)
        if o_root == root and off < o_off + s.buffers[other].size \
                and o_off < off + s.buffers[x].size:
            return False
    return True


@pytest.mark.parametrize("seed", range(6))
def test_x_free_marks_dying_chain_inputs(seed: int) -> None:
    """The token-overwrite pass marks x_free exactly where the chain input dies with its
    bytes apart from y and r (tokenwise.c then stages row pairs there); at least one step
    per block (the attention projection, reading its rows apart) is among them."""
    cfg, c = compile_random(seed)
    s = c.schedule
    marked = 0
    for i, st in enumerate(s.steps):
        if st.kernel != "tokenwise":
            continue
        assert st.params["x_free"] == int(_expect_x_free(s, i)), (seed, st.name)
        marked += st.params["x_free"]
    assert marked >= cfg.depth
