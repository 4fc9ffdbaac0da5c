"""Datasets for training, evaluation and int8 calibration.

Images come back as float32 in [0, 1], shaped [N, C, H, W]. The bundled models contain no
normalisation layer, so [0, 1] is exactly what they were trained on and what the generated
C code expects after its own uint8 -> int8 input quantisation; do not add mean/std scaling
here or the compiled model and the float model will disagree.

Fashion-MNIST is read from the Debian package `dataset-fashion-mnist` (gzip IDX files).
`DATASETS` maps a dataset name to its (images, labels) loader. Image folders laid out like
torchvision's ImageFolder are read by `load_image_folder`; `load_dataset` accepts either a
dataset name or such a folder and also returns the class names.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from mcuc import McucError
from mcuc.resize import resize_images

Split = Literal["train", "test"]
Loader = Callable[..., tuple[np.ndarray, np.ndarray]]
Dataset = tuple[np.ndarray, np.ndarray, tuple[str, ...]]

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
    so the same seed always yields the same quantisation; resized to the model's input
    resolution when it differs, as the search trained such a model) or a path to a `.npy` array
    shaped [N, *input_shape[1:]] or [N, *input_shape] (a batch of batch-1 inputs).
    A `.npy` file is used whole; `count` only applies to named datasets.
    """
    sample_shape = tuple(int(d) for d in input_shape[1:])
    spec_str = str(spec)
    if spec_str in DATASETS:
        if count <= 0:
            raise McucError(f"calibration count must be positive, not {count}")
        x, _ = DATASETS[spec_str]("train")
        if len(sample_shape) != 3 or x.shape[1] != sample_shape[0]:
            raise McucError(
                f"calibration dataset {spec_str!r} yields inputs shaped {list(x.shape[1:])}, "
                f"but the model input is {list(input_shape)}"
            )
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(x.shape[0], size=min(count, x.shape[0]), replace=False))
        return resize_images(x[idx], sample_shape[1:])

    path = Path(spec_str)
    if path.suffix != ".npy":
        names = ", ".join(sorted(DATASETS))
        raise McucError(
            f"calibration spec {spec_str!r} is neither a .npy file nor a dataset ({names})"
        )
    from mcuc.limits import MAX_CALIB_IMAGES, read_npy

    arr = read_npy(path, "calibration file")  # header checked first: size, dtype, no pickle
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
    if arr.shape[0] > MAX_CALIB_IMAGES:
        raise McucError(f"calibration file {path} holds {arr.shape[0]:,} samples; the limit "
                        f"is {MAX_CALIB_IMAGES:,} (each one is a full float inference)")
    if not np.issubdtype(arr.dtype, np.number):
        raise McucError(f"calibration file {path} has non-numeric dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise McucError(f"calibration file {path} contains NaN or infinite values")
    return np.ascontiguousarray(arr)


# --- image folders -------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_SPLITS: tuple[Split, ...] = ("train", "test")
# Pillow modes whose pixels carry no colour; anything else (RGB, RGBA, P, CMYK, ...) is colour.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _one_line(e: BaseException) -> str:
    """An exception's text squashed onto one line, since the CLI prints errors as one line."""
    return " ".join(str(e).split()) or type(e).__name__


def _pil_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises on a corrupt, truncated, unsupported or absurdly large image."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _entries(folder: Path) -> list[Path]:
    """Non-hidden entries of `folder`, as a one-line McucError when it cannot be listed."""
    try:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError as e:
        raise McucError(f"cannot list {folder}: {_one_line(e)}") from e


def _split_dirs(root: Path) -> dict[str, Path]:
    """The split folders of `root`: its train/ and test/ if either exists, else root = train.

    A flat folder (class folders directly under `root`) therefore cannot have a class named
    `train` or `test`; that is the same ambiguity torchvision users already live with.
    """
    if (root / "train").is_dir() or (root / "test").is_dir():
        return {s: root / s for s in _SPLITS if (root / s).is_dir()}
    return {"train": root}


def _class_dirs(split_dir: Path) -> list[Path]:
    """The class folders of one split, sorted by name (so label k is the k-th name)."""
    dirs = sorted((p for p in _entries(split_dir) if p.is_dir()), key=lambda p: p.name)
    if not dirs:
        raise McucError(f"{split_dir} has no class folders (expected {split_dir}/<class>/<image>)")
    return dirs


def _image_files(class_dir: Path) -> list[Path]:
    """The images of one class folder, sorted by file name; other files are ignored."""
    files = sorted(
        (p for p in _entries(class_dir) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise McucError(f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _check_same_classes(root: Path, names: dict[str, list[str]]) -> None:
    """Labels index class names, so train and test must name the same classes."""
    if len(names) < 2 or names["train"] == names["test"]:
        return
    only_train = sorted(set(names["train"]) - set(names["test"]))
    only_test = sorted(set(names["test"]) - set(names["train"]))
    raise McucError(
        f"{root}: train/ and test/ hold different class folders "
        f"(only in train: {', '.join(only_train) or '-'}; "
        f"only in test: {', '.join(only_test) or '-'})"
    )


def _scan(files: Iterable[Path]) -> tuple[bool, dict[tuple[int, int], Path]]:
    """Read only image headers: whether all are grayscale, and each size with one example file.

    Header reads are cheap, so the whole dataset can be scanned even when `limit` asks for
    a handful of images; that keeps the channel count and size independent of `limit`.
    """
    from PIL import Image

    errors = _pil_errors()
    all_gray = True
    sizes: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            with Image.open(path) as im:
                mode, size = im.mode, (int(im.size[0]), int(im.size[1]))
        except errors as e:
            raise McucError(f"cannot read image {path}: {_one_line(e)}") from e
        all_gray = all_gray and mode in _GRAY_MODES
        sizes.setdefault(size, path)
    return all_gray, sizes


def _round_robin_counts(class_sizes: Sequence[int], limit: int | None) -> list[int]:
    """How many leading files of each class the first `limit` of a round-robin deal holds.

    Dealing one file per class in turn (skipping exhausted classes) makes any prefix as
    balanced as the classes allow, so a small `limit` still sees every class.
    """
    if limit is None or limit >= sum(class_sizes):
        return list(class_sizes)
    counts = [0] * len(class_sizes)
    left = limit
    while left > 0:
        for k, n in enumerate(class_sizes):
            if left == 0:
                break
            if counts[k] < n:
                counts[k] += 1
                left -= 1
    return counts


def _decode(path: Path, mode: str, size: int | None, hw: tuple[int, int]) -> np.ndarray:
    """One image as uint8 [H, W] or [H, W, 3], converted to `mode` and resized if asked."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = im.convert(mode)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except _pil_errors() as e:
        raise McucError(f"cannot read image {path}: {_one_line(e)}") from e
    if arr.shape[:2] != hw:
        raise McucError(
            f"image {path} is {arr.shape[1]}x{arr.shape[0]}, expected {hw[1]}x{hw[0]}; "
            "pass a size to resize all images"
        )
    return arr


def _check_options(split: str, limit: int | None, size: int | None, channels: int | None) -> None:
    """Reject bad arguments before touching the disk, each with a one-line message."""
    if split not in _SPLITS:
        raise McucError(f"unknown split {split!r} (use 'train' or 'test')")
    if limit is not None and limit < 0:
        raise McucError(f"limit must be >= 0, not {limit}")
    if size is not None and size <= 0:
        raise McucError(f"image size must be positive, not {size}")
    if channels not in (None, 1, 3):
        raise McucError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels!r}")


def load_image_folder(
    root: Path | str,
    split: Split = "train",
    limit: int | None = None,
    size: int | None = None,
    channels: int | None = None,
) -> Dataset:
    """An ImageFolder-style dataset as (float32 [N,C,H,W] in [0,1], int64 labels, class names).

    Layout: `root/{train,test}/<class>/<image>`, or class folders directly under `root`
    (then it is the train split only). Classes are sorted by folder name and labelled
    0..K-1; train and test must have the same class folders. Images (png, jpg, jpeg, bmp,
    gif, webp; hidden files and other files are ignored) are ordered by class, then file name.

    `channels`: 1 converts to grayscale, 3 to RGB, None picks 1 if every image of the
    dataset (both splits, judged by Pillow mode) is grayscale, else 3, so train and test
    always agree. `size` resizes to size x size (bilinear); without it every image of the
    dataset must share one size. `limit` keeps the first N of a round-robin deal over the
    classes (1st image of each class, then 2nd of each, ...), so even a small limit covers
    all classes evenly; the kept images are still returned in class-then-file-name order.
    """
    _check_options(split, limit, size, channels)
    root = Path(root)
    if not root.exists():
        raise McucError(f"image folder {root} not found")
    if not root.is_dir():
        raise McucError(f"image folder {root} is not a directory")
    split_dirs = _split_dirs(root)
    if split not in split_dirs:
        if "test" not in split_dirs and "train" in split_dirs and split_dirs["train"] == root:
            raise McucError(
                f"{root} holds class folders directly (no train/ and test/ folders), "
                f"so it has only a 'train' split, not {split!r}"
            )
        raise McucError(f"image folder {root} has no {split}/ split folder ({root / split})")

    class_dirs = {s: _class_dirs(d) for s, d in split_dirs.items()}
    _check_same_classes(root, {s: [d.name for d in dirs] for s, dirs in class_dirs.items()})
    classes = tuple(d.name for d in class_dirs[split])

    # Files of the requested split are always listed; the other split only when scanning.
    need_scan = channels is None or size is None
    scan_splits = list(split_dirs) if need_scan else [split]
    files = {s: [_image_files(d) for d in class_dirs[s]] for s in scan_splits}

    if need_scan:
        all_gray, sizes = _scan(p for s in scan_splits for per_class in files[s] for p in per_class)
        if channels is None:
            channels = 1 if all_gray else 3
        if size is None and len(sizes) > 1:
            (w0, h0), p0 = next(iter(sizes.items()))
            (w1, h1), p1 = list(sizes.items())[1]
            raise McucError(
                f"images in {root} have different sizes ({w0}x{h0} in {p0}, {w1}x{h1} in "
                f"{p1}); pass a size to resize them all"
            )
        width, height = (size, size) if size is not None else next(iter(sizes))
    else:
        assert size is not None
        width = height = size

    per_class = files[split]
    counts = _round_robin_counts([len(f) for f in per_class], limit)
    chosen = [(k, p) for k, n in enumerate(counts) for p in per_class[k][:n]]
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(chosen), channels, height, width), dtype=np.float32)
    y = np.empty(len(chosen), dtype=np.int64)
    for i, (label, path) in enumerate(chosen):
        arr = _decode(path, mode, size, (height, width))
        x[i] = (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)) / np.float32(255.0)
        y[i] = label
    return x, y, classes


def _fashion_mnist_dataset(
    split: Split, limit: int | None, size: int | None, channels: int | None
) -> Dataset:
    """Fashion-MNIST for `load_dataset`, resized (bilinear, as the search resizes) when
    `size` is given and not the native 28."""
    x, y = load_fashion_mnist(split, limit)
    if size is not None:
        x = resize_images(x, size)
    if channels == 3:
        x = np.ascontiguousarray(np.repeat(x, 3, axis=1))
    return x, y, FASHION_MNIST_CLASSES


NAMED_DATASETS: dict[str, Callable[..., Dataset]] = {
    "fashion-mnist": _fashion_mnist_dataset,
}


def load_dataset(
    spec: str | Path,
    split: Split = "train",
    limit: int | None = None,
    size: int | None = None,
    channels: int | None = None,
) -> Dataset:
    """A dataset name (see `NAMED_DATASETS`) or an image-folder path, as images/labels/classes.

    A name wins over a directory of the same name in the working directory; write
    `./fashion-mnist` to mean the folder. See `load_image_folder` for the folder rules.
    """
    _check_options(split, limit, size, channels)
    spec_str = str(spec)
    if spec_str in NAMED_DATASETS:
        return NAMED_DATASETS[spec_str](split, limit, size, channels)
    path = Path(spec_str)
    if path.is_dir():
        return load_image_folder(path, split, limit, size, channels)
    if path.exists():
        raise McucError(f"dataset {spec_str!r} is a file, not an image folder")
    names = ", ".join(sorted(NAMED_DATASETS))
    raise McucError(
        f"unknown dataset {spec_str!r}: neither a known dataset ({names}) nor an existing folder"
    )
