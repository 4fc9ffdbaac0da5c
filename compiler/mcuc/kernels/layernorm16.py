"""layernorm16 reference: the layernorm kernel (same params, same integer formula) on an
int16 input, int8 output (A16: the residual stream kept in int16, quant/wide.py).

The formula is layernorm's, evaluated in int64: with |x| <= 32768 and cols <= MAX_COLS,
|d| <= 2 cols 2^15, sum d^2 <= cols^3 2^32 < 2^62 and |d gamma| < 2^63, so neither the
reference nor the C overflows. The input is bytes (kernels/wide16.py).
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import layernorm as k_ln
from mcuc.kernels import wide16
from mcuc.kernels.registry import KernelDef, register

MAX_COLS = 512  # 512^3 2^32 = 2^59; and |d| <= 2^25 times |gamma| < 2^31 stays < 2^63


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    if p["cols"] > MAX_COLS:
        raise ValueError(f"layernorm16 supports at most {MAX_COLS} columns")
    xv = wide16.load(x, 1, p["rows"] * p["cols"])
    return k_ln.ref(p, xv)


KERNEL = register(
    KernelDef(
        name="layernorm16",
        c_func="mcuc_layernorm16_a16",
        c_params_type="mcuc_layernorm16_params_t",
        fields=k_ln.PARAM_FIELDS,
        n_inputs=1,
        ref=ref,
        macs=lambda p: 0,
    )
)
