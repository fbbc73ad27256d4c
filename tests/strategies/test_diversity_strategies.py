"""Core-set and BADGE against independent computations: brute-force distance matrices from explicit
differences in float64 and explicit gradient embeddings, including points far from the origin and exact ties.
(BALD's tests are in test_bald.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.backbones import create_model
from strategies import PoolInputs, create_strategy
from strategies.badge import gradient_embedding_sq_dist, kmeans_pp, loss_gradient_factor
from strategies.core_set import k_center_greedy, min_sq_dist
from strategies.geometry import sq_norms

# ------------------------------------------------------------------------------------- independent versions


def brute_k_center(pool: np.ndarray, centers: np.ndarray, k: int) -> list[int]:
    """k-center greedy from the full distance matrix ([N, N + L], explicit differences in float64); ties go
    to the lowest position."""
    pool, centers = pool.astype(np.float64), centers.astype(np.float64)
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
    """k-means++ seeding on explicit embeddings (cast to float64): largest norm first, then D^2 sampling by
    inverse CDF."""
    g = g.astype(np.float64)
    picks = [int(np.argmax((g ** 2).sum(1)))]
    d2 = np.full(len(g), np.inf)  # [n]
    while len(picks) < k:
        d2 = np.minimum(d2, ((g - g[picks[-1]]) ** 2).sum(1))
        d2[picks] = 0.0
        cum = np.cumsum(d2)
        picks.append(int(np.searchsorted(cum, cum[-1] * rng.random(), side="right")))
    return picks


def post_relu(rng: np.random.Generator, n: int, d: int, offset: float) -> np.ndarray:
    """[n, d] float32 post-ReLU-like embeddings with a large common component `offset`."""
    return (np.maximum(rng.normal(size=(n, d)), 0.0) + offset).astype(np.float32)


GRID = np.array([(i, j) for i in range(10) for j in range(10)], dtype=np.float64)  # [100, 2]: exact ties


def random_inputs(n: int, n_labeled: int, seed: int, model=None) -> PoolInputs:
    g = torch.Generator().manual_seed(seed)
    model = model or create_model("cnn", 1, 10, generator_seed=seed).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = model.classifier(emb).detach()
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits, 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())


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


@pytest.mark.parametrize("n_centers", [0, 20])
@pytest.mark.parametrize("offset", [300.0, 1000.0])
def test_k_center_greedy_equals_float64_brute_force_far_from_the_origin(offset, n_centers):
    # float32 embeddings with a large common component: |x|^2 and 2 x.c share most of their float32 digits
    rng = np.random.default_rng(7)
    pool, centers = post_relu(rng, 300, 32, offset), post_relu(rng, n_centers, 32, offset)
    expected = brute_k_center(pool, centers, 40)
    assert k_center_greedy(torch.from_numpy(pool), torch.from_numpy(centers), 40).tolist() == expected
    assert k_center_greedy(torch.from_numpy(pool), torch.from_numpy(centers), 40,
                           chunk_bytes=2000).tolist() == expected


@pytest.mark.parametrize("centers", [[], [[0.0, 0.0]], [[4.0, 5.0], [9.0, 2.0]]])
@pytest.mark.parametrize(("dtype", "offset"), [(torch.float64, 0.0), (torch.float32, 1000.0)])
def test_k_center_greedy_gives_exact_ties_to_the_lowest_position_on_a_grid(centers, dtype, offset):
    # a 10 x 10 integer grid: most picks are among points at exactly equal distances
    centers = np.array(centers).reshape(-1, 2)
    expected = brute_k_center(GRID, centers, 100)  # exact in float64: integer coordinates
    got = k_center_greedy(torch.tensor(GRID + offset, dtype=dtype), torch.tensor(centers + offset, dtype=dtype), 100)
    assert got.tolist() == expected


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


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_kmeans_pp_equals_explicit_seeding_far_from_the_origin(offset):
    # float32 inputs; 3 distinct predictions, so many pairs share a and their distance |a|^2 |h_i - h_j|^2 lies
    # in the digits of h that the offset pushes out of float32's factorised products
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), size=3)[rng.integers(3, size=300)].astype(np.float32)  # [300, 5]
    h = post_relu(rng, 300, 64, offset)  # [300, 64]
    expected = brute_kmeans_pp(explicit_gradient_embeddings(probs.astype(np.float64), h.astype(np.float64)), 60,
                               np.random.default_rng(1))
    draws = np.random.default_rng(1)
    got = kmeans_pp(loss_gradient_factor(torch.from_numpy(probs)), torch.from_numpy(h), 60, draws)
    assert got.tolist() == expected
    reference = np.random.default_rng(1)
    reference.random(59)
    assert draws.random() == reference.random()  # one draw per pick after the first, no more


def test_kmeans_pp_with_all_gradients_zero_still_picks_distinct_points():
    probs = torch.zeros(30, 3)
    probs[:, 1] = 1.0  # one-hot predictions: a = 0, every gradient embedding is 0
    picks = kmeans_pp(loss_gradient_factor(probs), torch.randn(30, 4), 30, np.random.default_rng(0))
    assert sorted(picks.tolist()) == list(range(30))


def test_kmeans_pp_never_repicks_exact_duplicates_despite_rounding(monkeypatch):
    # identical rows: the factorised distance of a point to itself can round to a small positive value (about
    # 1e-11 in float64 on some BLAS builds, exactly 0 on others), so only the explicit exclusion of picked
    # points keeps them from being drawn again. The rounding is made to happen here on every machine.
    import strategies.badge as badge

    exact = badge.gradient_embedding_sq_dist
    monkeypatch.setattr(badge, "gradient_embedding_sq_dist", lambda *args: exact(*args) + 1e-11)
    rng = np.random.default_rng(4)
    probs = torch.from_numpy(rng.dirichlet(np.ones(3), size=1)).repeat(20, 1)  # [20, 3]
    h = torch.from_numpy(rng.normal(size=(1, 8)) + 100.0).repeat(20, 1)  # [20, 8]
    a = loss_gradient_factor(probs)
    assert (badge.gradient_embedding_sq_dist(a[:1], h[:1], a[:1], h[:1]) > 0).all()  # the premise
    for seed in range(5):
        picks = kmeans_pp(a, h, 20, np.random.default_rng(seed))
        assert sorted(picks.tolist()) == list(range(20))


# -------------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize("name", ["core-set", "badge"])
def test_select_returns_k_distinct_valid_positions_deterministically(name):
    strategy = create_strategy(name)
    picks = strategy.select(random_inputs(300, 40, seed=4), 60)
    assert picks.shape == (60,) and np.unique(picks).size == 60
    assert picks.min() >= 0 and picks.max() < 300
    assert strategy.select(random_inputs(300, 40, seed=4), 60).tolist() == picks.tolist()  # same seed


def test_badge_follows_the_rng():
    strategy = create_strategy("badge")
    inputs = random_inputs(300, 40, seed=4)
    first = strategy.select(inputs, 60)
    inputs.rng = np.random.default_rng(99)
    assert strategy.select(inputs, 60).tolist() != first.tolist()
