"""The torchvision image sets (CIFAR-10 and -100 from their binary releases, MNIST, Fashion-MNIST, SVHN), read
from --data-root or downloaded there when online; offline, one line says which files to place where."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.data.images import CIFAR_MEAN, CIFAR_STD, ImageData, from_arrays, register_dataset


def _missing(name: str, root: Path, where: str, err: Exception | None) -> UserError:
    why = f" and the download failed ({type(err).__name__}: {str(err)[:120]})" if err else ""
    return UserError(f"{name} is not under {root}{why}: place {where} in {root}, or run once with network "
                     "access to download it.")


def _cifar_binary(root: Path, folder: str, archive: str, url: str, md5: str, download: bool) -> Path:
    base = root / folder
    if base.is_dir():
        return base
    if download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(url, str(root), filename=archive, md5=md5)
            return base
        except Exception as err:  # offline, proxy, checksum
            raise _missing(folder, root, f"the extracted {archive} (folder {folder}/)", err) from None
    raise _missing(folder, root, f"the extracted {archive} (folder {folder}/)", None)


def read_cifar_records(files: list[Path], label_bytes: int, label_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR binary records: label byte(s) then 3,072 pixel bytes (1,024 per channel, row-major)."""
    record = label_bytes + 3072
    chunks = []
    for file in files:
        if not file.is_file():
            raise UserError(f"CIFAR file {file} is missing: re-extract the binary archive into {file.parent.parent}.")
        raw = np.fromfile(file, dtype=np.uint8)
        if raw.size % record:
            raise UserError(f"CIFAR file {file} is truncated ({raw.size} bytes is not a multiple of {record}).")
        chunks.append(raw.reshape(-1, record))
    data = np.concatenate(chunks)
    return data[:, label_bytes:].reshape(-1, 3, 32, 32), data[:, label_offset].astype(np.int64)


@register_dataset("cifar10")
def load_cifar10(data_root: Path, download: bool) -> ImageData:
    base = _cifar_binary(data_root, "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                         "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                         "c32a1d4ab5d03f1284b67883e8d87530", download)
    x_tr, y_tr = read_cifar_records([base / f"data_batch_{i}.bin" for i in range(1, 6)], 1, 0)
    x_te, y_te = read_cifar_records([base / "test_batch.bin"], 1, 0)
    meta = base / "batches.meta.txt"
    classes = [c for c in meta.read_text().split() if c] if meta.is_file() else None
    return from_arrays("cifar10", x_tr, y_tr, x_te, y_te, classes or [str(i) for i in range(10)],
                       CIFAR_MEAN, CIFAR_STD, pad=4, flip=True)


@register_dataset("cifar100")
def load_cifar100(data_root: Path, download: bool) -> ImageData:
    base = _cifar_binary(data_root, "cifar-100-binary", "cifar-100-binary.tar.gz",
                         "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                         "03b5dce01913d631647c71ecec9e9cb8", download)
    x_tr, y_tr = read_cifar_records([base / "train.bin"], 2, 1)  # coarse label, fine label, pixels
    x_te, y_te = read_cifar_records([base / "test.bin"], 2, 1)
    meta = base / "fine_label_names.txt"
    classes = [c for c in meta.read_text().split() if c] if meta.is_file() else None
    return from_arrays("cifar100", x_tr, y_tr, x_te, y_te, classes or [str(i) for i in range(100)],
                       pad=4, flip=True)


def _refuse_absent(name: str, root: Path, needed: str, download: bool, where: str) -> None:
    """Offline, with root/needed absent: refused at once, before torchvision (seconds to import) is loaded."""
    if not download and not (root / needed).exists():
        raise _missing(name, root, where, None)


def _torchvision(name: str, make: Callable[[bool, bool], object], root: Path, download: bool, where: str):
    """Build a torchvision dataset's train and test splits, offline first."""
    try:
        return make(True, False), make(False, False)
    except (RuntimeError, FileNotFoundError, OSError):
        if not download:
            raise _missing(name, root, where, None) from None
    try:
        return make(True, True), make(False, True)
    except Exception as err:
        raise _missing(name, root, where, err) from None


@register_dataset("mnist")
def load_mnist(data_root: Path, download: bool) -> ImageData:
    where = "MNIST/raw/ with the four idx files (train-images-idx3-ubyte, ...)"
    _refuse_absent("mnist", data_root, "MNIST/raw", download, where)
    from torchvision.datasets import MNIST

    tr, te = _torchvision("mnist", lambda train, dl: MNIST(str(data_root), train=train, download=dl), data_root,
                          download, where)
    return from_arrays("mnist", tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None],
                       te.targets.numpy(), [str(i) for i in range(10)], pad=2, flip=False)


@register_dataset("fashion-mnist")
def load_fashion_mnist(data_root: Path, download: bool) -> ImageData:
    where = "FashionMNIST/raw/ with the four idx files (train-images-idx3-ubyte, ...)"
    _refuse_absent("fashion-mnist", data_root, "FashionMNIST/raw", download, where)
    from torchvision.datasets import FashionMNIST

    tr, te = _torchvision("fashion-mnist", lambda train, dl: FashionMNIST(str(data_root), train=train, download=dl),
                          data_root, download, where)
    return from_arrays("fashion-mnist", tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None],
                       te.targets.numpy(), list(tr.classes), pad=2, flip=True)


@register_dataset("svhn")
def load_svhn(data_root: Path, download: bool) -> ImageData:
    where = "train_32x32.mat and test_32x32.mat"
    _refuse_absent("svhn", data_root, "train_32x32.mat", download, where)
    from torchvision.datasets import SVHN

    tr, te = _torchvision("svhn", lambda train, dl: SVHN(str(data_root), split="train" if train else "test",
                                                         download=dl),
                          data_root, download, where)
    # Digits again: translations but no flips.
    return from_arrays("svhn", tr.data, tr.labels.astype(np.int64), te.data, te.labels.astype(np.int64),
                       [str(i) for i in range(10)], pad=4, flip=False)
