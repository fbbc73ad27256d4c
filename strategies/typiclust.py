"""TypiClust: the most typical point of each cluster (Hacohen, Dekel & Weinshall, ICML 2022).

Held to the authors' `TypiClust.select_samples` (github.com/avihu111/TypiClust, deep-al/pycls/al/typiclust.py,
commit 4097a71; fixture tests/fixtures/typiclust_reference.npz). As there:

- the pool (labeled rows first, then the candidates) is L2-normalised and clustered into
  min(labeled + budget, 500) clusters: KMeans up to 50 clusters, MiniBatchKMeans (batches of 5000) beyond;
- clusters of 5 or fewer members (labeled ones included) are dropped; the rest are visited by fewest labeled
  members, then largest size, then lowest cluster id, one pick per cluster, wrapping around;
- a pick is the unlabeled, not yet picked member with the highest typicality 1 / (mean distance to its
  K = min(20, m // 2) nearest neighbours among the m such members of its cluster + 1e-5); the distance is the
  squared L2 (faiss IndexFlatL2, `distance="squared"`) or the plain L2 that the paper writes (`distance="l2"`).

The authors cluster the whole training set; the pool here is the labeled set plus the candidates, which is the
same when --subset is unset. They fix scikit-learn's n_init by its defaults before 1.4 (10 for KMeans, 3 for
MiniBatchKMeans); here it is explicit, with the seed drawn from inputs.rng. Where the authors' loop would crash
(a visited cluster with no unlabeled member left, or no cluster above 5 members), this one skips exhausted
clusters and, once every kept cluster is exhausted, goes on over the dropped ones in the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import UserError
from strategies.base import PoolInputs, Strategy
from strategies.geometry import EXACT, kmeans, sq_dist, sq_norms

MIN_CLUSTER_SIZE = 5  # clusters of this many members or fewer are not visited first
MAX_NUM_CLUSTERS = 500
K_NN = 20
KMEANS_MAX = 50  # KMeans up to this many clusters, MiniBatchKMeans beyond
DISTANCES = ("squared", "l2")
BLOCK_ELEMENTS = 2**22  # elements of one [rows, m] distance block: 32 MiB in float64


def normalised(x: torch.Tensor) -> torch.Tensor:
    """Rows of x [N, d] scaled to unit L2 norm, in float64 (a zero row stays zero)."""
    x = x.to(EXACT)
    return x / sq_norms(x).sqrt().clamp_min(1e-300)[:, None]


def cluster_labels(features: torch.Tensor, n_clusters: int, rng: np.random.Generator, n_init: int = 0) -> np.ndarray:
    """[N] k-means cluster ids of features [N, d], as the authors cluster; n_init 0 is their scikit-learn's default
    (10 for KMeans, 3 for MiniBatchKMeans, before 1.4; from 1.4 their code runs 1)."""
    seed = int(rng.integers(2**31 - 1))
    x = features.float().cpu().numpy()  # float32, as the authors' features: k-means ranks nothing exactly
    if n_clusters <= KMEANS_MAX:
        km = kmeans(n_clusters, seed, n_init or 10)
    else:
        km = kmeans(n_clusters, seed, n_init or 3, batch_size=5000)
    return km.fit_predict(x).astype(np.int64)


def typicality(features: torch.Tensor, n_neighbors: int, distance: str = "squared") -> torch.Tensor:
    """[m] 1 / (mean distance to the n_neighbors nearest other rows of features [m, d] + 1e-5); all zero when
    n_neighbors is 0 (the authors' mean over no neighbours is NaN, and their argmax then takes the first row)."""
    m = features.shape[0]
    if n_neighbors == 0:
        return torch.zeros(m, dtype=EXACT)
    norms = sq_norms(features)  # [m]
    rows = max(1, BLOCK_ELEMENTS // m)
    mean = torch.empty(m, dtype=EXACT)
    for r in range(0, m, rows):
        block = sq_dist(norms[r:r + rows, None], norms, features[r:r + rows] @ features.T)  # [rows, m]
        block[torch.arange(block.shape[0]), torch.arange(r, r + block.shape[0])] = torch.inf  # not its own neighbour
        nearest = block.topk(n_neighbors, dim=1, largest=False).values  # [rows, K]
        mean[r:r + rows] = (nearest if distance == "squared" else nearest.sqrt()).mean(dim=1)
    return 1.0 / (mean + 1e-5)


def cluster_order(clusters: np.ndarray, n_labeled: int) -> tuple[np.ndarray, int]:
    """Cluster ids in visiting order, and how many of them are kept: the kept ones (more than MIN_CLUSTER_SIZE
    members) by fewest labeled members, then largest size, then lowest id; then the dropped ones, likewise."""
    sizes = np.bincount(clusters)  # [n_ids], by cluster id
    labeled = np.bincount(clusters[:n_labeled], minlength=sizes.size)
    ids = np.flatnonzero(sizes)
    small = sizes[ids] <= MIN_CLUSTER_SIZE
    order = ids[np.lexsort((ids, -sizes[ids], labeled[ids], small))]  # last key is primary
    return order, int(np.count_nonzero(~small))


def typiclust_picks(features: torch.Tensor, clusters: np.ndarray, n_labeled: int, k: int,
                    distance: str = "squared") -> np.ndarray:
    """k rows of the pool features [N, d] (labeled rows first; normalised by the caller) with cluster ids
    clusters [N] (non-negative integers), in pick order; every row is >= n_labeled."""
    free = np.ones(len(clusters), dtype=bool)  # unlabeled and not yet picked
    free[:n_labeled] = False
    left = np.bincount(clusters[free], minlength=clusters.max() + 1)  # [n_ids] free members per cluster
    order, kept = cluster_order(clusters, n_labeled)
    picks: list[int] = []
    visit = 0  # the authors visit cluster (pick number mod the kept clusters); exhausted ones are passed over
    while len(picks) < k:
        visiting = order[:kept] if left[order[:kept]].any() else order  # the dropped ones once the kept run dry
        cluster = visiting[visit % len(visiting)]
        visit += 1
        if left[cluster] == 0:
            continue
        members = np.flatnonzero(free & (clusters == cluster))
        score = typicality(features[members], min(K_NN, len(members) // 2), distance)
        pick = int(members[int(torch.argmax(score))])  # the first maximal member, as numpy's argmax
        picks.append(pick)
        free[pick] = False
        left[cluster] -= 1
    return np.array(picks, dtype=np.int64)


class TypiClust(Strategy):
    """Most typical point of each k-means cluster of the run's embeddings (Hacohen, Dekel & Weinshall, ICML 2022).

    Runs on the run's penultimate embeddings (the paper used self-supervised features: --train-mode frozen with
    pretrained --weights gives that setting). Parameter `distance`: "squared" (the authors' code) or "l2" (the
    paper's formula); `n_init`, k-means restarts (0: 10 for KMeans and 3 for MiniBatchKMeans, the defaults of the
    scikit-learn the authors ran; their code under scikit-learn 1.4 or later runs 1)."""

    name = "typiclust"
    needs = frozenset({"embeddings", "labeled_embeddings"})
    params = {"distance": "squared", "n_init": 0}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.distance not in DISTANCES:
            raise UserError(f"The 'typiclust.distance' parameter must be one of {', '.join(DISTANCES)}. "
                            f"Got {self.distance!r} instead.")
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, int) or self.n_init < 0:
            raise UserError(f"The 'typiclust.n_init' parameter must be a non-negative integer (0: the authors' "
                            f"scikit-learn defaults). Got {self.n_init!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        labeled = inputs.labeled_embeddings.cpu()  # [L, d]
        pool = normalised(torch.cat([labeled, inputs.embeddings.cpu()]))  # [L + n, d]
        n_clusters = min(labeled.shape[0] + k, MAX_NUM_CLUSTERS, pool.shape[0])
        clusters = cluster_labels(pool, n_clusters, inputs.rng, self.n_init)
        return typiclust_picks(pool, clusters, labeled.shape[0], k, self.distance) - labeled.shape[0]
