"""k-means sampling held to DeepAL+'s KMeansSampling (the same k-means random state on both sides,
tests/fixtures/kmeans.npz) and to hand-worked cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bench.core.errors import UserError
from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.kmeans import kmeans_picks, nearest_members

FIXTURE = ROOT / "tests" / "fixtures" / "kmeans.npz"


def test_picks_equal_deepals_kmeans_sampling():
    ref = np.load(FIXTURE, allow_pickle=False)
    for seed, theirs in zip(ref["seeds"], ref["picks"], strict=True):
        assert kmeans_picks(ref["embeddings"], int(ref["k"]), int(seed)).tolist() == theirs.tolist()
    assert len({tuple(p) for p in ref["picks"]}) > 1  # the seed matters: the test is not vacuous


def test_deepals_float32_distances_are_the_reference_convention():
    # case b: every member of a cluster lies at one distance from its mean in real arithmetic, so that rounding
    # decides; the clusters are given (DeepAL+ got them through a KMeans stand-in), so only the distance rule differs
    ref = np.load(FIXTURE, allow_pickle=False)
    emb, centres, labels, theirs = ref["b_embeddings"], ref["b_centres"], ref["b_labels"], ref["b_picks"]
    assert nearest_members(emb, centres, labels, convention="reference").tolist() == theirs.tolist()
    assert kmeans_picks(ref["embeddings"], int(ref["k"]), int(ref["seeds"][0]), convention="reference").tolist() \
        == ref["picks"][0].tolist()
    exact = nearest_members(emb, centres, labels)
    dist = ((emb.astype(np.float64) - centres[labels].astype(np.float64)) ** 2).sum(axis=1)  # [n], independently
    assert labels[exact].tolist() == labels[theirs].tolist() == list(range(6))
    assert (dist[exact] < dist[theirs]).sum() == (exact != theirs).sum() >= 2  # the truly nearest, where they differ
    assert (dist[exact] <= dist[theirs]).all()


def test_each_pick_is_its_clusters_nearest_member():
    x = np.array([[0.0], [1.0], [2.2], [10.0], [10.5], [12.0], [30.0], [31.0], [29.5]], dtype=np.float32)
    # clusters {0, 1, 2.2} (centre 1.067: 1 nearest), {10, 10.5, 12} (10.833: 10.5), {30, 31, 29.5} (30.167: 30)
    for seed in range(5):
        assert sorted(kmeans_picks(x, 3, seed).tolist()) == [1, 4, 6]


def test_duplicates_give_distinct_picks_and_too_many_clusters_are_refused():
    x = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # 4 distinct points, 3 copies each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that it found fewer distinct clusters than asked
        picks = kmeans_picks(x, 6, 0)
    assert np.unique(picks).size == 6 and {int(p) // 3 for p in picks} == {0, 1, 2, 3}
    with pytest.raises(UserError, match="at most one cluster per candidate: 13 clusters for 12 candidates"):
        kmeans_picks(x, 13, 0)


def test_the_strategy_clusters_the_embeddings_from_inputs_rng(cli, tmp_path):
    emb = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))  # [n, d]

    def inputs(seed: int) -> PoolInputs:
        return PoolInputs(n=200, rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"),
                          embeddings=emb)

    strategy = create_strategy("kmeans")
    assert strategy.needs == {"embeddings"} and strategy.params == {"n_init": 1, "convention": "exact"}
    picks = strategy.select(inputs(1), 10)
    expected = kmeans_picks(emb.numpy(), 10, int(np.random.default_rng(1).integers(2**31 - 1)))
    assert picks.tolist() == expected.tolist() == strategy.select(inputs(1), 10).tolist()
    assert strategy.select(inputs(2), 10).tolist() != picks.tolist()
    status, _, stderr = cli("--strategies", "kmeans", "--strategy-param", "kmeans.n_init=0", "--epochs", "1",
                            "--out", tmp_path / "out")
    assert status == 2 and stderr.count("\n") == 1 and "The 'kmeans.n_init' parameter must be" in stderr, stderr
    with pytest.raises(UserError, match="'kmeans.convention' parameter must be 'exact' or 'reference'"):
        create_strategy("kmeans", convention="float32")
