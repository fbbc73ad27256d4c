"""TypiClust against the authors' code (a golden fixture, tests/fixtures/README.md) and against a brute force
written from the paper's definitions with explicit differences in float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_geometry import random_inputs

from bench.core.errors import UserError
from strategies import create_strategy
from strategies.typiclust import cluster_order, normalised, typicality, typiclust_picks

FIXTURE = Path(__file__).parents[1] / "fixtures" / "typiclust_reference.npz"


def brute_typiclust(x: np.ndarray, clusters: np.ndarray, n_labeled: int, k: int, distance: str) -> list[int]:
    """The authors' procedure, point by point: kept clusters (> 5 members) by (labeled count, -size, id),
    round robin; in the cluster, the unlabeled unpicked member with the smallest mean distance to its
    min(20, m // 2) nearest such members (first on ties)."""
    x = x / np.sqrt((x * x).sum(1, keepdims=True))
    ids = sorted(set(clusters.tolist()))
    size = {c: int((clusters == c).sum()) for c in ids}
    labeled = {c: int((clusters[:n_labeled] == c).sum()) for c in ids}
    order = sorted((c for c in ids if size[c] > 5), key=lambda c: (labeled[c], -size[c], c))
    free = [i >= n_labeled for i in range(len(x))]
    picks = []
    for i in range(k):
        members = [j for j in range(len(x)) if free[j] and clusters[j] == order[i % len(order)]]
        nn = min(20, len(members) // 2)
        best, best_score = None, None
        for a in members:
            d = sorted(float(((x[a] - x[b]) ** 2).sum()) for b in members if b != a)[:nn]
            d = d if distance == "squared" else [np.sqrt(v) for v in d]
            score = 1.0 / (np.mean(d) + 1e-5)
            if best_score is None or score > best_score:
                best, best_score = a, score
        picks.append(best)
        free[best] = False
    return picks


@pytest.mark.parametrize("case", ["a", "b"])
def test_picks_equal_the_authors_typiclust(case):
    """The authors' TypiClust.select_samples, run with the same k-means labels, picked these rows."""
    f = np.load(FIXTURE, allow_pickle=False)
    x = normalised(torch.from_numpy(f[f"{case}_features"]))
    picks = typiclust_picks(x, f[f"{case}_clusters"], int(f[f"{case}_n_labeled"]), int(f[f"{case}_budget"]))
    np.testing.assert_array_equal(picks, f[f"{case}_picks"])


@pytest.mark.parametrize("distance", ["squared", "l2"])
def test_picks_equal_a_brute_force_for_both_distances(distance):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 3))
    clusters = rng.integers(0, 8, size=90)
    picks = typiclust_picks(normalised(torch.from_numpy(x)), clusters, 10, 14, distance)
    assert picks.tolist() == brute_typiclust(x, clusters, 10, 14, distance)


def test_squared_and_plain_distances_rank_differently():
    """A point with one very near and one far neighbour beats an evenly spaced one under plain L2 only:
    mean(0.1, 1.7) = 0.9 < 1 = mean(1, 1), but mean(0.01, 2.89) = 1.45 > 1."""
    pts = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.1, 5.0], [0.1 - 1.7, 5.0], [0.1, 5.0 + 0.1]])  # [6, 2]
    sq = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    sq[np.arange(6), np.arange(6)] = np.inf
    for distance in ("squared", "l2"):
        score = typicality(torch.from_numpy(pts), 2, distance).numpy()
        nearest = np.sort(sq, axis=1)[:, :2]
        expect = 1 / ((nearest if distance == "squared" else np.sqrt(nearest)).mean(1) + 1e-5)
        np.testing.assert_allclose(score, expect, rtol=1e-12)
        assert (score[0] > score[3]) == (distance == "squared")  # the evenly spaced point 0 wins only squared


def test_cluster_order_by_labeled_then_size_then_id_small_ones_last():
    # cluster 0: 6 members, 1 labeled; 1: 7, 0 labeled; 2: 6, 0 labeled; 3: 5 (dropped); 4: 6, 0 labeled
    clusters = np.array([0] + [3] * 5 + [0] * 5 + [1] * 7 + [2] * 6 + [4] * 6)
    order, kept = cluster_order(clusters, n_labeled=1)
    assert order.tolist() == [1, 2, 4, 0, 3] and kept == 4


def test_exhausted_and_small_clusters_do_not_stop_the_picks():
    """Every cluster has 5 or fewer members (the authors' loop divides by zero): the dropped clusters are then
    visited in the same order, round robin, until every candidate is picked."""
    clusters = np.repeat(np.arange(4), [5, 3, 4, 2])
    x = normalised(torch.randn(14, 4, generator=torch.Generator().manual_seed(0)))
    picks = typiclust_picks(x, clusters, 2, 12)
    assert sorted(picks.tolist()) == sorted(set(picks.tolist())) and min(picks) >= 2 and len(picks) == 12
    # the 2 labeled rows are in cluster 0, which comes last; the others by size: 2 (4 members), 1 (3), 3 (2)
    assert clusters[picks[:5]].tolist() == [2, 1, 3, 0, 2]


@pytest.mark.parametrize("k", [10, 60])  # KMeans (20 + 10 clusters) and MiniBatchKMeans (80)
def test_strategy_picks_distinct_candidates_reproducibly(k):
    strategy = create_strategy("typiclust")
    picks = strategy.select(random_inputs(300, 20, 3), k)
    assert len(set(picks.tolist())) == k and picks.min() >= 0 and picks.max() < 300
    np.testing.assert_array_equal(picks, create_strategy("typiclust").select(random_inputs(300, 20, 3), k))


def test_bad_distance_is_one_line():
    with pytest.raises(UserError, match="'typiclust.distance' parameter must be one of squared, l2. Got 'L1'"):
        create_strategy("typiclust", distance="L1")


@pytest.mark.parametrize("n_init", [-1, "two", 1.5])
def test_bad_n_init_is_one_line(n_init):
    with pytest.raises(UserError, match="typiclust.n_init.* must be a(n| non-negative) integer"):
        create_strategy("typiclust", n_init=n_init)
