"""strategies.geometry, what the diversity strategies share: exact squared norms and distances, the clusterings
(average linkage cut by count or by a strict threshold, k-means by batch size). The strategies that rank by its
distances are tested in their own files (test_core_set.py, test_badge.py); condensed_dist's in test_cluster_margin.py.
random_inputs and select_contract serve the diversity strategies' tests."""

from __future__ import annotations

import numpy as np
import torch

from bench.models.backbones import create_model
from strategies import PoolInputs, Strategy
from strategies.geometry import average_linkage, kmeans, knn_average_linkage, sq_dist, sq_norms


def random_inputs(n: int, n_labeled: int, seed: int, model=None) -> PoolInputs:
    g = torch.Generator().manual_seed(seed)
    model = model or create_model("cnn", 1, 10, generator_seed=seed).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = model.classifier(emb).detach()
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits, 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())



def select_contract(strategy: Strategy) -> None:
    """What a strategy that ranks by distances must do: k distinct valid positions, the same for the same seed."""
    picks = strategy.select(random_inputs(300, 40, seed=4), 60)
    assert picks.shape == (60,) and np.unique(picks).size == 60
    assert picks.min() >= 0 and picks.max() < 300
    assert strategy.select(random_inputs(300, 40, seed=4), 60).tolist() == picks.tolist()  # same seed

# -------------------------------------------------------------------------------------------- shared geometry


def test_sq_norms_are_exact_sums_of_squares_in_blocks(monkeypatch):
    monkeypatch.setattr("strategies.geometry.BLOCK_ELEMENTS", 6)  # 3 rows per block: 4 blocks, the last short
    x = torch.tensor([[1.0, 1.0], [3.0, 4.0], [0.1, 0.2], [1.0, 2.0], [0.0, 0.0], [5.0, 5.0], [2.0, 1.0],
                      [7.0, 0.0], [1.0, 3.0], [1.0, 7.0]])  # [10, 2]
    for dtype in (torch.float64, torch.float32):
        expected = (x.to(dtype).numpy().astype(np.float64) ** 2).sum(1)  # squared exactly in float64
        got = sq_norms(x.to(dtype))
        assert got.dtype == torch.float64 and got.tolist() == expected.tolist()  # 2, not sqrt(2) ** 2
        assert got[3] == got[6] == 5.0 and got[5] == got[9] == 50.0  # ties stay ties


def test_sq_dist_expands_in_place_and_clamps_rounding_below_zero():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # [2, 2]
    c = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # [3, 2]
    dots = x @ c.T  # [2, 3]
    got = sq_dist(sq_norms(x)[:, None], sq_norms(c), dots)
    assert got.data_ptr() == dots.data_ptr()  # written into dots: no second [n, m] matrix
    assert got.tolist() == [[0.0, 1.0, 1.0], [5.0, 4.0, 2.0]]  # |x - c|^2 by hand
    rounded = torch.tensor([[1.0 + 1e-12]], dtype=torch.float64)  # x.c a hair above (|x|^2 + |c|^2) / 2
    assert sq_dist(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64),
                   rounded).item() == 0.0


def partition(ids) -> list[list[int]]:
    """The groups of positions that share an id, whatever the ids' numbering."""
    groups: dict[int, list[int]] = {}
    for position, i in enumerate(np.asarray(ids).tolist()):
        groups.setdefault(i, []).append(position)
    return sorted(groups.values())


def test_average_linkage_cut_by_count_or_merged_strictly_below_a_threshold():
    # points 0, 1, 3, 10 on a line: average linkage merges {0, 1} at 1, then {0, 1} and 3 at (3 + 2) / 2 = 2.5,
    # then 10 at (10 + 9 + 7) / 3
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]], dtype=torch.float64)
    dist = np.array([1.0, 3.0, 10.0, 2.0, 9.0, 7.0])  # condensed: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert partition(average_linkage(dist, 2, None)) == [[0, 1, 2], [3]]
    assert partition(average_linkage(dist, 3, None)) == [[0, 1], [2], [3]]
    assert partition(average_linkage(dist, None, 2.5)) == [[0, 1], [2], [3]]  # a merge at the threshold is not made
    assert partition(average_linkage(dist, None, 2.5 + 1e-9)) == [[0, 1, 2], [3]]
    assert sorted(set(average_linkage(dist, 3, None).tolist())) == [0, 1, 2]  # ids from 0
    # scikit-learn's graph-restricted linkage, over a graph joining every point: the same tree
    assert partition(knn_average_linkage(x.numpy(), 3, None, 2.5)) == [[0, 1], [2], [3]]
    assert partition(knn_average_linkage(x.numpy(), 3, 2, None)) == [[0, 1, 2], [3]]


def test_kmeans_is_minibatch_only_given_a_batch_size():
    from sklearn.cluster import KMeans, MiniBatchKMeans

    full, mini = kmeans(3, seed=7, n_init=2), kmeans(3, seed=7, n_init=2, batch_size=50)
    assert type(full) is KMeans and type(mini) is MiniBatchKMeans
    assert (full.n_clusters, full.random_state, full.n_init) == (3, 7, 2)
    assert (mini.n_clusters, mini.random_state, mini.n_init, mini.batch_size) == (3, 7, 2, 50)
