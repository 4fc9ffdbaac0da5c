"""The numpy references' semantics (the specification test_kernels.py holds the C to):
against loop definitions, hand-computed roundings and ties, and the float computations
they approximate; the helpers that make their parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, add, copy, layernorm, linear, lut, softmax
from mcuc.kernels.fixedpoint import (
    INT32_MIN,
    quantize_multiplier,
    quantize_multipliers,
    requantize,
)


def test_conv2d_ref_matches_loop_convolution() -> None:
    # The vectorised sliding window against the definition, tap by tap.
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, 2 * 5 * 6).astype(np.int8)
    w = rng.integers(-128, 128, 3 * 2 * 3 * 3).astype(np.int8)
    bias = np.array([5, -70000, 123456], np.int32)
    mult, shift = quantize_multipliers(np.array([1e-3, 3e-4, 2e-3]))
    p = dict(c_in=2, h_in=5, w_in=6, c_out=3, h_out=3, w_out=3, kh=3, kw=3, stride_h=2,
             stride_w=2, pad_top=1, pad_left=1, x_zp=-3, y_zp=4, weights=w, bias=bias,
             mult=mult, shift=shift)
    xs = x.reshape(2, 5, 6).astype(np.int64) + 3
    wk = w.reshape(3, 2, 3, 3).astype(np.int64)
    want = np.zeros((3, 3, 3), np.int64)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                acc = int(bias[o])
                for c in range(2):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = 2 * i - 1 + ky, 2 * j - 1 + kx
                            if 0 <= iy < 5 and 0 <= ix < 6:
                                acc += int(xs[c, iy, ix] * wk[o, c, ky, kx])
                want[o, i, j] = 4 + int(requantize(acc, mult[o], shift[o]))
    got = REGISTRY["conv2d"].ref(p, x).reshape(3, 3, 3)
    assert np.array_equal(got, np.clip(want, -128, 127))
    assert len(set(got.reshape(-1).tolist())) > 5  # not a saturated, degenerate case


def test_softmax_equal_row_and_table() -> None:
    t = softmax.make_exp_table(0.1)
    assert t[0] == 2**20 and t[1] == math.floor(math.exp(-0.1) * 2**20 + 0.5)
    p = dict(rows=1, cols=4, exp_table=t)
    # four equal logits: each exactly 1/4 -> 64/256 -> -128 + 64
    assert REGISTRY["softmax"].ref(p, np.full(4, 9, np.int8)).tolist() == [-64] * 4
    assert REGISTRY["softmax"].ref(dict(p, cols=1), np.array([5], np.int8)).tolist() == [127]
    with pytest.raises(ValueError):
        REGISTRY["softmax"].ref(dict(p, cols=5000), np.zeros(5000, np.int8))


def test_softmax_rounding_hand_values() -> None:
    table = np.zeros(256, np.uint32)
    table[:2] = [2, 1]
    # e = [2, 1], sum = 3: y = -128 + (e * 256 + 1) // 3, where 257 // 3 rounds 85.67 down
    got = REGISTRY["softmax"].ref(dict(rows=1, cols=2, exp_table=table), np.array([1, 0], np.int8))
    assert got.tolist() == [-128 + 513 // 3, -128 + 257 // 3]


def test_softmax_approximates_float() -> None:
    s = 0.05
    x = np.random.default_rng(2).integers(-128, 128, 64).astype(np.int8)
    p = dict(rows=4, cols=16, exp_table=softmax.make_exp_table(s))
    got = (REGISTRY["softmax"].ref(p, x).astype(np.float64) + 128) / 256
    z = np.exp(s * x.reshape(4, 16).astype(np.float64))
    assert np.abs(got - (z / z.sum(1, keepdims=True)).reshape(-1)).max() <= 1 / 256 + 1e-9


def test_layernorm_isqrt_exact() -> None:
    r = np.random.default_rng(4).integers(0, 2**31, 5000)
    v = np.concatenate([r * r - 1, r * r, r * r + 1, np.arange(100)])
    v = np.clip(v, 0, None)
    assert layernorm.isqrt(v).tolist() == [math.isqrt(int(a)) for a in v]


def test_layernorm_rounding_hand_values() -> None:
    # Constant row, eps_q 0 -> sigma 1, d 0: y = y_zp + round_div(beta_q, 2^16), ties away.
    beta = np.array([3 << 15, -3 << 15, 1 << 15, -(1 << 15), (1 << 15) - 1], np.int32)
    p = dict(rows=1, cols=5, y_zp=1, eps_q=0, gamma_q=np.ones(5, np.int32), beta_q=beta)
    assert REGISTRY["layernorm"].ref(p, np.full(5, 7, np.int8)).tolist() == [3, -1, 2, 0, 1]
    # Two values: d = [-2, 2] * 1, var = 4, sigma = 2 -> y = round(d * g / (2 * 2^16)).
    p = dict(rows=1, cols=2, y_zp=0, eps_q=0, gamma_q=np.array([3 << 15, 3 << 15], np.int32),
             beta_q=np.zeros(2, np.int32))
    assert REGISTRY["layernorm"].ref(p, np.array([0, 2], np.int8)).tolist() == [-2, 2]


def test_layernorm_approximates_float() -> None:
    rng = np.random.default_rng(8)
    cols, s_x, s_y, zp_x, zp_y = 32, 0.05, 0.02, 3, -2
    gamma, beta = rng.uniform(0.5, 1.5, cols), rng.uniform(-0.5, 0.5, cols)
    gq, bq, eps_q = layernorm.make_params(gamma, beta, 1e-5, cols, s_x, s_y)
    x = rng.integers(-100, 100, 3 * cols).astype(np.int8)
    p = dict(rows=3, cols=cols, y_zp=zp_y, eps_q=eps_q, gamma_q=gq, beta_q=bq)
    got = REGISTRY["layernorm"].ref(p, x).astype(np.float64)
    xr = s_x * (x.reshape(3, cols).astype(np.float64) - zp_x)
    norm = (xr - xr.mean(1, keepdims=True)) / np.sqrt(xr.var(1, keepdims=True) + 1e-5)
    want = np.clip(np.round((gamma * norm + beta) / s_y) + zp_y, -128, 127).reshape(-1)
    assert np.abs(got - want).max() <= 2


def test_add_make_params_approximates_float() -> None:
    s_a, s_b, s_y = 0.03, 0.011, 0.05
    a = np.arange(-128, 128, dtype=np.int8)
    b = a[::-1].copy()
    p = dict(size=256, b_size=256, a_zp=5, b_zp=-7, y_zp=1, **add.make_params(s_a, s_b, s_y))
    got = REGISTRY["add"].ref(p, a, b).astype(np.float64)
    real = s_a * (a.astype(np.float64) - 5) + s_b * (b.astype(np.float64) + 7)
    assert np.abs(got - np.clip(np.round(real / s_y) + 1, -128, 127)).max() <= 1


def test_lut_make_table() -> None:
    t = lut.make_table(np.tanh, 0.05, 10, 1 / 128, 0)
    assert t.dtype == np.int8 and t.size == 256
    assert t[10 + 128] == 0 and t[0] == round(math.tanh(0.05 * (-128 - 10)) * 128)
    t = lut.make_table(lambda v: v, 1.0, 0, 2.0, 0)  # exact halves: away from zero
    assert t[3 + 128] == 2 and t[-3 + 128] == -2 and t[255] == 64
    x = np.array([-128, 0, 127], np.int8)
    assert REGISTRY["lut"].ref(dict(size=3, table=t), x).tolist() == [-64, 0, 64]


def test_copy_transpose_and_scalar() -> None:
    x = np.arange(24, dtype=np.int8)
    p = copy.make_transpose((2, 3, 4), (2, 0, 1))
    got = REGISTRY["copy"].ref(p, x)
    assert np.array_equal(got, x.reshape(2, 3, 4).transpose(2, 0, 1).reshape(-1))
    scalar = dict(p, ndim=0, in_offset=5, out_offset=2)
    assert REGISTRY["copy"].ref(scalar, x, out=np.zeros(4, np.int8)).tolist() == [0, 0, 5, 0]


def test_linear_helpers() -> None:
    mult, shift = linear.make_requant(0.02, np.array([0.001, 0.5]), 0.1)
    assert mult.dtype == np.int32 and (mult[0], shift[0]) == quantize_multiplier(0.0002)
    b = linear.quantize_bias(np.array([1.0, -1e9]), 0.02, np.array([0.01, 0.01]))
    assert b.tolist() == [5000, INT32_MIN]


def test_macs() -> None:
    p = dict(rows=197, k=192, n=576)
    assert REGISTRY["linear"].macs(p) == 197 * 192 * 576
    assert REGISTRY["matmul"].macs(dict(batch=3, m=197, k=64, n=197)) == 3 * 197 * 64 * 197
    assert REGISTRY["softmax"].macs(dict(rows=1, cols=1)) == 0
