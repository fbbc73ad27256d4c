"""Cluster-Margin against the cure-lab port's round robin (the same clusters and the same fixed draw on both sides,
tests/fixtures/cluster_margin.npz), against a brute force of the paper's Algorithm 1 over scipy's average linkage,
and against hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

import strategies.cluster_margin as cm
from bench.core.errors import UserError
from conftest import ROOT
from strategies import PoolInputs, create_strategy, top_k
from strategies.geometry import condensed_dist
from strategies.margin import Margin

FIXTURE = ROOT / "tests" / "fixtures" / "cluster_margin.npz"


def inputs(emb: np.ndarray, probs: np.ndarray, seed: int = 0) -> PoolInputs:
    return PoolInputs(n=len(emb), rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"),
                      probs=torch.from_numpy(probs), embeddings=torch.from_numpy(emb))


def brute_cluster_margin(emb: np.ndarray, probs: np.ndarray, k: int, k_m: float, epsilon, member: str,
                         seed: int) -> list[int]:
    """Algorithm 1, step by step: the ceil(k_m k) smallest margins (ties to the lower position); their average-
    linkage clusters from scipy on explicit differences; clusters by size, ties by their lowest-margin member; each
    visit takes the member of lowest key left (a uniform key per candidate, drawn once from the seed, or the margin
    rank)."""
    top = np.sort(probs, axis=1)
    margin = top[:, -1] - top[:, -2]
    m = min(len(emb), max(k, math.ceil(k_m * k)))
    cand = np.argsort(margin, kind="stable")[:m]
    tree = linkage(pdist(emb[cand].astype(np.float64)), method="average")
    if epsilon == "auto":
        labels = fcluster(tree, math.ceil(m / 10), criterion="maxclust")
    else:
        assert np.abs(tree[:, 2] - epsilon).min() > 1e-9  # no merge at the threshold: < and <= agree
        labels = fcluster(tree, epsilon, criterion="distance")
    keys = np.random.default_rng(seed).random(m) if member == "random" else np.arange(m)
    clusters = {}
    for pos in range(m):  # in margin order: a cluster's first member is its lowest-margin one
        clusters.setdefault(labels[pos], []).append(pos)
    order = sorted(clusters.values(), key=lambda c: (len(c), c[0]))
    left = [sorted(c, key=lambda p: (keys[p], p)) for c in order]
    picks: list[int] = []
    while len(picks) < k:
        for members in left:
            if members and len(picks) < k:
                picks.append(int(cand[members.pop(0)]))
    return picks


@pytest.mark.parametrize("member", ["margin", "random"])
def test_picks_equal_cure_labs_round_robin_given_their_clusters(member):
    """cure-lab's ClusterMarginSampling: query() as written (each visit takes the lowest-margin member), and its
    round_robin over the margin candidates ordered by the fixed keys (each visit takes the lowest key: the paper's
    random member under a fixed draw)."""
    f = np.load(FIXTURE, allow_pickle=False)
    free = np.flatnonzero(~f["labeled"])  # the candidates: the port's unlabeled rows
    k = int(f["k"])
    candidates = top_k(Margin().score(inputs(f["embeddings"][free], f["probs"][free])), 10 * k, free.size)
    np.testing.assert_array_equal(free[candidates], f["margin_index"])  # the same k_m = 10 k, in the same order
    keys = np.arange(candidates.size) if member == "margin" else f["keys"]
    picks = free[candidates[cm.round_robin(f["hac_labels"][free[candidates]], keys, k)]]
    np.testing.assert_array_equal(picks, f[f"picks_{member}"])
    assert not np.array_equal(f["picks_margin"], f["picks_random"])


@pytest.mark.parametrize(("epsilon", "member"), [("auto", "random"), ("auto", "margin"), (6.1, "random")])
def test_select_equals_a_brute_force_of_algorithm_1(epsilon, member):
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(6, 5)) * 3 + 40  # far from the origin: the distances must survive the offset
    emb = (centres[rng.integers(0, 6, size=150)] + rng.normal(size=(150, 5))).astype(np.float32)
    probs = rng.dirichlet(np.ones(4) * 0.7, size=150)
    strategy = create_strategy("cluster-margin", k_m=4.0, epsilon=epsilon, member=member)
    for seed in range(3):
        picks = strategy.select(inputs(emb, probs, seed), 13)
        assert picks.tolist() == brute_cluster_margin(emb, probs, 13, 4.0, epsilon, member, seed)
        assert np.unique(picks).size == 13


def hand_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Points 0, 1, 3, 10, 11, 35 on a line (mean 10: the centred distances are exact), margins rising with the
    position (0.0, 0.1, ..., 0.5)."""
    emb = np.array([[0.0], [1.0], [3.0], [10.0], [11.0], [35.0]], dtype=np.float32)
    top = 0.5 + np.arange(6) * 0.05  # margin = 2 top - 1 = 0.1 * position
    probs = np.stack([top, 1.0 - top], axis=1)
    return emb, probs


