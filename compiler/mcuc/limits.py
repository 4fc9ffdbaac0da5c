"""Limits and checks of untrusted input: model files, `.npy` arrays, counts from the CLI.

Everything mcuc reads from a user is checked here before it is allocated or computed
on, so that a hostile or careless file ends in one `McucError` line instead of an
out-of-memory kill, a traceback, or a confident answer computed from NaN. Each limit
is a named constant with the reason for its value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.text import one_line

# --- limits ----------------------------------------------------------------------------

# A ViT input is rank 4 (N, C, H, W); rank 8 leaves room for any reshape a model does.
MAX_RANK = 8
# No dimension of an MCU model comes near this; 2^20 stops absurd dims (2^62) early.
MAX_DIM = 1 << 20
# Elements of one model input: 4 Mi int8 is 4 MiB, 8x the SRAM of the biggest board here.
MAX_INPUT_ELEMENTS = 1 << 22
# Elements of one activation in the float interpreter (shape inference, calibration):
# 16 Mi float32 is 64 MiB, 16x the whole SRAM of the biggest board here.
MAX_ACTIVATION_ELEMENTS = 1 << 24
# Bytes of one weight tensor, and of all of them: flash of an MCU is a few MiB at most.
MAX_WEIGHT_BYTES = 64 << 20
MAX_WEIGHTS_TOTAL_BYTES = 256 << 20
# Size of a model file (weights as float32 are 4x the int8 flash image).
MAX_MODEL_FILE_BYTES = 1 << 30
# Nodes of a graph: MCU-sized ViTs have a few hundred; more is a corrupt or hostile file.
MAX_NODES = 20000
# |weight| of a float initializer or constant: trained weights are O(1); past 1e8 the
# float32 interpreter overflows (squares, sums of products) and int8 scales lose meaning.
MAX_ABS_WEIGHT = 1e8
# A `.npy` file read as input or calibration data (60000 float32 3x32x32 images: 737 MB).
MAX_NPY_BYTES = 1 << 30
# Calibration images: the size of the Fashion-MNIST train split; each one is a full
# float inference, so this is already about 40 minutes (a progress bar shows it).
MAX_CALIB_IMAGES = 60000
# `mcuc demo --images`: the size of the Fashion-MNIST test split.
MAX_DEMO_IMAGES = 10000

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


# --- counts and shapes -------------------------------------------------------------------

def check_count(value: object, what: str, maximum: int, minimum: int = 1) -> int:
    """An integer option in [minimum, maximum], else one line naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise McucError(f"{what} must be an integer, not {one_line(value)}")
    if value < minimum:
        raise McucError(f"{what} must be at least {minimum}, not {value}")
    if value > maximum:
        raise McucError(f"{what} {value:,} is above the maximum of {maximum:,}")
    return int(value)


def check_shape(shape: tuple[int, ...] | list[int], what: str,
                max_elements: int = MAX_INPUT_ELEMENTS) -> tuple[int, ...]:
    """Rank, dims and element count of a shape within the limits (Python ints: no overflow)."""
    dims = tuple(int(d) for d in shape)
    if len(dims) > MAX_RANK:
        raise McucError(f"{what} has rank {len(dims)}; the limit is {MAX_RANK}")
    for d in dims:
        if d < 0 or d > MAX_DIM:
            raise McucError(f"{what} has dimension {d}; dimensions must be in "
                            f"0..{MAX_DIM:,}")
    n = math.prod(dims)
    if n > max_elements:
        raise McucError(f"{what} has shape {list(dims)} = {n:,} elements; the limit is "
                        f"{max_elements:,}")
    return dims


# --- weights ------------------------------------------------------------------------------

