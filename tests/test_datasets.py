"""Dataset loading: the real Fashion-MNIST files, IDX parsing errors, calibration inputs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from mcuc import McucError
from mcuc.datasets import (
    DATASETS,
    FASHION_MNIST_ENV,
    load_calibration,
    load_fashion_mnist,
    read_idx,
)

INPUT_SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def train_set() -> tuple[np.ndarray, np.ndarray]:
    return load_fashion_mnist("train")


def write_idx(path: Path, arr: np.ndarray, magic_type: int = 0x08) -> Path:
    header = struct.pack(">HBB", 0, magic_type, arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())
    return path


def fake_fashion_mnist(root: Path, n_test: int = 10000) -> Path:
    """A tiny stand-in directory: a test split of constant images, labels 0..9 cycling."""
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.full((n_test, 28, 28), 51, np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return root


def test_train_split(train_set: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = train_set
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert x.flags.c_contiguous


def test_test_split_and_limit() -> None:
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert y.min() == 0 and y.max() == 9
    xl, yl = load_fashion_mnist("test", limit=100)
    assert xl.shape == (100, 1, 28, 28)
    np.testing.assert_array_equal(xl, x[:100])
    np.testing.assert_array_equal(yl, y[:100])


def test_registry() -> None:
    assert DATASETS["fashion-mnist"] is load_fashion_mnist


def test_missing_dir_error(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="apt-get install dataset-fashion-mnist") as err:
        load_fashion_mnist("test", root=tmp_path / "nowhere")
    assert "\n" not in str(err.value)


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(fake_fashion_mnist(tmp_path / "fm")))
    x, y = load_fashion_mnist("test", limit=12)
    assert x.shape == (12, 1, 28, 28)
    assert np.allclose(x, 51 / 255)
    assert list(y) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "empty"))
    with pytest.raises(McucError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test")


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 3, 3)), magic_type=0x0D)
    with pytest.raises(McucError, match="magic"):
        read_idx(path, ndim=3)
    path = write_idx(tmp_path / "y.gz", np.zeros(4))
    with pytest.raises(McucError, match="magic"):
        read_idx(path, ndim=3)


def test_idx_size_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB3I", 0, 8, 3, 5, 28, 28) + bytes(28 * 28 * 4))
    with pytest.raises(McucError, match="promises"):
        read_idx(path, ndim=3)


def test_idx_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(McucError, match="cannot read"):
        read_idx(path, ndim=1)


def test_split_count_and_label_checks(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="expected 10000"):
        load_fashion_mnist("test", root=fake_fashion_mnist(tmp_path / "a", n_test=20))
    root = fake_fashion_mnist(tmp_path / "b")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(10000, 12))
    with pytest.raises(McucError, match="out of range"):
        load_fashion_mnist("test", root=root)
    with pytest.raises(McucError, match="unknown Fashion-MNIST split"):
        load_fashion_mnist("valid", root=root)  # type: ignore[arg-type]


def test_calibration_is_deterministic(train_set: tuple[np.ndarray, np.ndarray]) -> None:
    a = load_calibration("fashion-mnist", INPUT_SHAPE, count=32, seed=3)
    b = load_calibration("fashion-mnist", INPUT_SHAPE, count=32, seed=3)
    c = load_calibration("fashion-mnist", INPUT_SHAPE, count=32, seed=4)
    assert a.shape == (32, 1, 28, 28) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The picks are real, distinct training images.
    x, _ = train_set
    flat = x.reshape(len(x), -1)
    for img in a[:4]:
        assert (np.abs(flat - img.reshape(-1)).max(axis=1) == 0).any()
    assert len({img.tobytes() for img in a}) == 32
    assert load_calibration("fashion-mnist", INPUT_SHAPE).shape == (64, 1, 28, 28)


def test_calibration_wrong_model_shape() -> None:
    with pytest.raises(McucError, match="model input"):
        load_calibration("fashion-mnist", (1, 3, 32, 32))


def test_calibration_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.random((5, 1, 28, 28))
    np.save(tmp_path / "cal.npy", arr)
    got = load_calibration(str(tmp_path / "cal.npy"), INPUT_SHAPE)
    assert got.dtype == np.float32 and got.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(got, arr.astype(np.float32))
    # A stack of batch-1 inputs, [N, 1, 1, 28, 28], is accepted too.
    np.save(tmp_path / "cal5.npy", arr[:, None])
    assert load_calibration(tmp_path / "cal5.npy", INPUT_SHAPE).shape == (5, 1, 28, 28)


def test_calibration_npy_bad_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((5, 28, 28), np.float32))
    with pytest.raises(McucError, match=r"shaped \[5, 28, 28\].*\[N, 1, 28, 28\]"):
        load_calibration(str(tmp_path / "bad.npy"), INPUT_SHAPE)
    np.save(tmp_path / "bad2.npy", np.zeros((5, 1, 32, 32), np.float32))
    with pytest.raises(McucError, match="expected"):
        load_calibration(str(tmp_path / "bad2.npy"), INPUT_SHAPE)


def test_calibration_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(McucError, match="not found"):
        load_calibration(str(tmp_path / "missing.npy"), INPUT_SHAPE)
    with pytest.raises(McucError, match="neither a .npy file nor a dataset"):
        load_calibration("imagenet", INPUT_SHAPE)
    np.save(tmp_path / "nan.npy", np.full((2, 1, 28, 28), np.nan, np.float32))
    with pytest.raises(McucError, match="NaN"):
        load_calibration(str(tmp_path / "nan.npy"), INPUT_SHAPE)
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 28, 28), np.float32))
    with pytest.raises(McucError, match="no samples"):
        load_calibration(str(tmp_path / "empty.npy"), INPUT_SHAPE)
    with pytest.raises(McucError, match="positive"):
        load_calibration("fashion-mnist", INPUT_SHAPE, count=0)
