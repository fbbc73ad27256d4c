"""BADGE held to the authors' k-means++ seeding (JordanAsh/badge, tests/fixtures/badge.npz: the same uniform draws on
both sides) and to explicit gradient embeddings, including points far from the origin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_geometry import select_contract

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.badge import gradient_embedding_sq_dist, kmeans_pp, loss_gradient_factor

FIXTURE = ROOT / "tests" / "fixtures" / "badge.npz"


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


def reference_inputs(seed: int) -> tuple[PoolInputs, np.ndarray, np.lib.npyio.NpzFile]:
    """The fixture's unlabeled rows as our candidates (the authors' code scores them in pool order), their rows,
    and the fixture."""
    ref = np.load(FIXTURE, allow_pickle=False)
    rows = np.flatnonzero(~ref["labeled"])
    probs, emb = torch.from_numpy(ref["probs"][rows]), torch.from_numpy(ref["embeddings"][rows])
    inputs = PoolInputs(n=rows.size, rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"),
                        probs=probs, embeddings=emb)
    return inputs, rows, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picks_equal_the_authors_badge_under_the_same_draws(seed):
    # the authors draw each centre with scipy's rv_discrete; the fixture drew it by that distribution's inverse CDF
    # at the next number of default_rng(seed).random(), the one uniform per pick that kmeans_pp takes from inputs.rng
    inputs, rows, ref = reference_inputs(seed)
    assert rows[create_strategy("badge").select(inputs, int(ref["k"]))].tolist() == ref[f"picks_{seed}"].tolist()


def test_badge_follows_the_rng():
    picks = [create_strategy("badge").select(reference_inputs(seed)[0], 25).tolist() for seed in (0, 1)]
    assert picks[0] != picks[1] and picks[0][0] == picks[1][0]  # the first centre (the largest norm) is not drawn


def test_select_returns_k_distinct_valid_positions_deterministically():
    select_contract(create_strategy("badge"))
