"""Core-set (k-center greedy) held to DeepAL+'s KCenterGreedy (tests/fixtures/coreset.npz) and to a brute force:
full distance matrices from explicit differences in float64, including points far from the origin and exact ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_geometry import select_contract

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.core_set import k_center_greedy, min_sq_dist


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


def post_relu(rng: np.random.Generator, n: int, d: int, offset: float) -> np.ndarray:
    """[n, d] float32 post-ReLU-like embeddings with a large common component `offset`."""
    return (np.maximum(rng.normal(size=(n, d)), 0.0) + offset).astype(np.float32)


GRID = np.array([(i, j) for i in range(10) for j in range(10)], dtype=np.float64)  # [100, 2]: exact ties


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


def test_picks_equal_deepals_k_center_greedy():
    ref = np.load(ROOT / "tests" / "fixtures" / "coreset.npz", allow_pickle=False)
    emb, labeled = torch.from_numpy(ref["embeddings"]), ref["labeled"]
    rows = np.flatnonzero(~labeled)  # DeepAL+'s unlabeled rows, in pool order: our candidates
    inputs = PoolInputs(n=rows.size, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                        embeddings=emb[rows], labeled_embeddings=emb[labeled])
    picks = rows[create_strategy("core-set").select(inputs, int(ref["k"]))]
    assert sorted(picks.tolist()) == ref["picks"].tolist()  # what KCenterGreedy.query returns: the set, sorted
    assert picks.tolist() == ref["pick_order"].tolist()  # the order, read off query(1), query(2), ...


def test_select_returns_k_distinct_valid_positions_deterministically():
    select_contract(create_strategy("core-set"))
