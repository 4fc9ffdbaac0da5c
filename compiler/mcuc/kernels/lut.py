"""lut reference: every int8 -> int8 elementwise function (GELU, tanh, ...) is a table.

make_table is where the float function meets quantization, once, at compile time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, round_half_away
from mcuc.kernels.registry import Field, KernelDef, register


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    table = np.asarray(p["table"], dtype=np.int8)
    return table[x[: p["size"]].astype(np.int64) + 128]


def make_table(
    fn: Callable[[np.ndarray], np.ndarray], s_in: float, zp_in: int, s_out: float, zp_out: int
) -> np.ndarray:
    """table[q + 128] = clamp(round(fn(s_in * (q - zp_in)) / s_out) + zp_out), halves away.

    fn takes and returns float64 arrays (vectorised).
    """
    q = np.arange(-128, 128, dtype=np.int64)
    real = np.asarray(fn(s_in * (q - zp_in).astype(np.float64)), dtype=np.float64)
    # Clip before the int cast: anything past +-256 clamps the same way after + zp_out.
    v = np.clip(round_half_away(real / s_out), -256, 256).astype(np.int64)
    return clamp_s8(v + zp_out)


KERNEL = register(
    KernelDef(
        name="lut",
        c_func="mcuc_lut_s8",
        c_params_type="mcuc_lut_params_t",
        fields=(Field("size", "int32"), Field("table", "int8[]")),
        n_inputs=1,
        ref=ref,
        inplace_ok=True,
        macs=lambda p: 0,  # elementwise: only GEMM-like kernels count MACs
    )
)
