"""Vectors: datasets whose examples are float feature vectors [N, d] (self-supervised image embeddings, sentence
encodings, tabular features), trained with the vector models (`linear`, `mlp`) on the shared trainer.

Specs: `vectors:PATH`, where PATH is
- an .npz with float x_train [N, d], x_test [M, d] and integer y_train, y_test (optional classes), the keys of the
  `npz:` image format, read with allow_pickle=False (bench/data/npz.py);
- or a table, .parquet or .csv (.csv.gz): a `label` column, an optional `split` column (train / test), and every
  other column a numeric feature. Without `split`, the split is stratified 80/20 and fixed (see table_split).
The built-in sets (digits-vectors, breast-cancer, wine) are in bench/data/bundled_vectors.py.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import UserError
from bench.core.seeding import numpy_rng
from bench.data.npz import check_file, class_names, read_npz

VECTORS = "vectors:"  # the spec prefix of a vectors file
LABEL, SPLIT = "label", "split"  # a table's label column and its optional train/test column
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
SPLIT_SEED = 20190601  # the fixed seed of a table's split (the digits split's), with the purpose "vectors-split"
TEST_SHARE = 0.2  # of each class, in a table without a split column


@dataclass
class VectorData:
    """A vectors dataset in memory: features as float32, labels as int64."""

    name: str
    x_train: torch.Tensor  # [N, d] float32
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, d] float32
    y_test: torch.Tensor  # [M] int64
    classes: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])


def from_vector_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       y_test: np.ndarray, classes: list[str] | None = None) -> VectorData:
    """A VectorData from numpy arrays, checking what a user's file could get wrong (one UserError each)."""
    for what, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 2:
            fix = " (one feature per example: x.reshape(-1, 1))" if x.ndim == 1 else (
                " (flatten each example: x.reshape(len(x), -1))" if x.ndim > 2 else "")
            raise UserError(f"{name}: {what} must be a 2-d array of feature vectors [examples, features]. Got shape "
                            f"{list(x.shape)} instead{fix}.")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == bool:
            raise UserError(f"{name}: {what} must hold numbers (float features). Got dtype {x.dtype} instead.")
    if x_train.shape[1] != x_test.shape[1]:
        raise UserError(f"{name}: x_train has {x_train.shape[1]} features and x_test {x_test.shape[1]}: both splits "
                        "must hold vectors of one dimension.")
    for what, x in (("x_train", x_train), ("x_test", x_test)):
        held = np.abs(x.astype(np.float64)) <= np.finfo(np.float32).max  # False for NaN, inf and float32 overflow
        if not held.all():
            bad = int((~held).any(axis=1).sum())
            raise UserError(f"{name}: {what} holds NaN, infinite or float32-overflowing values in {bad} row(s): "
                            "impute or drop them before writing the file.")
    for what, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
            raise UserError(f"{name}: {what} must be a 1-d integer array of class labels 0..C-1. Got {y.dtype} "
                            f"{list(y.shape)} instead.")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError(f"{name}: vectors and labels differ in count ({len(x_train)} vs {len(y_train)} train, "
                        f"{len(x_test)} vs {len(y_test)} test).")
    if len(x_train) == 0 or len(x_test) == 0:
        raise UserError(f"{name}: the train and test splits must both hold vectors.")
    n_classes = int(max(y_train.max(), y_test.max())) + 1 if classes is None else len(classes)
    for what, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0 or y.max() >= n_classes:
            raise UserError(f"{name}: {what} holds labels outside 0..{n_classes - 1} (found {int(y.min())}.."
                            f"{int(y.max())}); labels must be the integers 0..C-1.")
    skipped = sorted(set(range(n_classes)) - set(np.unique(y_train).tolist()))
    if skipped:
        raise UserError(f"{name}: y_train has no example of class {skipped[0]} ({len(skipped)} of the classes "
                        f"0..{n_classes - 1} missing): labels must be 0..C-1 with every class in the training split; "
                        "renumber them (np.unique(y, return_inverse=True)).")
    return VectorData(name, torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
                      torch.from_numpy(y_train.astype(np.int64)),
                      torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
                      torch.from_numpy(y_test.astype(np.int64)),
                      [str(i) for i in range(n_classes)] if classes is None else list(classes))


# ---------------------------------------------------------------------------------------------- files


