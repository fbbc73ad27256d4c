"""Datasets: the bundled digits split, npz and image folders, and the torchvision on-disk formats written
by the test itself (never downloaded)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.data.images import CIFAR_MEAN


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert np.array_equal(a.x_train.numpy(), b.x_train.numpy())
    train_share = np.bincount(a.y_train.numpy()) / len(a.y_train)
    test_share = np.bincount(a.y_test.numpy()) / len(a.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    assert a.x_train.dtype.is_floating_point is False and int(a.x_train.max()) == 255
    assert not a.flip and a.pad == 1


def test_npz_nhwc_is_loaded_channels_first(tiny_npz):
    data = load_dataset(f"npz:{tiny_npz}")
    raw = np.load(tiny_npz)
    assert data.x_train.shape == (200, 3, 12, 12)
    assert np.array_equal(data.x_train.numpy(), raw["x_train"].transpose(0, 3, 1, 2))
    assert data.classes == ["a", "b", "c", "d"] and data.flip


def _npz(tmp_path: Path, **arrays) -> str:
    base = {"x_train": np.zeros((10, 8, 8), np.uint8), "y_train": np.arange(10) % 2,
            "x_test": np.zeros((4, 8, 8), np.uint8), "y_test": np.arange(4) % 2}
    base.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return f"npz:{path}"


@pytest.mark.parametrize("arrays, message", [
    ({"y_test": None}, "lacks y_test"),
    ({"x_train": np.zeros((10, 8, 8), np.float32)}, "must be uint8"),
    ({"y_train": np.arange(10) - 1}, "labels outside"),
    ({"y_train": np.arange(9)}, "differ in count"),
    ({"x_test": np.zeros((4, 9, 9), np.uint8)}, "differ in shape"),
    ({"y_train": np.linspace(0, 1, 10)}, "integer array"),
    ({"classes": np.array(["only-one"])}, "labels outside"),
])
def test_bad_npz_is_a_user_error(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_pickled_npz_and_missing_file_are_user_errors(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    with pytest.raises(UserError, match="unpickling"):
        load_dataset(f"npz:{path}")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")


def test_imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["cat", "dog"]
    assert data.x_train.shape == (6, 3, 6, 6) and data.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "train" / "cat" / "0.png"))
    assert np.array_equal(data.x_train[0].numpy(), first.transpose(2, 0, 1))


def test_empty_imagefolder_is_a_user_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_cifar10_binary_files_written_by_hand(tmp_path):
    """The layout of the extracted cifar-10-binary.tar.gz: label byte + 3,072 channel-planar pixel bytes."""
    base = tmp_path / "cifar-10-batches-bin"
    base.mkdir()
    rng = np.random.default_rng(1)
    expected = {}
    for name, n in [(f"data_batch_{i}.bin", 3) for i in range(1, 6)] + [("test_batch.bin", 4)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
        (base / name).write_bytes(records.tobytes())
        expected[name] = (labels, pixels)
    (base / "batches.meta.txt").write_text("\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                       "frog", "horse", "ship", "truck"]) + "\n\n")
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert np.array_equal(data.x_train[:3].numpy(), expected["data_batch_1.bin"][1])
    assert data.y_test.tolist() == expected["test_batch.bin"][0].tolist()
    assert data.classes[0] == "airplane" and data.mean == CIFAR_MEAN and data.pad == 4 and data.flip


def _idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # unsigned byte data, then the number of dimensions
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def test_mnist_idx_files_written_by_hand_go_through_torchvision(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    x_tr, y_tr = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5).astype(np.uint8)
    x_te, y_te = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 3).astype(np.uint8)
    _idx(raw / "train-images-idx3-ubyte", x_tr)
    _idx(raw / "train-labels-idx1-ubyte", y_tr)
    _idx(raw / "t10k-images-idx3-ubyte", x_te)
    _idx(raw / "t10k-labels-idx1-ubyte", y_te)
    data = load_dataset("mnist", tmp_path, download=False)
    assert np.array_equal(data.x_train[:, 0].numpy(), x_tr)
    assert data.y_test.tolist() == y_te.tolist() and not data.flip


@pytest.mark.parametrize("name, hint", [
    ("cifar10", "cifar-10-binary.tar.gz"),
    ("cifar100", "cifar-100-binary.tar.gz"),
    ("mnist", "MNIST/raw/"),
    ("fashion-mnist", "FashionMNIST/raw/"),
    ("svhn", "train_32x32.mat"),
])
def test_missing_files_offline_say_where_to_put_them(tmp_path, name, hint, monkeypatch):
    # torchvision cannot be imported here: the refusal comes before it is loaded (seconds of a newcomer's wait)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(UserError, match="place") as err:
        load_dataset(name, tmp_path, download=False)
    assert hint in str(err.value) and str(tmp_path) in str(err.value)


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")


def test_digits_without_importing_scikit_learn_equal_scikit_learns_split():
    # the loader reads scikit-learn's data file and a stored split: both must equal what scikit-learn makes
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = np.clip(np.rint(bunch.images * 16), 0, 255).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.2, stratify=bunch.target,
                                              random_state=20190601)
    data = load_dataset("digits")
    assert np.array_equal(data.x_train[:, 0].numpy(), x_tr) and np.array_equal(data.x_test[:, 0].numpy(), x_te)
    assert np.array_equal(data.y_train.numpy(), y_tr) and np.array_equal(data.y_test.numpy(), y_te)
