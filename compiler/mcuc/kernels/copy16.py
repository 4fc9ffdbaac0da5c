"""copy16 reference: copy's strided gather/scatter where x and/or y are int16 (A16).

Same index space and requantization as copy (kernels/copy.py); x_wide and y_wide say
which side is int16 (bytes in, bytes out: kernels/wide16.py). The requantization of an
int8 input onto an int16 grid has a positive shift (the int16 scale is finer), which
requantize saturates as C does.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import copy as k_copy
from mcuc.kernels import wide16
from mcuc.kernels.fixedpoint import requantize
from mcuc.kernels.registry import Field, KernelDef, register


def ref(p: dict, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    src, dst = k_copy.index_maps(p)
    xv = wide16.load(x, p["x_wide"], int(src.max(initial=-1)) + 1)
    v = xv[src]
    if p["requant"]:
        v = p["y_zp"] + requantize(v - p["x_zp"], p["mult"], p["shift"])
    n_out = int(dst.max(initial=-1)) + 1
    if out is None:
        out = np.zeros(n_out * (2 if p["y_wide"] else 1), dtype=np.int8)
    out = np.array(out, dtype=np.int8)
    if p["y_wide"]:
        out.view("<i2")[dst] = wide16.clamp(v, 1)
    else:
        out[dst] = wide16.clamp(v, 0)
    return out


KERNEL = register(
    KernelDef(
        name="copy16",
        c_func="mcuc_copy16_a16",
        c_params_type="mcuc_copy16_params_t",
        fields=(
            Field("ndim", "int32"),
            Field("shape", "int32[6]"),
            Field("in_strides", "int32[6]"),
            Field("out_strides", "int32[6]"),
            *(
                Field(n, "int32")
                for n in ("in_offset", "out_offset", "requant", "x_zp", "y_zp", "mult",
                          "shift", "x_wide", "y_wide")
            ),
        ),
        n_inputs=1,
        ref=ref,
        writes_through=True,
        macs=lambda p: 0,
    )
)
