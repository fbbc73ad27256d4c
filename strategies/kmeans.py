"""k-means sampling: the candidate nearest each of k k-means centroids of the candidates' embeddings (the baseline
of Zhan, Wang, Chen & Chan's DeepAL+ survey, arXiv 2022).

Held to DeepAL+ (SineZHAN/deepALplus, query_strategies/kmeans_sampling.py, KMeansSampling.query): scikit-learn's
KMeans with k = the budget on the candidates' embeddings, then in each cluster, by cluster number, the member of
least squared distance to its centre. The seed comes from inputs.rng and n_init is given explicitly (DeepAL+ leaves
both to scikit-learn's defaults: a random state per call, and n_init "auto", one k-means++ start since 1.4).

The distances to the centres are float64 here (`convention=exact`); DeepAL+ takes them in float32, whose rounding
over 512 dimensions picks a member other than the nearest in about 2% of clusters at 1000 clusters of 10k random
embeddings: `--strategy-param kmeans.convention=reference` computes them as DeepAL+ does.
"""

from __future__ import annotations

import numpy as np

from bench.core.errors import UserError
from strategies.base import PoolInputs, Strategy
from strategies.geometry import kmeans


def kmeans_picks(emb: np.ndarray, k: int, seed: int, n_init: int = 1, convention: str = "exact") -> np.ndarray:
    """[k] positions: the nearest member of each of k k-means clusters of emb ([n, d] float32), by cluster number."""
    if k > emb.shape[0]:
        raise UserError(f"k-means needs at most one cluster per candidate: {k} clusters for {emb.shape[0]} candidates; "
                        "lower the budget or raise --subset.")
    km = kmeans(k, seed, n_init).fit(emb)
    return nearest_members(emb, km.cluster_centers_, km.labels_, convention)


def nearest_members(emb: np.ndarray, centres: np.ndarray, labels: np.ndarray, convention: str = "exact") -> np.ndarray:
    """[len(centres)] positions: each cluster's member of least squared distance to its centre ([k, d]; labels: [n]),
    by cluster number, ties to the lower position. A cluster left empty (fewer distinct points than clusters) gives
    its pick to the next-nearest member of any cluster."""
    own = centres[labels]  # [n, d], float32 as emb
    diff = emb - own if convention == "reference" else emb.astype(np.float64) - own  # [n, d]
    dist = (diff * diff).sum(axis=1)  # [n]
    order = np.lexsort((np.arange(dist.size), dist, labels))  # by cluster, then distance, then position
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]  # each cluster's nearest member
    rest = order[~first][np.lexsort((order[~first], dist[order[~first]]))]  # next-nearest, for empty clusters
    return np.concatenate([order[first], rest])[:len(centres)]


class KMeansSampling(Strategy):
    """The candidate nearest each k-means centroid of the embeddings (DeepAL+'s KMeansSampling; Zhan et al., 2022).

    Parameters: `n_init` (k-means restarts, the lowest inertia kept); `convention` (exact: float64 distances to the
    centres; reference: DeepAL+'s float32 ones)."""

    name = "kmeans"
    needs = frozenset({"embeddings"})
    params = {"n_init": 1, "convention": "exact"}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.n_init < 1:
            raise UserError(f"The 'kmeans.n_init' parameter must be a positive integer. Got {self.n_init} instead.")
        if self.convention not in ("exact", "reference"):
            raise UserError(f"The 'kmeans.convention' parameter must be 'exact' or 'reference'. Got "
                            f"{self.convention!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        emb = inputs.embeddings.detach().float().cpu().numpy()  # [n, d] float32, as DeepAL+ clusters them
        return kmeans_picks(emb, k, int(inputs.rng.integers(2**31 - 1)), self.n_init, self.convention)
