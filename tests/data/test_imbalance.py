"""bench.data.imbalance: the exponential class profile by hand, each seed's pool drawn from (seed, "imbalance"), and
the loop drawing every strategy's initial set and candidates from that one pool (the paired design holds)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.data.imbalance import class_sizes, pool_indices, pool_size
from bench.training.jobs import JobSpec
from bench.training.loop import candidates, job_order, start_state

LABELS = np.repeat(np.arange(5), [120, 100, 110, 100, 130])  # [560], the smallest class 100


def test_the_profile_by_hand():
    # m = 100, R = 16, C = 5: 100 * 16 ** (-k / 4) = 100, 50, 25, 12.5, 6.25 -> floors
    assert class_sizes(np.array([120, 100, 110, 100, 130]), 16).tolist() == [100, 50, 25, 12, 6]
    assert class_sizes(np.array([120, 100, 110]), 4).tolist() == [100, 50, 25]  # largest / smallest = R exactly
    assert class_sizes(np.array([7, 9]), 1).tolist() == [7, 9]  # 1: the pool as it is
    assert pool_size(torch.from_numpy(LABELS), 16) == 193 and pool_size(LABELS, 1) == 560
    with pytest.raises(UserError, match="at most 100"):
        class_sizes(np.array([120, 100, 110]), 101)


def test_each_seed_draws_its_pool_and_a_seed_draws_it_alike():
    pool = pool_indices(0, LABELS, 16)
    counts = np.bincount(LABELS[pool], minlength=5)
    assert counts.tolist() == [100, 50, 25, 12, 6] and counts.max() / counts.min() == pytest.approx(100 / 6)
    assert np.array_equal(pool, np.unique(pool))
    assert np.array_equal(pool, pool_indices(0, torch.from_numpy(LABELS), 16))  # the same draw from a tensor
    assert not np.array_equal(pool, pool_indices(1, LABELS, 16))  # another seed, another draw
    assert pool_indices(0, LABELS, 1) is None


def _spec(strategy: str, seed: int, **protocol) -> JobSpec:
    p = dataclasses.replace(Protocol(), initial=20, budget=10, cycles=3, **protocol)
    return JobSpec(run="r", dataset="d", strategy=strategy, seed=seed, protocol=p, params={}, config_hash="h")


def test_every_strategy_of_a_seed_starts_and_draws_its_candidates_in_the_same_pool():
    labels = torch.from_numpy(LABELS)
    pool = set(pool_indices(3, LABELS, 16).tolist())
    a, b = start_state(_spec("random", 3, imbalance=16.0), 560, labels), start_state(
        _spec("entropy", 3, imbalance=16.0), 560, labels)
    assert np.array_equal(a.labeled, b.labeled) and set(a.labeled.tolist()) <= pool and a.labeled.size == 20
    order = job_order(_spec("random", 3, imbalance=16.0), 1, labels)
    assert np.array_equal(order, job_order(_spec("entropy", 3, imbalance=16.0), 1, labels))
    assert set(order.tolist()) == pool  # a permutation of the pool: every member may be a candidate
    assert set(candidates(order, a.labeled, None).tolist()) == pool - set(a.labeled.tolist())
    # no imbalance: the whole pool, as before the field existed
    plain = start_state(_spec("random", 3), 560, labels)
    assert job_order(_spec("random", 3), 1, labels).size == 560 and plain.labeled.size == 20


def test_the_protocol_refuses_a_ratio_below_one():
    for bad in (0.5, True, float("inf"), "10"):
        with pytest.raises(UserError, match="'imbalance' parameter"):
            dataclasses.replace(Protocol(), imbalance=bad).validate()
