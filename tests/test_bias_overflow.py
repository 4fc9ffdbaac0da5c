"""A weighted layer whose input is nearly constant: its int32 bias must still be exact.

Seen in a searched ViT: a low-rank MLP branch that training left almost dead gave the
next linear an input scale of 1.6e-8, b / (s_x * s_w) reached 19 x 2^31 and was
clipped, and the wrong constant cost 1 point of int8 accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcuc.frontend import load_model
from mcuc.ir import interpreter
from mcuc.pipeline import compile_graph
from mcuc.quant.qparams import quantize_weighted, quantize_weights_per_channel
from mcuc.schedule import execute
from mcuc.sim.host import build_host, run_host

from helpers import input_shape, random_config, random_inputs, random_model, write_c

INT32_MAX = 2**31 - 1


def test_only_channels_whose_bias_overflows_get_a_coarser_scale() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (6, 32))
    b = np.array([0.05, -0.3, 0.0, 1e-9, 0.2, -0.01])
    s_x = 1e-8                     # a nearly dead input
    q0, s0 = quantize_weights_per_channel(w)
    plain = np.abs(b / (s_x * s0))
    assert (plain > INT32_MAX).any()          # the case the old code clipped
    q, s, bq = quantize_weighted(w, b, s_x)
    keep = plain + 32 * 255 * 127 <= INT32_MAX
    np.testing.assert_array_equal(s[keep], s0[keep])
    np.testing.assert_array_equal(q[keep], q0[keep])
    assert (s[~keep] > s0[~keep]).all()
    # the bias is exact to rounding, and no accumulator can overflow
    np.testing.assert_allclose(bq * s_x * s, b, atol=0.51 * s_x * s.max())
    assert (np.abs(bq.astype(np.int64)) + 32 * 255 * 127 <= INT32_MAX).all()
    # an ordinary input scale changes nothing
    q1, s1, _ = quantize_weighted(w, b, 0.02)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(q1, q0)


@pytest.fixture(scope="module")
def dead_branch():
    """A random ViT whose first MLP's hidden layer is all but dead (weights x 1e-7, no
    bias), so its second linear sees a tiny input scale and adds mostly its bias."""
    cfg = random_config(5)
    model = random_model(cfg, 5)
    with torch.no_grad():
        fc1, fc2 = model.blocks[0].mlp[0], model.blocks[0].mlp[2]
        fc1.weight.mul_(1e-7)
        fc1.bias.zero_()
        fc2.bias.normal_(0, 0.5)
    return cfg, load_model(model, input_shape(cfg))


def test_dead_branch_compiles_close_to_float_and_c_is_bit_exact(dead_branch, tmp_path) -> None:
    cfg, graph = dead_branch
    c = compile_graph(graph, random_inputs(cfg, 16, 1))
    write_c(c, tmp_path)
    exe = build_host(tmp_path)
    qp = c.schedule.output_qp
    for x in random_inputs(cfg, 6, 2):
        x_q = execute.quantize_input(c.schedule, x[None])
        ref = execute.run(c.schedule, x_q, c.plan)
        np.testing.assert_array_equal(run_host(exe, x_q), ref)
        want = interpreter.run(graph, {graph.inputs[0]: x[None]})[graph.outputs[0]].ravel()
        got = qp.dequantize(ref.astype(np.int8))
        spread = float(np.ptp(want)) + 1e-9
        assert np.max(np.abs(got - want)) < 0.15 * spread, (got, want)
