"""Vectors: datasets whose examples are float feature vectors [N, d] (self-supervised image embeddings, sentence
encodings, tabular features), trained with the vector models (`linear`, `mlp`) on the shared trainer.

Specs: `vectors:PATH` (an .npz with float x_train [N, d], x_test [M, d] and integer y_train, y_test, the keys of
the `npz:` image format, read with allow_pickle=False) and the built-in tabular sets of scikit-learn's bundled data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.core.errors import UserError

VECTORS = "vectors:"  # the spec prefix of a vectors file


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
            raise UserError(f"{name}: {what} must be a 2-d array of feature vectors [examples, features]. Got shape "
                            f"{list(x.shape)} instead.")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == bool:
            raise UserError(f"{name}: {what} must hold numbers (float features). Got dtype {x.dtype} instead.")
    if x_train.shape[1] != x_test.shape[1]:
        raise UserError(f"{name}: x_train has {x_train.shape[1]} features and x_test {x_test.shape[1]}: both splits "
                        "must hold vectors of one dimension.")
    for what, x in (("x_train", x_train), ("x_test", x_test)):
        wide = x.astype(np.float64)
        if not np.isfinite(wide).all() or not np.isfinite(wide.astype(np.float32)).all():
            bad = int((~np.isfinite(wide.astype(np.float32))).any(axis=1).sum())
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
