"""A class-imbalanced training pool (`--imbalance R`): the pool subsampled per class along an exponential profile,
as the long-tailed CIFAR sets are made (Cui et al., CVPR 2019): class k of C (in label order) keeps
floor(m * R ** (-k / (C - 1))) examples, m the smallest class count of the full pool, so class 0 keeps m and the
rarest m / R. R = 1 keeps the pool as it is (no subsampling at all). The test set stays as it is: accuracy is
measured on the balanced distribution, as Lüth et al. (NeurIPS 2023) evaluate class-imbalanced pools.

Which examples a class keeps is drawn from (seed, "imbalance"): every strategy of a seed gets the same pool (the
paired design holds), and each seed another draw of it, so the verdict's spread over seeds covers the draw.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import UserError
from bench.core.seeding import numpy_rng


def _labels(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    return labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)


def class_sizes(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Examples each class keeps ([C], in label order) under the profile; counts: each class's examples [C]."""
    counts = np.asarray(counts, dtype=np.int64)
    if ratio == 1:
        return counts
    smallest = int(counts.min())
    rank = np.arange(counts.size) / max(counts.size - 1, 1)  # 0 for class 0, 1 for the last class
    sizes = np.floor(smallest * float(ratio) ** -rank + 1e-9).astype(np.int64)  # 1e-9: m * R**-1 = m / R exactly
    if sizes.min() < 1:
        raise UserError(f"The 'imbalance' parameter {ratio:g} leaves the rarest class with no example (the smallest "
                        f"class has {smallest}): give an imbalance of at most {smallest}.")
    return sizes


def pool_size(labels: torch.Tensor | np.ndarray, ratio: float) -> int:
    """The examples an imbalanced pool holds (the same at every seed): what the protocol's labels must fit in."""
    _, counts = np.unique(_labels(labels), return_counts=True)
    return int(class_sizes(counts, ratio).sum())


def pool_indices(seed: int, labels: torch.Tensor | np.ndarray, ratio: float) -> np.ndarray | None:
    """The training indices of seed's pool, sorted ([pool_size] int64); None for ratio 1 (the whole pool)."""
    if ratio == 1:
        return None
    y = _labels(labels)
    classes, counts = np.unique(y, return_counts=True)
    rng = numpy_rng(seed, "imbalance")
    kept = [rng.permutation(np.flatnonzero(y == c))[:size] for c, size in zip(classes, class_sizes(counts, ratio),
                                                                                strict=True)]
    return np.sort(np.concatenate(kept)).astype(np.int64)
