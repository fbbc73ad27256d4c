"""bench.data.downloads: the torchvision sets read from the on-disk formats of their releases, written by the test
itself (never downloaded), and the one line that says where to place them offline."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data import downloads
from bench.data.datasets import load_dataset
from bench.data.images import CIFAR_MEAN


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


def test_cifar100_records_carry_the_coarse_label_first_and_the_fine_one_is_read(tmp_path):
    rng = np.random.default_rng(4)
    coarse, fine = rng.integers(0, 20, 5).astype(np.uint8), rng.integers(0, 100, 5).astype(np.uint8)
    pixels = rng.integers(0, 256, (5, 3, 32, 32)).astype(np.uint8)
    records = np.concatenate([coarse[:, None], fine[:, None], pixels.reshape(5, -1)], axis=1)  # [5, 2 + 3072]
    (tmp_path / "train.bin").write_bytes(records[:2].tobytes())
    (tmp_path / "more.bin").write_bytes(records[2:].tobytes())
    x, y = downloads.read_cifar_records([tmp_path / "train.bin", tmp_path / "more.bin"], 2, 1)
    assert np.array_equal(x, pixels) and y.tolist() == fine.tolist() and y.dtype == np.int64


def test_a_truncated_cifar_file_is_one_line(tmp_path):
    (tmp_path / "train.bin").write_bytes(bytes(3074 * 2 - 1))
    with pytest.raises(UserError, match=r"train.bin is truncated \(6147 bytes is not a multiple of 3074\)"):
        downloads.read_cifar_records([tmp_path / "train.bin"], 2, 1)
    with pytest.raises(UserError, match="absent.bin is missing: re-extract the binary archive"):
        downloads.read_cifar_records([tmp_path / "absent.bin"], 1, 0)
