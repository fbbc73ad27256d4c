"""Least confidence held to DeepAL+'s LeastConfidence (tests/fixtures/uncertainty.npz) and to a hand-worked case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.least_confidence import LeastConfidence


def candidates(probs: torch.Tensor) -> PoolInputs:
    return PoolInputs(n=probs.shape[0], rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                      probs=probs)


def test_hand_worked_ranking():
    # 1 - max = 2/3, 0, 1/2, 0.2 -> 0, 2, 3, 1
    probs = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.8, 0.2, 0.0]])
    assert LeastConfidence().select(candidates(probs), 4).tolist() == [0, 2, 3, 1]


def test_picks_equal_deepals_least_confidence():
    ref = np.load(ROOT / "tests" / "fixtures" / "uncertainty.npz", allow_pickle=False)
    rows = np.flatnonzero(~ref["labeled"])  # DeepAL+ scores the unlabeled rows, in pool order: our candidates
    picks = LeastConfidence().select(candidates(torch.from_numpy(ref["probs"][rows])), rows.size)
    assert rows[picks].tolist() == ref["least_confidence_picks"].tolist()  # the whole ranking, in pick order


@pytest.mark.parametrize("name", ["least-confidence", "lc"])
def test_the_registrys_name_and_alias_give_the_class(name):
    assert type(create_strategy(name)) is LeastConfidence
