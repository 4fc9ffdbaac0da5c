"""Datasets for training, evaluation and int8 calibration.

Images come back as float32 in [0, 1], shaped [N, C, H, W]. The bundled models contain no
normalisation layer, so [0, 1] is exactly what they were trained on and what the generated
C code expects after its own uint8 -> int8 input quantisation; do not add mean/std scaling
here or the compiled model and the float model will disagree.

Fashion-MNIST is read from the Debian package `dataset-fashion-mnist` (gzip IDX files).
`DATASETS` maps a dataset name to its loader, so an image-folder dataset can be added later
without touching callers.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from mcuc import McucError

Split = Literal["train", "test"]
Loader = Callable[..., tuple[np.ndarray, np.ndarray]]

DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "MCUC_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes; the only one Fashion-MNIST uses.


def fashion_mnist_dir(root: Path | str | None = None) -> Path:
    """The directory holding the IDX files: `root`, else $MCUC_FASHION_MNIST_DIR, else Debian's."""
    if root is not None:
        return Path(root)
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else DEFAULT_FASHION_MNIST_DIR


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse a gzip'd IDX file of unsigned bytes, checking the header against the payload.

    The header is: two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension. A truncated or mislabelled file raises McucError
    rather than yielding a silently mis-shaped array.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise McucError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4:
        raise McucError(f"{path}: too short to be an IDX file")
    zero, dtype_code, file_ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != _IDX_UBYTE or file_ndim != ndim:
        raise McucError(
            f"{path}: bad IDX magic 0x{int.from_bytes(data[:4], 'big'):08x} "
            f"(expected unsigned-byte data with {ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise McucError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise McucError(
            f"{path}: IDX header promises {expected} bytes for shape {dims}, "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(
    split: Split = "train", limit: int | None = None, root: Path | str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as (images float32 [N,1,28,28] in [0,1], labels int64 [N]).

    `limit` keeps the first N examples (file order), which is deterministic and cheap.
    """
    if split not in _FILES:
        raise McucError(f"unknown Fashion-MNIST split {split!r} (use 'train' or 'test')")
    if limit is not None and limit < 0:
        raise McucError(f"limit must be >= 0, not {limit}")
    base = fashion_mnist_dir(root)
    img_name, lbl_name, count = _FILES[split]
    img_path, lbl_path = base / img_name, base / lbl_name
    missing = [p for p in (img_path, lbl_path) if not p.is_file()]
    if missing:
        raise McucError(
            f"Fashion-MNIST not found ({missing[0]} is missing): run "
            f"`apt-get install dataset-fashion-mnist` or set {FASHION_MNIST_ENV}"
        )
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lbl_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise McucError(
            f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    if images.shape[1:] != (28, 28):
        raise McucError(f"Fashion-MNIST {split}: images are {images.shape[1:]}, not 28x28")
    if images.shape[0] != count:
        raise McucError(f"Fashion-MNIST {split}: {images.shape[0]} examples, expected {count}")
    if labels.max(initial=0) > 9:
        raise McucError(f"Fashion-MNIST {split}: label {int(labels.max())} out of range 0..9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return np.ascontiguousarray(x), labels.astype(np.int64)


DATASETS: dict[str, Loader] = {
    "fashion-mnist": load_fashion_mnist,
}


def load_calibration(
    spec: str | Path, input_shape: Sequence[int], count: int = 64, seed: int = 0
) -> np.ndarray:
    """Calibration inputs for int8 quantisation, float32 shaped [N, *input_shape[1:]].

    `spec` is a registered dataset name (draws `count` training images with a seeded RNG,
    so the same seed always yields the same quantisation) or a path to a `.npy` array
    shaped [N, *input_shape[1:]] or [N, *input_shape] (a batch of batch-1 inputs).
    A `.npy` file is used whole; `count` only applies to named datasets.
    """
    sample_shape = tuple(int(d) for d in input_shape[1:])
    spec_str = str(spec)
    if spec_str in DATASETS:
        if count <= 0:
            raise McucError(f"calibration count must be positive, not {count}")
        x, _ = DATASETS[spec_str]("train")
        if x.shape[1:] != sample_shape:
            raise McucError(
                f"calibration dataset {spec_str!r} yields inputs shaped {list(x.shape[1:])}, "
                f"but the model input is {list(input_shape)}"
            )
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(x.shape[0], size=min(count, x.shape[0]), replace=False))
        return np.ascontiguousarray(x[idx], dtype=np.float32)

    path = Path(spec_str)
    if path.suffix != ".npy":
        names = ", ".join(sorted(DATASETS))
        raise McucError(
            f"calibration spec {spec_str!r} is neither a .npy file nor a dataset ({names})"
        )
    if not path.is_file():
        raise McucError(f"calibration file {path} not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise McucError(f"cannot load calibration file {path}: {e}") from e
    full_shape = tuple(int(d) for d in input_shape)
    if arr.ndim == len(full_shape) + 1 and arr.shape[1:] == full_shape:
        arr = arr.reshape((arr.shape[0] * full_shape[0], *sample_shape))
    elif arr.ndim != len(sample_shape) + 1 or arr.shape[1:] != sample_shape:
        raise McucError(
            f"calibration file {path} holds an array shaped {list(arr.shape)}; expected "
            f"[N, {', '.join(map(str, sample_shape))}] for model input {list(full_shape)}"
        )
    if arr.shape[0] == 0:
        raise McucError(f"calibration file {path} holds no samples")
    if not np.issubdtype(arr.dtype, np.number):
        raise McucError(f"calibration file {path} has non-numeric dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise McucError(f"calibration file {path} contains NaN or infinite values")
    return np.ascontiguousarray(arr)
