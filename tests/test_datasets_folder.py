"""Image-folder datasets: layout rules, decoding, channel/size handling and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcuc import McucError
from mcuc.datasets import (
    FASHION_MNIST_CLASSES,
    NAMED_DATASETS,
    load_dataset,
    load_image_folder,
)

CLASSES = ("cat", "dog", "eel")


def save(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (8, 8)) -> Path:
    """A constant image, so the decoded pixel value tells which file it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color: int | tuple[int, int, int] = value if mode == "L" else (value, value // 2, 0)
    Image.new(mode, size, color).save(path)
    return path


def make_split(split_dir: Path, counts: tuple[int, ...] = (4, 4, 4), rgb: bool = False) -> None:
    """Class k's i-th image (files named in reverse creation order) has value 10*k + i."""
    for k, (name, n) in enumerate(zip(CLASSES, counts, strict=True)):
        for i in range(n):
            mode = "RGB" if rgb and i == 1 else "L"
            save(split_dir / name / f"img{i}.png", 10 * k + i, mode)


@pytest.fixture()
def gray_root(tmp_path: Path) -> Path:
    make_split(tmp_path / "data" / "train")
    make_split(tmp_path / "data" / "test", counts=(1, 2, 1))
    return tmp_path / "data"


@pytest.fixture()
def mixed_root(tmp_path: Path) -> Path:
    make_split(tmp_path / "data" / "train", rgb=True)
    make_split(tmp_path / "data" / "test", counts=(1, 1, 1))
    return tmp_path / "data"


def assert_one_line_error(excinfo: pytest.ExceptionInfo[McucError], *needles: object) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert str(needle) in msg, (needle, msg)


def test_grayscale_folder_shapes_labels_and_order(gray_root: Path) -> None:
    x, y, classes = load_image_folder(gray_root)
    assert classes == CLASSES
    assert x.shape == (12, 1, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int64
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert 0.0 <= x.min() and x.max() <= 1.0
    # Sorted by class, then file name: pixel value 10*k + i.
    expected = [10 * k + i for k in range(3) for i in range(4)]
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, expected, atol=1e-4)


def test_test_split(gray_root: Path) -> None:
    x, y, classes = load_image_folder(gray_root, "test")
    assert classes == CLASSES and x.shape == (4, 1, 8, 8)
    assert y.tolist() == [0, 1, 1, 2]


def test_files_sorted_by_name_and_non_images_ignored(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(root / "b" / "z.png", 1)
    save(root / "b" / "a.jpg", 2)
    save(root / "a" / "m.BMP", 3)
    (root / "a" / "notes.txt").write_text("not an image")
    save(root / "a" / ".hidden.png", 99)
    x, y, classes = load_image_folder(root)
    assert classes == ("a", "b") and y.tolist() == [0, 1, 1]
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, [3, 2, 1], atol=1.5)  # jpg is lossy


def test_mixed_modes_infer_rgb(mixed_root: Path) -> None:
    x, _, _ = load_image_folder(mixed_root)
    assert x.shape == (12, 3, 8, 8)
    # The RGB image keeps its colour channels; grayscale ones are replicated.
    rgb = x[1, :, 0, 0] * 255
    np.testing.assert_allclose(rgb, [1, 0, 0], atol=1e-4)
    np.testing.assert_allclose(x[0, :, 0, 0], 0.0)
    np.testing.assert_allclose(x[2, :, 0, 0] * 255, [2, 2, 2], atol=1e-4)
    # The test split is all grayscale but follows the dataset, so train and test agree.
    xt, _, _ = load_image_folder(mixed_root, "test")
    assert xt.shape == (3, 3, 8, 8)


def test_forced_channels(mixed_root: Path, gray_root: Path) -> None:
    x, _, _ = load_image_folder(mixed_root, channels=1)
    assert x.shape == (12, 1, 8, 8)
    x, _, _ = load_image_folder(gray_root, channels=3)
    assert x.shape == (12, 3, 8, 8)
    np.testing.assert_array_equal(x[:, 0], x[:, 2])


def test_resize(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(root / "a" / "0.png", 200, size=(8, 8))
    save(root / "b" / "0.png", 100, size=(16, 12))
    x, y, _ = load_image_folder(root, size=5)
    assert x.shape == (2, 1, 5, 5) and y.tolist() == [0, 1]
    expected = np.broadcast_to(np.array([200.0, 100.0])[:, None, None], (2, 5, 5))
    np.testing.assert_allclose(x[:, 0] * 255, expected, atol=1)
    x4, _, _ = load_image_folder(root, size=4, channels=3)
    assert x4.shape == (2, 3, 4, 4)


def test_mixed_sizes_without_size_fail(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(root / "a" / "0.png", 1, size=(8, 8))
    save(root / "a" / "1.png", 1, size=(9, 8))
    with pytest.raises(McucError, match="pass a size") as e:
        load_image_folder(root)
    assert_one_line_error(e, root, "9x8")


def test_non_square_images_keep_shape(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(root / "a" / "0.png", 1, size=(6, 4))
    x, _, _ = load_image_folder(root)
    assert x.shape == (1, 1, 4, 6)


def test_limit_is_round_robin(tmp_path: Path) -> None:
    make_split(tmp_path / "train", counts=(4, 1, 3))
    x, y, _ = load_image_folder(tmp_path, limit=3)
    assert y.tolist() == [0, 1, 2]
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, [0, 10, 20], atol=1e-4)
    # Class 1 runs out after one image; the rest of the deal alternates classes 0 and 2.
    _, y, _ = load_image_folder(tmp_path, limit=6)
    assert y.tolist() == [0, 0, 0, 1, 2, 2]
    _, y, _ = load_image_folder(tmp_path, limit=100)
    assert len(y) == 8
    x, y, _ = load_image_folder(tmp_path, limit=0)
    assert x.shape == (0, 1, 8, 8) and y.shape == (0,)


def test_flat_layout_is_train_only(tmp_path: Path) -> None:
    make_split(tmp_path / "flat", counts=(2, 2, 2))
    x, y, classes = load_image_folder(tmp_path / "flat")
    assert classes == CLASSES and x.shape == (6, 1, 8, 8)
    with pytest.raises(McucError, match="only a 'train' split") as e:
        load_image_folder(tmp_path / "flat", "test")
    assert_one_line_error(e, tmp_path / "flat")


def test_missing_test_split(tmp_path: Path) -> None:
    make_split(tmp_path / "train")
    with pytest.raises(McucError) as e:
        load_image_folder(tmp_path, "test")
    assert_one_line_error(e, tmp_path / "test")


def test_class_mismatch(gray_root: Path) -> None:
    save(gray_root / "test" / "fox" / "0.png", 1)
    with pytest.raises(McucError, match="only in test: fox") as e:
        load_image_folder(gray_root, channels=1, size=8)
    assert_one_line_error(e, gray_root)


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="not found") as e:
        load_image_folder(tmp_path / "nope")
    assert_one_line_error(e, tmp_path / "nope")
    f = save(tmp_path / "x.png", 1)
    with pytest.raises(McucError, match="not a directory") as e:
        load_image_folder(f)
    assert_one_line_error(e, f)


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    save(tmp_path / "train" / "loose.png", 1)
    with pytest.raises(McucError, match="no class folders") as e:
        load_image_folder(tmp_path)
    assert_one_line_error(e, tmp_path / "train")


def test_empty_class_folder(tmp_path: Path) -> None:
    make_split(tmp_path / "d", counts=(1, 1, 1))
    (tmp_path / "d" / "empty").mkdir()
    with pytest.raises(McucError, match="holds no images") as e:
        load_image_folder(tmp_path / "d")
    assert_one_line_error(e, tmp_path / "d" / "empty")


@pytest.mark.parametrize("scan", [True, False])
def test_unreadable_image(tmp_path: Path, scan: bool) -> None:
    make_split(tmp_path / "d", counts=(1, 1, 1))
    bad = tmp_path / "d" / "dog" / "broken.png"
    bad.write_bytes(b"definitely not a png\n\nreally")
    opts: dict[str, int] = {} if scan else {"size": 8, "channels": 1}
    with pytest.raises(McucError, match="cannot read image") as e:
        load_image_folder(tmp_path / "d", **opts)
    assert_one_line_error(e, bad)


def test_truncated_image(tmp_path: Path) -> None:
    good = save(tmp_path / "d" / "a" / "0.png", 1, size=(64, 64))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(McucError, match="cannot read image") as e:
        load_image_folder(tmp_path / "d", size=8, channels=1)
    assert_one_line_error(e, good)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"channels": 2}, "channels must be 1"),
        ({"size": 0}, "size must be positive"),
        ({"limit": -1}, "limit must be"),
        ({"split": "val"}, "unknown split"),
    ],
)
def test_bad_options(gray_root: Path, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(McucError, match=pattern) as e:
        load_image_folder(gray_root, **kwargs)  # type: ignore[arg-type]
    assert_one_line_error(e)


def test_load_dataset_folder(gray_root: Path) -> None:
    x, y, classes = load_dataset(str(gray_root), "test", size=4)
    assert x.shape == (4, 1, 4, 4) and classes == CLASSES and y.tolist() == [0, 1, 1, 2]


def test_load_dataset_fashion_mnist() -> None:
    x, y, classes = load_dataset("fashion-mnist", limit=5)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert classes == FASHION_MNIST_CLASSES and len(classes) == 10
    x3, _, _ = load_dataset("fashion-mnist", "test", limit=2, size=28, channels=3)
    assert x3.shape == (2, 3, 28, 28)
    np.testing.assert_array_equal(x3[:, 0], x3[:, 1])


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="unknown dataset") as e:
        load_dataset("cifar-100")
    assert_one_line_error(e, "cifar-100", *NAMED_DATASETS)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(McucError, match="not an image folder") as e:
        load_dataset(f)
    assert_one_line_error(e, f)