def test_hand_worked_average_linkage_and_round_robin():
    # average linkage: {0,1} and {10,11} at 1; {0,1}+{3} at (3 + 2) / 2 = 2.5; {0,1,3}+{10,11} at 55 / 6 = 9.17
    emb, probs = hand_inputs()
    def clusters(epsilon: float) -> list[int]:
        return cm.by_first_member(cm.hac_clusters(torch.from_numpy(emb), epsilon)).tolist()

    assert clusters(3.0) == [0, 0, 0, 1, 1, 2]
    assert clusters(2.5) == [0, 0, 1, 2, 2, 3]  # merged only below epsilon
    assert clusters(9.2) == [0, 0, 0, 0, 0, 1]
    pick = create_strategy("cluster-margin", k_m=1.0, epsilon=3.0, member="margin").select
    # sizes: {35}: 1, {10, 11}: 2, {0, 1, 3}: 3; each visit the lowest margin left
    assert pick(inputs(emb, probs), 6).tolist() == [5, 3, 0, 4, 1, 2]
    # epsilon 1.5: {0, 1}, {3}, {10, 11}, {35}; of the two singletons, {3} holds the lower margin
    pick = create_strategy("cluster-margin", k_m=1.0, epsilon=1.5, member="margin").select
    assert pick(inputs(emb, probs), 6).tolist() == [2, 5, 0, 3, 1, 4]
    # k_m = 1.5 with k = 2: only the three lowest margins (points 0, 1, 3) are clustered
    pick = create_strategy("cluster-margin", k_m=1.5, epsilon=2.7, member="margin").select
    assert pick(inputs(emb, probs), 2).tolist() == [0, 1]  # one cluster {0, 1, 3}: its two lowest margins


def test_random_member_is_drawn_from_inputs_rng_only():
    emb, probs = hand_inputs()
    pick = create_strategy("cluster-margin", k_m=2.0, epsilon=3.0).select
    first = {tuple(pick(inputs(emb, probs, seed), 3).tolist()) for seed in range(40)}
    # each round takes 35, one of {10, 11}, one of {0, 1, 3}: all 6 combinations appear, nothing else
    assert first == {(5, a, b) for a in (3, 4) for b in (0, 1, 2)}
    assert pick(inputs(emb, probs, 7), 6).tolist() == pick(inputs(emb, probs, 7), 6).tolist()


def test_condensed_distances_equal_pdist_far_from_the_origin():
    x = np.random.default_rng(3).normal(size=(70, 9)) + 1e4  # [70, 9]
    np.testing.assert_allclose(condensed_dist(torch.from_numpy(x), block_elements=200), pdist(x), rtol=0,
                               atol=1e-9)


def test_only_the_k_m_candidates_are_clustered_and_large_sets_use_the_graph(monkeypatch):
    sizes = []
    real = cm.condensed_dist
    monkeypatch.setattr(cm, "condensed_dist", lambda x: sizes.append(x.shape[0]) or real(x))
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(3000, 8)).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=3000)
    assert np.unique(create_strategy("cluster-margin").select(inputs(emb, probs), 7)).size == 7
    assert sizes == [70]  # k_m * k, never the 3000 candidates
    # beyond EXACT_MAX, the k-NN graph: blobs far apart come out as the blobs
    monkeypatch.setattr(cm, "EXACT_MAX", 50)
    monkeypatch.setattr(cm, "condensed_dist", lambda x: pytest.fail("the exact tree was built"))
    blobs = np.repeat(np.arange(4), 40)
    x = torch.from_numpy(blobs[:, None] * 100.0 + rng.normal(size=(160, 3)))
    with pytest.warns(UserWarning, match="connected components"):  # scikit-learn joins the graph's 4 components
        labels = cm.hac_clusters(x, 20.0)
        auto = cm.hac_clusters(x, "auto")
    assert len(set(zip(labels.tolist(), blobs.tolist(), strict=True))) == 4 == np.unique(labels).size
    assert np.unique(auto).size == 16  # ceil(160 / 10)


@pytest.mark.parametrize(("param", "value", "message"), [
    ("k_m", "0.5", "'cluster-margin.k_m' parameter must be a number of at least 1"),
    ("k_m", "inf", "'cluster-margin.k_m' parameter must be a number of at least 1"),
    ("epsilon", "0", "'cluster-margin.epsilon' parameter must be a positive number or 'auto'"),
    ("epsilon", "near", "'cluster-margin.epsilon' parameter must be a positive number or 'auto'"),
    ("member", "first", "'cluster-margin.member' parameter must be one of random, margin"),
])
def test_bad_parameters_are_one_line(cli, tmp_path, param, value, message):
    status, _, stderr = cli("--strategies", "cluster-margin", "--strategy-param", f"cluster-margin.{param}={value}",
                            "--epochs", "1", "--out", tmp_path / "out")
    assert status == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    with pytest.raises(UserError, match="must be a number of at least 1"):
        create_strategy("cluster-margin", k_m=True)
