"""Index arithmetic for data-movement ops, all expressed as one strided copy kernel."""

from __future__ import annotations

from mcuc import McucError

MAX_DIMS = 6


def strides_of(shape) -> list[int]:
    """Row-major element strides."""
    st, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        st[i] = acc
        acc *= int(shape[i])
    return st


def transpose_is_view(shape, perm) -> bool:
    """A transpose that keeps the order of the non-unit axes moves no bytes."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def slice_view(shape, attrs: dict) -> tuple[list[int], list[int], int]:
    """(out shape, input strides per out axis, input offset) of an ONNX Slice."""
    rank = len(shape)
    starts, ends = list(attrs["starts"]), list(attrs["ends"])
    axes = list(attrs.get("axes") or range(len(starts)))
    steps = list(attrs.get("steps") or [1] * len(starts))
    in_st = strides_of(shape)
    out_shape, strides, offset = list(shape), list(in_st), 0
    for s, e, a, k in zip(starts, ends, axes, steps, strict=True):
        a %= rank
        if k == 0:
            raise McucError("Slice with step 0")
        big = 2**62
        start, stop, step = slice(max(min(s, big), -big), max(min(e, big), -big), k).indices(
            shape[a])
        n = len(range(start, stop, step))
        out_shape[a] = n
        strides[a] = in_st[a] * step
        offset += start * in_st[a]
    return out_shape, strides, offset


def _merge(shape, in_st, out_st) -> tuple[list[int], list[int], list[int]]:
    """Drop unit axes and merge axes contiguous in both input and output."""
    dims = [(int(n), int(a), int(b)) for n, a, b in zip(shape, in_st, out_st, strict=True)
            if n != 1]
    merged: list[tuple[int, int, int]] = []
    for n, a, b in dims:
        if merged:
            pn, pa, pb = merged[-1]
            if pa == a * n and pb == b * n:
                merged[-1] = (pn * n, a, b)
                continue
        merged.append((n, a, b))
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def copy_params(shape, in_strides, in_offset: int, out_strides, out_offset: int) -> dict:
    """Parameters of mcuc_copy_s8 (identity requantization; callers may override)."""
    if any(int(n) == 0 for n in shape):
        raise McucError(f"empty tensor of shape {list(shape)} in a copy")
    sh, ist, ost = _merge(shape, in_strides, out_strides)
    if len(sh) > MAX_DIMS:
        raise McucError(f"copy over {len(sh)} dimensions; the runtime supports {MAX_DIMS}")
    pad = MAX_DIMS - len(sh)
    return {
        "ndim": len(sh), "shape": sh + [1] * pad, "in_strides": ist + [0] * pad,
        "out_strides": ost + [0] * pad, "in_offset": int(in_offset),
        "out_offset": int(out_offset), "requant": 0, "x_zp": 0, "y_zp": 0, "mult": 0,
        "shift": 0,
    }
