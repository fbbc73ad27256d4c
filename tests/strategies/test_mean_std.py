"""Mean STD over BALD's MC-dropout samples, held to DeepAL+'s MeanSTD on the fixed samples of
tests/fixtures/mc_dropout_scores.npz, and to a hand-worked case."""

from __future__ import annotations

import numpy as np
import torch
from test_variation_ratio import FIXTURE, check_the_strategy_scores_balds_samples_of_its_head, hand_worked_samples

from strategies import top_k
from strategies.mean_std import mean_std


def test_mean_std_equals_deepal():
    ref = np.load(FIXTURE, allow_pickle=False)
    scores = mean_std(torch.from_numpy(ref["probs"])).numpy()
    np.testing.assert_allclose(scores, ref["mean_std_scores"], rtol=1e-12, atol=0)
    assert top_k(scores, ref["mean_std_picks"].size).tolist() == ref["mean_std_picks"].tolist()


def test_hand_worked_scores():
    p = hand_worked_samples()
    # candidate 1: every class's probabilities are {1, 0, 1, 0} or all 0: standard deviations 0.5, 0.5, 0
    col = np.array([[0.7, 0.6, 0.1, 0.2], [0.2, 0.3, 0.8, 0.2], [0.1, 0.1, 0.1, 0.6]])
    expected0 = np.mean([np.sqrt(np.mean((c - c.mean()) ** 2)) for c in col])
    np.testing.assert_allclose(mean_std(p).numpy(), [expected0, 1 / 3], rtol=1e-14)


def test_the_strategy_scores_balds_samples_of_its_head():
    check_the_strategy_scores_balds_samples_of_its_head("mean-std", mean_std)
