"""Entropy held to DeepAL+'s EntropySampling (tests/fixtures/uncertainty.npz) and to a hand-worked case."""

from __future__ import annotations

import numpy as np
import torch

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.entropy import Entropy

# Four candidates, three classes. By hand: row 0 uniform (log 3 = 1.099) > row 2 (0.5, 0.5, 0: log 2 = 0.693) >
# row 3 > row 1 (certain: 0).
PROBS = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.8, 0.2, 0.0]])


def candidates(probs: torch.Tensor) -> PoolInputs:
    return PoolInputs(n=probs.shape[0], rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                      probs=probs)


def test_hand_worked_ranking():
    assert Entropy().select(candidates(PROBS), 4).tolist() == [0, 2, 3, 1]


def test_entropy_scores_match_formula():
    scores = Entropy().score(candidates(PROBS))
    np.testing.assert_allclose(scores.numpy(), [np.log(3), 0.0, np.log(2), -(0.8 * np.log(0.8) + 0.2 * np.log(0.2))],
                               rtol=1e-5)


def test_picks_equal_deepals_entropy_sampling():
    ref = np.load(ROOT / "tests" / "fixtures" / "uncertainty.npz", allow_pickle=False)
    rows = np.flatnonzero(~ref["labeled"])  # DeepAL+ scores the unlabeled rows, in pool order: our candidates
    picks = Entropy().select(candidates(torch.from_numpy(ref["probs"][rows])), rows.size)
    assert rows[picks].tolist() == ref["entropy_picks"].tolist()  # the whole ranking, in pick order


def test_the_registrys_name_gives_the_class():
    assert type(create_strategy("entropy")) is Entropy
