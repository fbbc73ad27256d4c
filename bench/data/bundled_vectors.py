"""The built-in vectors datasets, offline, from scikit-learn's bundled data files (read without importing
scikit-learn, as the digits image set is): `digits-vectors` (the 64 pixel counts 0..16 of the 8x8 digits as float
vectors, on the `digits` image set's own split), `breast-cancer` (569 x 30) and `wine` (178 x 13).

Each split is fixed, stratified 80/20 and stored as indices: digits' in digits_split.npz, the others' in
vectors_splits.npz (keys <name>_train, <name>_test, with - as _), made by
train_test_split(np.arange(n), test_size=0.2, stratify=y, random_state=20190601) of scikit-learn; the tests
check both against scikit-learn's split.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.data.images import DIGITS_SPLIT, digits_arrays, register_dataset
from bench.data.vectors import VectorData, from_vector_arrays

VECTORS_SPLITS = Path(__file__).with_name("vectors_splits.npz")
TABULAR_FILES = {"breast-cancer": "breast_cancer.csv", "wine": "wine_data.csv"}  # in sklearn/datasets/data/
ABOUT = {  # one line each, for --list-datasets: features x examples, classes, source
    "digits-vectors": "vectors: 64 features x 1,797 examples (1,437 train, 360 test), 10 classes; scikit-learn's "
                      "8x8 digits as pixel counts 0..16, the digits image set's split",
    "breast-cancer": "vectors: 30 features x 569 examples (455 train, 114 test), 2 classes (malignant, benign); "
                     "scikit-learn's Wisconsin breast cancer set",
    "wine": "vectors: 13 features x 178 examples (142 train, 36 test), 3 classes; scikit-learn's wine set",
}


def tabular_arrays(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A bundled table as scikit-learn's load_csv_data reads it: a header `n_samples,n_features,class names...`, then
    one row per example, its features then its integer label. Returns x [n, d] float64, y [n] int64, class names."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError(f"The {name} dataset ships with scikit-learn, which is not installed: pip install "
                        "scikit-learn.")
    file = Path(spec.origin).parent / "datasets" / "data" / TABULAR_FILES[name]
    header = file.read_text().split("\n", 1)[0].split(",")
    raw = np.loadtxt(file, delimiter=",", skiprows=1, ndmin=2)  # [n, d + 1]
    if raw.shape != (int(header[0]), int(header[1]) + 1):
        raise UserError(f"{file} holds {raw.shape[0]} rows of {raw.shape[1]} values where its header promises "
                        f"{header[0]} of {int(header[1]) + 1}: reinstall scikit-learn.")
    return raw[:, :-1], raw[:, -1].astype(np.int64), header[2:]


def stored_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed (train, test) indices of a built-in set."""
    file, prefix = (DIGITS_SPLIT, "") if name == "digits-vectors" else (VECTORS_SPLITS, name.replace("-", "_") + "_")
    with np.load(file, allow_pickle=False) as split:
        return split[prefix + "train"].astype(np.int64), split[prefix + "test"].astype(np.int64)


def _split(name: str, x: np.ndarray, y: np.ndarray, classes: list[str]) -> VectorData:
    train, test = stored_split(name)
    return from_vector_arrays(name, x[train], y[train], x[test], y[test], classes)


@register_dataset("digits-vectors")
def load_digits_vectors(data_root: Path, download: bool) -> VectorData:
    pixels, y = digits_arrays()  # [1797, 64] counts 0..16
    return _split("digits-vectors", pixels, y, [str(i) for i in range(10)])


@register_dataset("breast-cancer")
def load_breast_cancer(data_root: Path, download: bool) -> VectorData:
    return _split("breast-cancer", *tabular_arrays("breast-cancer"))


@register_dataset("wine")
def load_wine(data_root: Path, download: bool) -> VectorData:
    return _split("wine", *tabular_arrays("wine"))