def check_initializer_size(name: str, dims: list[int], itemsize: int, total: int) -> int:
    """Bytes a stored tensor claims, checked before it is read; returns the new total."""
    for d in dims:
        if d < 0 or d > MAX_WEIGHT_BYTES:
            raise McucError(f"tensor '{one_line(name)}' has dimension {d}")
    if len(dims) > MAX_RANK:
        raise McucError(f"tensor '{one_line(name)}' has rank {len(dims)}; the limit is "
                        f"{MAX_RANK}")
    nbytes = math.prod(dims) * max(itemsize, 1)
    if nbytes > MAX_WEIGHT_BYTES:
        raise McucError(f"tensor '{one_line(name)}' claims {nbytes:,} bytes; the limit for "
                        f"one weight tensor is {MAX_WEIGHT_BYTES:,}")
    total += nbytes
    if total > MAX_WEIGHTS_TOTAL_BYTES:
        raise McucError(f"the model's weights exceed {MAX_WEIGHTS_TOTAL_BYTES:,} bytes")
    return total


def check_weight_values(name: str, arr: np.ndarray) -> None:
    """Float weights must be finite and of a sane magnitude (MAX_ABS_WEIGHT)."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    a = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(a.size - np.count_nonzero(finite))
        raise McucError(f"weight '{one_line(name)}' holds {bad} NaN or infinite value(s); "
                        "the model file is corrupt")
    peak = float(np.abs(a).max())
    if peak > MAX_ABS_WEIGHT:
        raise McucError(f"weight '{one_line(name)}' holds a value of magnitude {peak:.3g}, "
                        f"above the limit of {MAX_ABS_WEIGHT:.0e} (a corrupt or mis-scaled "
                        "model)")


def check_input_values(x: np.ndarray, allow_nonfinite: bool = False) -> np.ndarray:
    """A run's float input must be finite unless allowed; allowed, NaN reads as 0 and
    +-inf as the largest/smallest float, so the int8 result is defined (saturated)."""
    if x.dtype.kind != "f":
        return x
    finite = np.isfinite(x)
    if finite.all():
        return x
    if not allow_nonfinite:
        nan = int(np.count_nonzero(np.isnan(x)))
        inf = int(x.size - np.count_nonzero(finite) - nan)
        raise McucError(f"input holds {nan} NaN and {inf} infinite value(s); int8 cannot "
                        "represent them (pass --allow-nonfinite to run it anyway: NaN as "
                        "0, infinities saturated)")
    return np.nan_to_num(x, nan=0.0)


# --- .npy files ---------------------------------------------------------------------------

def read_npy(path: Path | str, what: str, max_bytes: int = MAX_NPY_BYTES) -> np.ndarray:
    """A numeric `.npy` array, its header checked before any data is read: size within
    `max_bytes` and equal to what the file holds; `.npz`, pickles and object or
    structured dtypes refused."""
    p = Path(path)
    if not p.is_file():
        raise McucError(f"{what} {one_line(p)} not found")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(6)
        if head.startswith(_ZIP_MAGIC):
            raise McucError(f"{what} {one_line(p)} is a .npz archive (zip), not a .npy array; "
                            "save one array with numpy.save")
        if head.startswith(_PICKLE_MAGIC):
            raise McucError(f"{what} {one_line(p)} is a pickle, not a .npy array; pickles "
                            "can run code and are never loaded")
        if head != b"\x93NUMPY":
            raise McucError(f"{what} {one_line(p)} is not a .npy file (bad magic)")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
        except (ValueError, OSError, SyntaxError, TypeError) as e:
            raise McucError(f"{what} {one_line(p)} has a bad .npy header: "
                            f"{one_line(e, 200)}") from None
        offset = f.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise McucError(f"{what} {one_line(p)} holds {one_line(dtype)} values; only plain "
                            "numbers are read")
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise McucError(f"{what} {one_line(p)} has dtype {dtype}; give a float or "
                            "integer array")
        if len(shape) > MAX_RANK:
            raise McucError(f"{what} {one_line(p)} has rank {len(shape)}; the limit is "
                            f"{MAX_RANK}")
        nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
        if nbytes > max_bytes:
            raise McucError(f"{what} {one_line(p)} claims shape {list(shape)} = {nbytes:,} "
                            f"bytes; the limit is {max_bytes:,}")
        if offset + nbytes != size:
            raise McucError(f"{what} {one_line(p)}: its header claims {nbytes:,} bytes of data "
                            f"but the file holds {size - offset:,} (truncated or corrupt)")
        f.seek(0)
        try:
            return np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise McucError(f"cannot read {what} {one_line(p)}: {one_line(e, 200)}") from None
