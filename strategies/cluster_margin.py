"""Cluster-Margin: the lowest-margin candidates, round-robin over their clusters from the smallest (Citovsky et al.,
"Batch Active Learning at Scale", NeurIPS 2021).

The paper's Algorithm 1: hierarchical agglomerative clustering (average linkage, distance threshold epsilon) of the
embeddings; each cycle, the k_m candidates of smallest margin (top-1 minus top-2 probability); their clusters,
sorted by how many of the k_m they hold, smallest first; then rounds over those clusters, one uniformly random
member of each per visit, exhausted clusters passed over, until the budget k is picked.

The authors released no code. Held to the most-cited port, cure-lab/deep-active-learning
(query_strategies/batch_active_learning_at_scale.py, ClusterMarginSampling.round_robin, commit 9fb0380; fixture
tests/fixtures/cluster_margin.npz), given the same clusters, and to a brute force of Algorithm 1 over scipy's
average linkage. The port takes k_m = 10 k as here, but clusters the whole pool once into 20 clusters, and takes
each visited cluster's lowest-margin member (`member=margin` here) where the paper draws one at random
(`member=random`, the default); clusters of one size are visited by its cluster numbering, here by which holds the
lower-margin candidate.

Deliberate differences from the paper:
- The paper clusters the whole pool once, before the first cycle. Here each cycle clusters its k_m margin-selected
  candidates, on the embeddings of this cycle's network: the candidates are a fresh random subset every cycle, and
  the paper's Algorithm 1 only ever reads the clusters of those k_m points. Clusters formed among the k_m alone can
  differ from the pool's restricted to them: average linkage also weighs the points in between.
- Memory is bounded by k_m * k, never by the pool: up to EXACT_MAX margin candidates the exact tree is built from
  their m (m - 1) / 2 float64 distances (0.4 GB at 10,000; scipy's linkage holds a second copy); beyond, merges are
  restricted to a KNN-nearest-neighbour graph (scikit-learn's connectivity-constrained average linkage), the kind
  of approximate HAC the paper itself runs at scale. At 10k and at 50k candidates with k = 1000 and k_m = 10 the
  tree is exact (m = 10,000 either way).

Parameters: `k_m`, the margin candidates as a multiple of the budget (10, the paper's CIFAR and SVHN setting, and
the port's); `epsilon`, the linkage distance below which clusters merge, in the embeddings' units, or "auto" for
ceil(m / 10) clusters (the paper chooses epsilon so that clusters average 10 members); `member`, random or margin.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.core.errors import UserError
from strategies.base import PoolInputs, Strategy, top_k
from strategies.geometry import average_linkage, condensed_dist, knn_average_linkage
from strategies.margin import Margin
from strategies.probcover import positive_or_auto

EXACT_MAX = 10_000  # margin candidates clustered exactly: m (m - 1) / 2 float64 distances, 0.4 GB at 10k
KNN = 30  # neighbours of the graph that restricts the merges beyond EXACT_MAX
MEAN_CLUSTER_SIZE = 10  # epsilon="auto": ceil(m / 10) clusters
MEMBERS = ("random", "margin")


def round_robin(clusters: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """k positions of the items with cluster ids clusters [m] (non-negative integers), in pick order: clusters by
    size ascending (ties by id), one member per cluster per round, each cluster's members by ascending key [m] (ties
    by position); exhausted clusters are passed over."""
    m = clusters.size
    sizes = np.bincount(clusters)  # [n_ids]
    ids = np.flatnonzero(sizes)
    visit = np.zeros(sizes.size, dtype=np.int64)  # each cluster's place in a round
    visit[ids[np.lexsort((ids, sizes[ids]))]] = np.arange(ids.size)
    order = np.lexsort((np.arange(m), keys, clusters))  # by cluster, then key, then position
    within = np.empty(m, dtype=np.int64)  # the round in which each member is taken
    within[order] = np.arange(m) - (np.cumsum(sizes) - sizes)[clusters[order]]
    return np.lexsort((visit[clusters], within))[:k]


def hac_clusters(emb: torch.Tensor, epsilon: float | str) -> np.ndarray:
    """[m] average-linkage cluster ids of emb [m, d]: merged while closer than epsilon, or ceil(m / 10) clusters
    for "auto"; exact up to EXACT_MAX rows, over a KNN graph beyond."""
    m = emb.shape[0]
    if m < 2:
        return np.zeros(m, dtype=np.int64)
    n_clusters, threshold = (math.ceil(m / MEAN_CLUSTER_SIZE), None) if epsilon == "auto" else (None, float(epsilon))
    if m <= EXACT_MAX:
        return average_linkage(condensed_dist(emb), n_clusters, threshold).astype(np.int64)
    x = emb.to(torch.float64).cpu().numpy()
    return knn_average_linkage(x - x.mean(axis=0), KNN, n_clusters, threshold).astype(np.int64)


def by_first_member(clusters: np.ndarray) -> np.ndarray:
    """clusters [m] renumbered 0.. in the order of their first member: in margin order, the cluster holding the
    lower-margin candidate comes first among clusters of one size."""
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse.ravel()]


class ClusterMargin(Strategy):
    """Lowest-margin candidates, round-robin over their average-linkage clusters (Citovsky et al., NeurIPS 2021).

    Clusters this cycle's k_m * budget lowest-margin candidates (the paper: the pool, once). Parameters: `k_m`
    (a multiple of the budget, >= 1), `epsilon` (a linkage distance in embedding units, or "auto": clusters of 10
    on average), `member` (random: the paper's random member per visit; margin: the lowest-margin one, as the
    cure-lab port)."""

    name = "cluster-margin"
    needs = frozenset({"probs", "embeddings"})
    params = {"k_m": 10.0, "epsilon": "auto", "member": "random"}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        k_m = self.k_m
        if isinstance(k_m, bool) or not isinstance(k_m, (int, float)) or not 1.0 <= k_m < math.inf:
            raise UserError(f"The 'cluster-margin.k_m' parameter must be a number of at least 1 (margin candidates "
                            f"per pick). Got {k_m!r} instead.")
        self.epsilon = self.params["epsilon"] = positive_or_auto(self.epsilon, "cluster-margin.epsilon")
        if self.member not in MEMBERS:
            raise UserError(f"The 'cluster-margin.member' parameter must be one of {', '.join(MEMBERS)}. "
                            f"Got {self.member!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        m = min(inputs.n, max(k, math.ceil(self.k_m * k)))
        candidates = top_k(Margin().score(inputs), m, inputs.n)  # [m] smallest margin first, ties to lower position
        clusters = by_first_member(hac_clusters(inputs.embeddings[torch.from_numpy(candidates)].cpu(), self.epsilon))
        # random: a uniform key per candidate, each visit takes its cluster's lowest key left (a uniform draw
        # without replacement); margin: the key is the margin rank
        keys = inputs.rng.random(m) if self.member == "random" else np.arange(m)
        return candidates[round_robin(clusters, keys, k)]

