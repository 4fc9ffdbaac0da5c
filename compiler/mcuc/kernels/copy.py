"""copy reference: one strided gather/scatter kernel for every data-movement op.

Transpose, slice, gather of one index, split and each part of a concat are all an
ndim-dimensional index space read at (in_offset, in_strides) and written at
(out_offset, out_strides), with an optional requantization when the scales differ.

Unlike the other kernels copy writes only part of y (a concat is several copies into
one buffer), so ref takes the existing output buffer as `out` and updates it in place;
without `out` it returns a fresh zero buffer just large enough for the written indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcuc.kernels.fixedpoint import clamp_s8, requantize
from mcuc.kernels.registry import Field, KernelDef, register

MAX_DIMS = 6


def _indices(shape: Sequence[int], strides: Sequence[int], offset: int) -> np.ndarray:
    idx = np.full((1,) * len(shape), offset, dtype=np.int64)
    for k, (n, s) in enumerate(zip(shape, strides, strict=True)):
        ax = np.arange(n, dtype=np.int64) * s
        idx = idx + ax.reshape((1,) * k + (n,) + (1,) * (len(shape) - k - 1))
    return idx.reshape(-1)


def index_maps(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(source index, destination index) of every element a copy with params `p` moves,
    in the kernel's order: what ref does, for passes that compose copies into views."""
    nd = p["ndim"]
    shape = [int(v) for v in p["shape"][:nd]]
    src = _indices(shape, [int(v) for v in p["in_strides"][:nd]], p["in_offset"])
    dst = _indices(shape, [int(v) for v in p["out_strides"][:nd]], p["out_offset"])
    return src, dst


def ref(p: dict, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    src, dst = index_maps(p)
    v = x[src]
    if p["requant"]:
        r = requantize(v.astype(np.int64) - p["x_zp"], p["mult"], p["shift"])
        v = clamp_s8(p["y_zp"] + r)
    if out is None:
        out = np.zeros(int(dst.max(initial=-1)) + 1, dtype=np.int8)
    out[dst] = v
    return out


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides of `shape`."""
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * int(shape[k + 1])
    return strides


def make_transpose(shape: Sequence[int], perm: Sequence[int]) -> dict[str, object]:
    """Index-space fields for y = x.transpose(perm), both contiguous (identity f)."""
    if len(shape) > MAX_DIMS:
        raise ValueError(f"copy supports at most {MAX_DIMS} dims")
    in_strides = contiguous_strides(shape)
    out_shape = [int(shape[a]) for a in perm]
    out_strides = contiguous_strides(out_shape)
    # Iterate in output order: dim k walks x along axis perm[k].
    return {
        "ndim": len(shape),
        "shape": out_shape,
        "in_strides": [in_strides[a] for a in perm],
        "out_strides": out_strides,
        "in_offset": 0, "out_offset": 0,
        "requant": 0, "x_zp": 0, "y_zp": 0, "mult": 0, "shift": 0,
    }


KERNEL = register(
    KernelDef(
        name="copy",
        c_func="mcuc_copy_s8",
        c_params_type="mcuc_copy_params_t",
        fields=(
            Field("ndim", "int32"),
            Field("shape", "int32[6]"),
            Field("in_strides", "int32[6]"),
            Field("out_strides", "int32[6]"),
            *(
                Field(n, "int32")
                for n in ("in_offset", "out_offset", "requant", "x_zp", "y_zp", "mult", "shift")
            ),
        ),
        n_inputs=1,
        ref=ref,
        writes_through=True,
        macs=lambda p: 0,  # data movement: only GEMM-like kernels count MACs
    )
)
