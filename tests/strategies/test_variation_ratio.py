"""Variation ratio over BALD's MC-dropout samples, held to the authors' code (Riashat/Deep-Bayesian-Active-Learning)
on the fixed samples of tests/fixtures/mc_dropout_scores.npz, and to a hand-worked case. The MC-dropout inputs and
the check that a strategy scores BALD's samples of its head serve test_mean_std.py and test_batchbald.py too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import create_model
from conftest import ROOT
from strategies import PoolInputs, create_strategy, top_k
from strategies.bald import mc_dropout_probs
from strategies.variation_ratio import variation_ratio

FIXTURE = ROOT / "tests" / "fixtures" / "mc_dropout_scores.npz"


def test_variation_ratio_equals_the_authors_code():
    ref = np.load(FIXTURE, allow_pickle=False)
    scores = variation_ratio(torch.from_numpy(ref["probs"])).numpy()  # probs: [T, n, C]
    assert scores.tolist() == ref["variation_ratio_scores"].tolist()  # k / T exactly
    k, theirs = int(ref["variation_ratio_k"]), ref["variation_ratio_picks"]
    # the same candidates; in the order of the base's tie rule (lower position first) where the authors' unstable
    # argsort leaves equal scores in whatever order it happens to
    assert top_k(scores, k).tolist() == sorted(theirs.tolist(), key=lambda i: (-scores[i], i))
    assert np.unique(scores).size <= 15 and k == 24  # 100 scores on 15 levels; k falls between two levels


def hand_worked_samples() -> torch.Tensor:
    """[T=4, n=2, C=3] sampled probabilities small enough to score by hand."""
    return torch.tensor([
        [[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]],
        [[0.6, 0.3, 0.1], [0.0, 1.0, 0.0]],
        [[0.1, 0.8, 0.1], [1.0, 0.0, 0.0]],
        [[0.2, 0.2, 0.6], [0.0, 1.0, 0.0]],
    ], dtype=torch.float64)  # [T=4, n=2, C=3]


def test_hand_worked_scores():
    p = hand_worked_samples()
    # candidate 0 votes 0, 0, 1, 2: the mode has 2 of 4 votes; candidate 1 votes 0, 1, 0, 1: 2 of 4 as well
    assert variation_ratio(p).tolist() == [0.5, 0.5]


def mc_inputs(n: int, seed: int, samples: int = 20) -> PoolInputs:
    model = create_model("cnn", 1, 10, generator_seed=seed).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = create_strategy("bald").aux_head(model, Protocol()).eval()
    emb = torch.randn(n, model.embedding_dim, generator=torch.Generator().manual_seed(seed)).relu()  # [n, d]
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      embeddings=emb, aux_head=head)


def check_the_strategy_scores_balds_samples_of_its_head(name, reduce):
    inputs = mc_inputs(600, seed=5)  # more than one chunk of 512 rows
    strategy = create_strategy(name, samples="8")
    assert strategy.needs == {"embeddings"} and strategy.params == {"samples": 8, "dropout": 0.5}
    scores = strategy.score(inputs)
    g = torch.Generator().manual_seed(int(np.random.default_rng(5).integers(2**63 - 1)))  # as BALD seeds its masks
    with torch.no_grad():
        samples = torch.cat([mc_dropout_probs(inputs.aux_head.classifier, inputs.embeddings[r:r + 512], 8, 0.5, g)
                             for r in (0, 512)], dim=1)  # [T, n, C]
    assert torch.equal(scores, reduce(samples)) and scores.max() > 0
    assert create_strategy(name, samples=1).score(mc_inputs(50, seed=5)).eq(0).all()  # one sample: no spread
    with pytest.raises(UserError, match=f"The '{name}.samples' parameter must be a positive integer"):
        create_strategy(name, samples=0)


def test_the_strategy_scores_balds_samples_of_its_head():
    check_the_strategy_scores_balds_samples_of_its_head("variation-ratio", variation_ratio)
