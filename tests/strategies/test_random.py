"""Random sampling held to the law of DeepAL+'s RandomSampling (tests/fixtures/random.npz: its draws counted),
and to its own seeded stream."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.random import Random


def candidates(n: int, seed: int) -> PoolInputs:
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"))


def test_random_depends_only_on_the_passed_generator():
    a = Random().select(candidates(50, seed=7), 10)
    b = Random().select(candidates(50, seed=7), 10)
    c = Random().select(candidates(50, seed=8), 10)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 10


def test_draws_follow_the_law_of_deepals_random_sampling():
    # DeepAL+ draws with np.random.choice(replace=False) from the global state: no noise can be shared with ours, so
    # the laws are compared, each from as many draws (30000 of 3 among 9 unlabeled rows)
    ref = np.load(ROOT / "tests" / "fixtures" / "random.npz", allow_pickle=False)
    rows, k, t = np.flatnonzero(~ref["labeled"]), int(ref["k"]), int(ref["draws"])
    strategy, pool = Random(), candidates(rows.size, seed=0)
    draws = rows[np.array([strategy.select(pool, k) for _ in range(t)])]  # [t, k] pool rows, in pick order
    for ours, theirs in ((draws.ravel(), ref["inclusion"]), (draws[:, 0], ref["first"])):
        ours, theirs = np.bincount(ours, minlength=theirs.size) / t, theirs / t
        p = theirs[rows]
        # within 5 standard errors of the difference of two binomial frequencies; labeled rows never drawn
        assert (np.abs(ours[rows] - p) < 5 * np.sqrt(2 * p * (1 - p) / t)).all() and ours[ref["labeled"]].sum() == 0
    index = {tuple(s): i for i, s in enumerate(ref["subsets"].tolist())}
    counts = np.bincount([index[tuple(sorted(d))] for d in draws.tolist()], minlength=len(index))  # [84]
    assert stats.chi2_contingency(np.stack([counts, ref["subset_counts"]]))[1] > 1e-3  # one law for the picked set


def test_the_registrys_name_gives_the_class():
    assert type(create_strategy("random")) is Random
