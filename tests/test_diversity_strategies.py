"""Core-set, BADGE and BALD against independent computations: brute-force distance matrices, explicit
gradient embeddings, hand-worked entropies and an exact enumeration of dropout masks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.models import create_model
from strategies import PoolInputs, create_strategy
from strategies.badge import gradient_embedding_sq_dist, kmeans_pp, loss_gradient_factor
from strategies.bald import bald_score, mc_dropout_probs
from strategies.core_set import k_center_greedy, min_sq_dist

# ------------------------------------------------------------------------------------- independent versions


def brute_k_center(pool: np.ndarray, centers: np.ndarray, k: int) -> list[int]:
    """k-center greedy from the full distance matrix ([N, N + L], explicit differences)."""
    everything = np.concatenate([centers, pool])
    dist = ((pool[:, None, :] - everything[None, :, :]) ** 2).sum(-1)  # [N, L + N]
    columns = list(range(len(centers)))
    picks: list[int] = []
    for _ in range(k):
        if columns:
            nearest = dist[:, columns].min(axis=1)
        else:  # no centres: farthest from the mean
            nearest = ((pool - pool.mean(axis=0)) ** 2).sum(-1)
        nearest[picks] = -1.0
        pick = int(np.argmax(nearest))  # numpy: first maximal position
        picks.append(pick)
        columns.append(len(centers) + pick)
    return picks


def explicit_gradient_embeddings(probs: np.ndarray, h: np.ndarray) -> np.ndarray:
    """[n, C * d] g = (p - onehot(argmax p)) outer h, formed explicitly."""
    a = probs.copy()
    a[np.arange(len(a)), probs.argmax(axis=1)] -= 1.0
    return (a[:, :, None] * h[:, None, :]).reshape(len(a), -1)


def brute_kmeans_pp(g: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """k-means++ seeding on explicit embeddings: largest norm first, then D^2 sampling by inverse CDF."""
    picks = [int(np.argmax((g ** 2).sum(1)))]
    while len(picks) < k:
        d2 = np.min([((g - g[j]) ** 2).sum(1) for j in picks], axis=0)  # [n]
        d2[picks] = 0.0
        cum = np.cumsum(d2)
        picks.append(int(np.searchsorted(cum, cum[-1] * rng.random(), side="right")))
    return picks


def random_inputs(n: int, n_labeled: int, seed: int, model=None) -> PoolInputs:
    g = torch.Generator().manual_seed(seed)
    model = model or create_model("cnn", 1, 10, generator_seed=seed).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = model.classifier(emb).detach()
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits, 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())


# -------------------------------------------------------------------------------------------------- core-set


@pytest.mark.parametrize("n_centers", [0, 1, 25])
def test_k_center_greedy_matches_brute_force(n_centers):
    rng = np.random.default_rng(n_centers)
    pool, centers = rng.normal(size=(120, 6)), rng.normal(size=(n_centers, 6))
    expected = brute_k_center(pool, centers, 30)
    got = k_center_greedy(torch.from_numpy(pool), torch.from_numpy(centers), 30)
    assert got.tolist() == expected
    # tiny chunks: many row and column blocks, same picks
    assert k_center_greedy(torch.from_numpy(pool), torch.from_numpy(centers), 30, chunk_bytes=200).tolist() == expected


def test_min_sq_dist_in_chunks_equals_explicit_minimum():
    rng = np.random.default_rng(1)
    pool, centers = rng.normal(size=(57, 5)), rng.normal(size=(43, 5))
    explicit = ((pool[:, None] - centers[None]) ** 2).sum(-1).min(1)
    got = min_sq_dist(torch.from_numpy(pool), torch.from_numpy(centers), chunk_bytes=8 * 7)  # 7-element blocks
    np.testing.assert_allclose(got.numpy(), explicit, rtol=1e-10, atol=1e-10)


def test_k_center_greedy_hand_worked_ties_and_no_centres():
    pool = torch.tensor([[0.0], [2.0], [-2.0], [1.0]])
    # distances to the centre 0: 0, 4, 4, 1 -> tie between positions 1 and 2 goes to 1; then -2 (4), 1 (1), 0
    assert k_center_greedy(pool, torch.tensor([[0.0]]), 4).tolist() == [1, 2, 3, 0]
    # no centres: the mean is 2, farthest is 5 (position 2); then 0 (25 away), then 1
    assert k_center_greedy(torch.tensor([[0.0], [1.0], [5.0]]), torch.empty(0, 1), 3).tolist() == [2, 0, 1]


def test_k_center_greedy_exact_duplicates_are_never_repicked():
    pool = torch.ones(10, 3)
    assert sorted(k_center_greedy(pool, torch.ones(2, 3), 10).tolist()) == list(range(10))


# -------------------------------------------------------------------------------------------------- BADGE


def test_factorised_distances_equal_explicit_gradient_embedding_distances():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), size=15)  # [15, 4]
    h = rng.normal(size=(15, 7))
    g = explicit_gradient_embeddings(probs, h)  # [15, 28]
    explicit = ((g[:, None] - g[None]) ** 2).sum(-1)  # [15, 15]
    a = loss_gradient_factor(torch.from_numpy(probs))
    ht = torch.from_numpy(h)
    got = gradient_embedding_sq_dist(a, ht, a, ht)
    np.testing.assert_allclose(got.numpy(), explicit, rtol=1e-9, atol=1e-12)
    assert (got >= 0).all()  # the diagonal is clamped, not slightly negative
    sub = gradient_embedding_sq_dist(a, ht, a[[3, 8]], ht[[3, 8]])  # [15, 2] against a few centres
    np.testing.assert_allclose(sub.numpy(), explicit[:, [3, 8]], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_pp_matches_explicit_seeding(seed):
    rng = np.random.default_rng(10 + seed)
    probs, h = rng.dirichlet(np.ones(5) * 0.5, size=200), rng.normal(size=(200, 8))
    expected = brute_kmeans_pp(explicit_gradient_embeddings(probs, h), 25, np.random.default_rng(seed))
    got = kmeans_pp(loss_gradient_factor(torch.from_numpy(probs)), torch.from_numpy(h), 25,
                    np.random.default_rng(seed))
    assert got.tolist() == expected


def test_kmeans_pp_with_all_gradients_zero_still_picks_distinct_points():
    probs = torch.zeros(30, 3)
    probs[:, 1] = 1.0  # one-hot predictions: a = 0, every gradient embedding is 0
    picks = kmeans_pp(loss_gradient_factor(probs), torch.randn(30, 4), 30, np.random.default_rng(0))
    assert sorted(picks.tolist()) == list(range(30))


def test_kmeans_pp_never_repicks_exact_duplicates_despite_rounding():
    # identical float32 rows: the factorised distance of a point to itself rounds to a small positive value
    # (about 5e-7 here), so only the explicit exclusion of picked points keeps them from being drawn again
    probs = torch.tensor([[0.7, 0.2, 0.1]]).repeat(20, 1)
    h = torch.tensor([[1.1, 2.3, 3.7, 0.3]]).repeat(20, 1)
    a = loss_gradient_factor(probs)
    assert gradient_embedding_sq_dist(a[:1], h[:1], a[:1], h[:1]).item() > 0  # the premise
    for seed in range(5):
        picks = kmeans_pp(a, h, 20, np.random.default_rng(seed))
        assert sorted(picks.tolist()) == list(range(20))


# -------------------------------------------------------------------------------------------------- BALD


def test_bald_score_hand_worked():
    samples = torch.tensor([
        [[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1]],
        [[0.1, 0.9, 0.0], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]],
    ], dtype=torch.float64)  # [T=2, n=3, C=3]

    def h(*p):
        return -sum(x * math.log(x) for x in p if x > 0)

    expected = [
        h(0.5, 0.5) - (h(0.9, 0.1) + h(0.1, 0.9)) / 2,  # = ln 2 - H(0.9, 0.1) = 0.368064
        h(0.4, 0.25, 0.35) - (h(0.6, 0.3, 0.1) + h(0.2, 0.2, 0.6)) / 2,
        0.0,  # the samples agree
    ]
    np.testing.assert_allclose(bald_score(samples).numpy(), expected, rtol=1e-12, atol=1e-15)
    assert expected[0] == pytest.approx(0.368064, abs=1e-6)


def test_bald_score_is_zero_when_all_samples_agree():
    p = torch.softmax(torch.randn(7, 10, generator=torch.Generator().manual_seed(0)), 1)  # float32
    assert torch.allclose(bald_score(p.expand(20, 7, 10)), torch.zeros(7, dtype=torch.float64), atol=1e-6)


def test_mc_dropout_estimate_matches_exact_enumeration_of_masks():
    # a 2-d head: enumerate the 4 masks exactly (keep prob 0.75, inverted scaling) and compare the mutual
    # information with the Monte-Carlo estimate from many samples; averaging logits would give another value
    head = torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.5]]))
        head.bias.copy_(torch.tensor([0.0, 0.2, -0.1]))
    x = torch.tensor([[1.5, 1.0], [0.0, 0.0], [3.0, -2.0]], dtype=torch.float64)
    rate = 0.25
    probs, weights = [], []
    for mask in itertools.product([0.0, 1.0], repeat=2):
        m = torch.tensor(mask, dtype=torch.float64)
        probs.append(torch.softmax(head(x * m / (1 - rate)), 1).detach())
        weights.append(math.prod(1 - rate if keep else rate for keep in mask))
    w = torch.tensor(weights, dtype=torch.float64)[:, None, None]
    stacked = torch.stack(probs)  # [4, n, C]
    mean = (w * stacked).sum(0)
    exact = -(mean * mean.log()).sum(1) + (w[:, :, 0] * (stacked * stacked.log()).sum(2)).sum(0)

    with torch.no_grad():  # 1000 copies of each row x 4 samples: 4000 independent masks per row, few torch calls
        sampled = mc_dropout_probs(head, x.repeat(1000, 1), 4, rate, torch.Generator().manual_seed(0))
    estimate = bald_score(sampled.reshape(4, 1000, 3, 3).flatten(0, 1))  # [4000, n=3, C=3]
    np.testing.assert_allclose(estimate.numpy(), exact.numpy(), atol=0.01)
    assert estimate[1] == pytest.approx(0.0, abs=1e-12)  # a zero embedding: every mask gives the bias's prediction
    assert exact[0] > 0.05 and exact[2] > 0.05  # the test is not vacuous


def test_bald_strategy_degenerate_settings_give_zero_scores():
    inputs = random_inputs(50, 5, seed=3)
    assert (create_strategy("bald", dropout=0.0).score(inputs) < 1e-9).all()  # no dropout: samples agree
    assert (create_strategy("bald", samples=1).score(random_inputs(50, 5, seed=3)) == 0).all()  # T = 1
    assert (create_strategy("bald").score(random_inputs(50, 5, seed=3)) > 0).all()


def test_bald_parameters_are_parsed_and_checked():
    bald = create_strategy("bald", samples="5", dropout="0.1")
    assert (bald.samples, bald.dropout) == (5, 0.1)
    for bad in ({"samples": "0"}, {"dropout": "1.0"}, {"dropout": "-0.1"}, {"samples": "2.5"}):
        with pytest.raises(UserError):
            create_strategy("bald", **bad)


# -------------------------------------------------------------------------------------------------- all three


@pytest.mark.parametrize("name", ["core-set", "badge", "bald"])
def test_select_returns_k_distinct_valid_positions_deterministically(name):
    strategy = create_strategy(name)
    picks = strategy.select(random_inputs(300, 40, seed=4), 60)
    assert picks.shape == (60,) and np.unique(picks).size == 60
    assert picks.min() >= 0 and picks.max() < 300
    assert strategy.select(random_inputs(300, 40, seed=4), 60).tolist() == picks.tolist()  # same seed


@pytest.mark.parametrize("name", ["badge", "bald"])
def test_randomised_strategies_follow_the_rng(name):
    strategy = create_strategy(name)
    inputs = random_inputs(300, 40, seed=4)
    first = strategy.select(inputs, 60)
    inputs.rng = np.random.default_rng(99)
    assert strategy.select(inputs, 60).tolist() != first.tolist()
