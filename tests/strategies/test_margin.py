"""Margin held to DeepAL+'s MarginSampling (tests/fixtures/uncertainty.npz) and to hand-worked cases."""

from __future__ import annotations

import numpy as np
import torch

from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.margin import Margin


def candidates(probs: torch.Tensor) -> PoolInputs:
    return PoolInputs(n=probs.shape[0], rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                      probs=probs)


def test_hand_worked_ranking_with_a_tie():
    # gaps 0, 1.0, 0.0, 0.6: rows 0 and 2 tie at 0 (the lower position first), then 3, then 1
    probs = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.8, 0.2, 0.0]])
    assert Margin().select(candidates(probs), 4).tolist() == [0, 2, 3, 1]


def test_margin_prefers_the_smaller_gap_among_unequal_rows():
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.45, 0.35, 0.2], [0.9, 0.05, 0.05]])  # gaps 0.2, 0.1, 0.85
    assert Margin().select(candidates(probs), 2).tolist() == [1, 0]


def test_picks_equal_deepals_margin_sampling():
    ref = np.load(ROOT / "tests" / "fixtures" / "uncertainty.npz", allow_pickle=False)
    rows = np.flatnonzero(~ref["labeled"])  # DeepAL+ scores the unlabeled rows, in pool order: our candidates
    picks = Margin().select(candidates(torch.from_numpy(ref["probs"][rows])), rows.size)
    assert rows[picks].tolist() == ref["margin_picks"].tolist()  # the whole ranking, in pick order


def test_the_registrys_name_gives_the_class():
    assert type(create_strategy("margin")) is Margin