def load_vectors(path: Path) -> VectorData:
    """A vectors file: an .npz (x_train [N, d], y_train, x_test [M, d], y_test, optional classes), or a .parquet or
    .csv table with a `label` column, an optional `split` column and numeric feature columns (see load_table)."""
    check_file(path, "vectors file", "an .npz file holding x_train, y_train, x_test, y_test, or a .parquet or "
               ".csv table with a label column")
    if path.name.lower().endswith(TABLE_SUFFIXES):
        return load_table(path)
    if not path.name.lower().endswith(".npz") and not zipfile.is_zipfile(path):
        raise UserError(f"{path}: neither an .npz file (a zip archive) nor a table by its name ("
                        f"{', '.join(TABLE_SUFFIXES)}): save the arrays with numpy.savez or the table as parquet/CSV.")
    arrays = read_npz(path)
    return from_vector_arrays(f"vectors:{path.name}", arrays["x_train"], arrays["y_train"], arrays["x_test"],
                              arrays["y_test"], class_names(arrays))


def load_table(path: Path) -> VectorData:
    """A table of examples, one a row: `label` (integers 0..C-1, or names: the classes are then the sorted distinct
    names), optional `split` (train or test), and every other column a numeric feature, in the table's order.
    Without `split`, the test set is table_split's: fixed, stratified, 20% of each class."""
    frame = _read_table(path)
    name = f"vectors:{path.name}"
    columns = [str(c) for c in frame.columns]
    if LABEL not in columns:
        raise UserError(f"{path}: the table has no {LABEL!r} column (columns: {', '.join(columns[:8])}"
                        f"{' ...' if len(columns) > 8 else ''}); name the class label column {LABEL!r}.")
    frame.columns = columns
    features = [c for c in columns if c not in (LABEL, SPLIT)]
    if not features:
        raise UserError(f"{path}: the table has no feature columns beside {LABEL!r}; every other column is a feature.")
    for column in features:
        kind = frame[column].dtype
        if kind.kind not in "iuf":  # integers and floats (numpy's or pandas' nullable ones); not bool, text, dates
            raise UserError(f"{path}: feature column {column!r} is not numeric (dtype {kind}); every column but "
                            f"{LABEL!r} and {SPLIT!r} must be a number: encode it or drop it.")
    x = frame[features].to_numpy(dtype=np.float64, na_value=np.nan)  # [rows, d]; a missing value is NaN, refused
    y, classes = _table_labels(path, frame[LABEL])
    if SPLIT in columns:
        split = frame[SPLIT].astype(str).to_numpy()
        odd = sorted(set(split.tolist()) - {"train", "test"})
        if odd:
            raise UserError(f"{path}: the {SPLIT!r} column holds {odd[0]!r}; its values must be 'train' or 'test'.")
        train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    else:
        train, test = table_split(y)
    return from_vector_arrays(name, x[train], y[train], x[test], y[test], classes)


def table_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified 80/20 split of a table without a split column, as sorted row positions (train, test):
    class c's rows are permuted by numpy_rng(SPLIT_SEED, "vectors-split", c) and the first round(0.2 n_c) of
    them (at most n_c - 1, so every class keeps a training example) are the test set. It depends on the labels
    alone: the same table gives the same split on every machine, and a row's features never move it."""
    test = [np.zeros(0, dtype=np.int64)]
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        n_test = min(int(np.floor(TEST_SHARE * len(rows) + 0.5)), len(rows) - 1)
        test.append(numpy_rng(SPLIT_SEED, "vectors-split", int(c)).permutation(rows)[:n_test])
    in_test = np.zeros(len(y), dtype=bool)
    in_test[np.concatenate(test)] = True
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def _read_table(path: Path):
    """The table as a pandas DataFrame, or one line saying why it cannot be read."""
    import pandas as pd  # pandas only for a table: an .npz or a built-in set loads without it

    parquet = path.name.lower().endswith((".parquet", ".pq"))
    try:
        return pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as err:  # pyarrow's ArrowInvalid, pandas' ParserError and EmptyDataError, UnicodeDecodeError ...
        kind = "parquet" if parquet else "CSV"
        raise UserError(f"{path}: not a readable {kind} table ({type(err).__name__}: {str(err)[:160]}).") from None


def _table_labels(path: Path, labels) -> tuple[np.ndarray, list[str] | None]:
    """A label column as integers: integers as they are (0..C-1, checked later), names as their index among the
    sorted distinct names (which become the classes); anything else refused."""
    if labels.isna().any():
        raise UserError(f"{path}: the {LABEL!r} column is empty in {int(labels.isna().sum())} row(s); every row "
                        "needs a class label.")
    values = labels.to_numpy()
    if values.dtype == bool or np.issubdtype(values.dtype, np.floating):
        raise UserError(f"{path}: the {LABEL!r} column must hold integer class labels 0..C-1 or class names. Got "
                        f"dtype {values.dtype} instead.")
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64), None
    names, y = np.unique(values.astype(str), return_inverse=True)
    return y.astype(np.int64), [str(n) for n in names]
