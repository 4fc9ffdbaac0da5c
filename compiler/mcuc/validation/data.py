"""`mcuc validate --data`: a named data set, an image folder or .npy arrays."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcuc import McucError
from mcuc.buildmeta import Build
from mcuc.text import one_line, path_line

if TYPE_CHECKING:
    pass

MAX_VALIDATE_IMAGES = 10000


def parse_data(spec: str) -> tuple[str, int | None]:
    """'fashion-mnist:200' -> ('fashion-mnist', 200), likewise an image folder's 'DIR:200';
    anything else -> (spec, None)."""
    from mcuc.datasets import NAMED_DATASETS

    name, sep, count = spec.rpartition(":")
    if sep and (name in NAMED_DATASETS or Path(name).is_dir()):
        try:
            n = int(count)
        except ValueError:
            raise McucError(f"bad --data {one_line(spec, 80)}: the count after ':' must be an "
                            "integer (e.g. fashion-mnist:1000)") from None
        return name, n
    return spec, None


def load_data(spec: str, b: Build, labels: str | Path | None = None,
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs [N, *input_shape[1:]] float32 or int8, labels int64 [N] or None, a
    description). A named data set gives its test split with labels; a folder its test
    split (or all of it); an `.npy` file holds [N, ...] inputs (float, or int8 already
    quantized), its labels an optional `.npy` of N integers."""
    from mcuc.datasets import NAMED_DATASETS, load_dataset
    from mcuc.limits import check_count, read_npy

    name, n = parse_data(spec)
    if n is None:
        n = limit
    if n is not None:
        check_count(n, "the number of images", MAX_VALIDATE_IMAGES)
    sample = tuple(b.input_shape[1:])
    if name in NAMED_DATASETS or Path(name).is_dir():
        if labels is not None:
            raise McucError("--labels goes with an .npy --data; a data set brings its own")
        if len(sample) != 3:
            raise McucError(f"data set {one_line(name, 80)} gives images; the model input is "
                            f"{list(b.input_shape)}")
        x, y, _ = load_dataset(name, "test", limit=n, size=sample[1], channels=sample[0])
        if x.shape[1:] != sample:
            raise McucError(f"data set {one_line(name, 80)} gives inputs shaped "
                            f"{list(x.shape[1:])}; the model input is {list(b.input_shape)}")
        return x, y, f"{name} test[:{len(x)}]"
    if not name.endswith(".npy"):
        raise McucError(f"--data {one_line(name, 80)} is neither a data set "
                        f"({', '.join(sorted(NAMED_DATASETS))}[:N]), a folder nor an .npy file")
    x = read_npy(name, "data file")
    if x.shape == tuple(b.input_shape) or x.shape == sample:
        x = x.reshape((1,) + sample)
    elif x.ndim == len(sample) + 2 and x.shape[1:] == tuple(b.input_shape):
        x = x.reshape((x.shape[0],) + sample)
    elif x.ndim != len(sample) + 1 or x.shape[1:] != sample:
        raise McucError(f"data file {path_line(name)} holds an array shaped {list(x.shape)}; "
                        f"expected [N, {', '.join(map(str, sample))}] for model input "
                        f"{list(b.input_shape)}")
    if len(x) == 0:
        raise McucError(f"data file {path_line(name)} holds no inputs")
    if n is not None:
        x = x[:n]
    check_count(len(x), f"inputs in {path_line(name)}", MAX_VALIDATE_IMAGES)
    if x.dtype != np.int8:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise McucError(f"data file {path_line(name)} holds NaN or infinite values")
    y = None
    if labels is not None:
        y = read_npy(labels, "labels file")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise McucError(f"labels file {path_line(labels)} must hold a 1-D integer array, "
                            f"not {y.dtype} shaped {list(y.shape)}")
        y = y[: len(x)]
        if len(y) != len(x):
            raise McucError(f"labels file {path_line(labels)} holds {len(y)} labels for "
                            f"{len(x)} inputs")
        y = y.astype(np.int64)
    return np.ascontiguousarray(x), y, f"{path_line(name)} [:{len(x)}]"
