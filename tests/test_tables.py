"""Every lowered function table against independent math.

The C kernels and the numpy reference read the same tables, so a wrong table (GELU from
erf(x/2), a sign flip in Sigmoid, a wrong exp base) passes every bit-exactness test. Here
each table is built the way the compiler builds it -- a one-node graph through `lower()` --
and every entry is checked against `math` / torch, quantized by the spec:

    table[q + 128] = clamp(round(f(s_in * (q - zp_in)) / s_out) + zp_out, -128, 127)

The check is that each entry is a nearest rounding of the exact value (at most half an
LSB away after clamping), which implies the 1-LSB bound and also catches an off-by-one
zero point, which a plain 1-LSB bound would let through.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mcuc.ir.graph import Graph, Node, Tensor
from mcuc.kernels import attention as k_att
from mcuc.kernels import rescale as k_rescale
from mcuc.kernels import softmax as k_softmax
from mcuc.quant.calibrate import QGraph
from mcuc.quant.qparams import SOFTMAX_OUT, QParams
from mcuc.schedule.lower import lower

HALF = 0.5 + 1e-6  # a correct rounding is within half an LSB; slack for float64 noise
QS = np.arange(-128, 128)


def _gelu_erf(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    return float(torch.nn.functional.gelu(t, approximate="none")[0])


def _gelu_tanh(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    return float(torch.nn.functional.gelu(t, approximate="tanh")[0])


def _sigmoid(x: float) -> float:
    return float(torch.sigmoid(torch.tensor([x], dtype=torch.float64))[0])


# IR op, its attrs, the independent float function, and the function's range (for
# output qparams a calibrator would choose).
FUNCS: dict[str, tuple[str, dict, object, tuple[float, float]]] = {
    "gelu_erf": ("Gelu", {"approximate": "none"}, _gelu_erf, (-0.17, math.inf)),
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}, _gelu_tanh, (-0.17, math.inf)),
    "gelu_default": ("Gelu", {}, _gelu_erf, (-0.17, math.inf)),  # no attr means erf
    "sigmoid": ("Sigmoid", {}, _sigmoid, (0.0, 1.0)),
    "tanh": ("Tanh", {}, math.tanh, (-1.0, 1.0)),
    "erf": ("Erf", {}, math.erf, (-1.0, 1.0)),
    "relu": ("Relu", {}, lambda x: max(x, 0.0), (0.0, math.inf)),
}


def _cases(func: str) -> list[tuple[QParams, QParams]]:
    """(input, output) qparams: fixed extremes plus seeded random pairs.

    Fixed: a tiny input scale (the function near 0 only), a huge one (saturated tails),
    and output qparams matched to the function's range, as calibration would pick them.
    Random: log-uniform scales over 1e-4..2 and any zero points, so that some tables
    saturate most entries and others resolve fine detail.
    """
    lo_f, hi_f = FUNCS[func][3]

    def matched(q_in: QParams) -> QParams:
        x_lo, x_hi = q_in.scale * (-128 - q_in.zero_point), q_in.scale * (127 - q_in.zero_point)
        ys = [FUNCS[func][2](float(x)) for x in np.linspace(x_lo, x_hi, 513)]
        return QParams.from_range(max(min(ys), lo_f), min(max(ys), hi_f))

    fixed_in = [QParams(1e-4, 0), QParams(0.5, -20), QParams(0.05, 0), QParams(8 / 255, -90)]
    cases = [(q, matched(q)) for q in fixed_in]
    rng = np.random.default_rng(sum(map(ord, func)))
    for _ in range(4):
        q_in = QParams(float(10 ** rng.uniform(-4, 0.3)), int(rng.integers(-128, 128)))
        q_out = QParams(float(10 ** rng.uniform(-4, 0.3)), int(rng.integers(-128, 128)))
        cases += [(q_in, q_out), (q_in, matched(q_in))]
    return cases


def _lowered(op: str, attrs: dict, q_in: QParams, q_out: QParams, n: int = 4):
    """The schedule the compiler makes for a graph of one `op` node with these qparams."""
    g = Graph(tensors={"x": Tensor("x", (1, n)), "y": Tensor("y", (1, n))},
              nodes=[Node(op, ["x"], ["y"], dict(attrs), name="f")],
              inputs=["x"], outputs=["y"])
    # Without token-overwrite the output gets its own buffer (in place, a one-node model's
    # output would be its input, which lower() rejects).
    return lower(QGraph(g, {"x": q_in, "y": q_out}), disabled=("token-overwrite",))


def _table_of(op: str, attrs: dict, q_in: QParams, q_out: QParams) -> np.ndarray:
    (step,) = _lowered(op, attrs, q_in, q_out).steps
    assert step.kernel == "lut"
    table = np.asarray(step.params["table"])
    assert table.shape == (256,) and table.dtype == np.int8
    return table.astype(np.int64)


def _exact(f, q_in: QParams, q_out: QParams) -> np.ndarray:
    """f on every int8 input, in output LSBs before rounding, clamped to the int8 range."""
    real = np.array([f(q_in.scale * (int(q) - q_in.zero_point)) for q in QS])
    return np.clip(real / q_out.scale + q_out.zero_point, -128.0, 127.0)


def _assert_rounded(table: np.ndarray, exact: np.ndarray, what: str,
                    index: str = "q", first: int = -128) -> None:
    err = np.abs(table - exact)
    k = int(np.argmax(err))
    assert err[k] <= HALF, (f"{what}: entry {index}={k + first} is {table[k]}, "
                            f"exact {exact[k]:.4f} ({err[k]:.3f} LSB off)")


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_unary_table_matches_math(func: str) -> None:
    op, attrs, f, _ = FUNCS[func]
    cases = _cases(func)
    assert len(cases) >= 5
    spans = []
    for q_in, q_out in cases:
        table = _table_of(op, attrs, q_in, q_out)
        _assert_rounded(table, _exact(f, q_in, q_out), f"{func} in={q_in} out={q_out}")
        spans.append(int(table.max() - table.min()))
    # The cases are not all degenerate: most tables use a good part of the int8 range.
    assert sum(s >= 64 for s in spans) >= len(cases) // 2, spans


@pytest.mark.parametrize("scale", [1e-4, 1e-3, 0.01, 0.0457, 0.1, 0.37, 1.0, 4.0])
def test_softmax_exp_table_matches_math(scale: float) -> None:
    """exp_table[d] = exp(-scale * d) in 2^20 fixed point, as lowered for a Softmax."""
    s = _lowered("Softmax", {"axis": -1}, QParams(scale, 3), SOFTMAX_OUT, n=8)
    (step,) = s.steps
    table = np.asarray(step.params["exp_table"])
    assert step.kernel == "softmax" and table.shape == (256,) and table.dtype == np.uint32
    exact = np.array([math.exp(-scale * d) * 2.0**20 for d in range(256)])
    _assert_rounded(table.astype(np.int64), exact, f"exp table, scale {scale}", "d", 0)


@pytest.mark.parametrize("seed", range(6))
def test_softmax_output_within_one_lsb(seed: int) -> None:
    """The whole int8 softmax (table, row sum, division) against torch.softmax."""
    rng = np.random.default_rng(seed)
    scale = float(10 ** rng.uniform(-2.5, 0))
    zp = int(rng.integers(-128, 128))
    rows, cols = 16, int(rng.integers(2, 70))
    x = rng.integers(-128, 128, size=rows * cols).astype(np.int8)
    x[:cols] = x[0]  # a row of equal logits
    (step,) = _lowered("Softmax", {"axis": -1}, QParams(scale, zp), SOFTMAX_OUT,
                       n=rows * cols).steps
    step.params.update(rows=rows, cols=cols)
    got = SOFTMAX_OUT.dequantize(k_softmax.ref(step.params, x))
    real = torch.tensor(scale * (x.astype(np.float64) - zp)).reshape(rows, cols)
    want = torch.softmax(real, dim=-1).numpy().reshape(-1)
    err = np.abs(got - want) / SOFTMAX_OUT.scale
    assert err.max() <= 1.0 + 1e-9, (seed, scale, cols, err.max())


@pytest.mark.parametrize("seed", range(6))
def test_rescale_table_matches_math(seed: int) -> None:
    """The table attention reads a scaled q/k/v through: y = c * x, requantized."""
    rng = np.random.default_rng(100 + seed)
    s_x, s_y = (float(10 ** rng.uniform(-3, 0)) for _ in range(2))
    zp_x, zp_y = (int(rng.integers(-128, 128)) for _ in range(2))
    c = float(rng.choice([-1, 1]) * 10 ** rng.uniform(-1.5, 1))
    params = {"x_zp": zp_x, "y_zp": zp_y, **k_rescale.make_params(s_x, s_y, c)}
    table = k_att.table_of("rescale", params).astype(np.int64)
    exact = _exact(lambda v: c * v, QParams(s_x, zp_x), QParams(s_y, zp_y))
    # A multiplier below 1 rounds twice (to 2^-e, then to an integer: gemmlowp's and TFLM's
    # requantization), which can add up to half of 2^-e; the 31-bit multiplier adds ~1e-7.
    e = -params["shift"]
    bound = 0.5 + (0.5 * 2.0**-e if e > 0 else 0.0) + 1e-5
    err = np.abs(table - exact)
    assert err.max() <= bound, (seed, float(err.max()), bound)
