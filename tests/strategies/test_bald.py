"""BALD against the authors' acquisition code (tests/fixtures/bald.npz) and independent computations: hand-worked mutual
information, an exact enumeration of dropout masks, and the dropout head it trains (with dropout, on the detached
embedding, from its own random stream)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import create_model
from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.bald import DropoutHead, bald_score, mc_dropout_probs


def bald_inputs(n: int, seed: int, dropout: float = 0.5) -> PoolInputs:
    g = torch.Generator().manual_seed(seed)
    model = create_model("cnn", 1, 10, generator_seed=seed).eval()
    with torch.random.fork_rng(devices=[]):  # the loop seeds the head's initial weights from (seed, purpose) too
        torch.manual_seed(seed)
        head = create_strategy("bald", dropout=dropout).aux_head(model, Protocol()).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      embeddings=emb, aux_head=head)


def test_bald_score_hand_worked():
    samples = torch.tensor([
        [[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1]],
        [[0.1, 0.9, 0.0], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]],
    ], dtype=torch.float64)  # [T=2, n=3, C=3]

    def h(*p):
        return -sum(x * math.log(x) for x in p if x > 0)

    expected = [
        h(0.5, 0.5) - (h(0.9, 0.1) + h(0.1, 0.9)) / 2,  # = ln 2 - H(0.9, 0.1) = 0.368064
        h(0.4, 0.25, 0.35) - (h(0.6, 0.3, 0.1) + h(0.2, 0.2, 0.6)) / 2,
        0.0,  # the samples agree
    ]
    np.testing.assert_allclose(bald_score(samples).numpy(), expected, rtol=1e-12, atol=1e-15)
    assert expected[0] == pytest.approx(0.368064, abs=1e-6)


def test_bald_score_is_zero_when_all_samples_agree():
    p = torch.softmax(torch.randn(7, 10, generator=torch.Generator().manual_seed(0)), 1)  # float32
    assert torch.allclose(bald_score(p.expand(20, 7, 10)), torch.zeros(7, dtype=torch.float64), atol=1e-6)


def test_mc_dropout_estimate_matches_exact_enumeration_of_masks():
    # a 2-d head: enumerate the 4 masks exactly (keep prob 0.75, inverted scaling) and compare the mutual
    # information with the Monte-Carlo estimate from many samples; averaging logits would give another value
    head = torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.5]]))
        head.bias.copy_(torch.tensor([0.0, 0.2, -0.1]))
    x = torch.tensor([[1.5, 1.0], [0.0, 0.0], [3.0, -2.0]], dtype=torch.float64)
    rate = 0.25
    probs, weights = [], []
    for mask in itertools.product([0.0, 1.0], repeat=2):
        m = torch.tensor(mask, dtype=torch.float64)
        probs.append(torch.softmax(head(x * m / (1 - rate)), 1).detach())
        weights.append(math.prod(1 - rate if keep else rate for keep in mask))
    w = torch.tensor(weights, dtype=torch.float64)[:, None, None]
    stacked = torch.stack(probs)  # [4, n, C]
    mean = (w * stacked).sum(0)
    exact = -(mean * mean.log()).sum(1) + (w[:, :, 0] * (stacked * stacked.log()).sum(2)).sum(0)

    with torch.no_grad():  # 1000 copies of each row x 4 samples: 4000 independent masks per row, few torch calls
        sampled = mc_dropout_probs(head, x.repeat(1000, 1), 4, rate, torch.Generator().manual_seed(0))
    estimate = bald_score(sampled.reshape(4, 1000, 3, 3).flatten(0, 1))  # [4000, n=3, C=3]
    np.testing.assert_allclose(estimate.numpy(), exact.numpy(), atol=0.01)
    assert estimate[1] == pytest.approx(0.0, abs=1e-12)  # a zero embedding: every mask gives the bias's prediction
    assert exact[0] > 0.05 and exact[2] > 0.05  # the test is not vacuous


def test_bald_samples_its_own_trained_head_not_the_backbone_classifier():
    inputs = bald_inputs(50, seed=3)
    scores = create_strategy("bald").score(inputs)
    assert create_strategy("bald", samples=1).score(bald_inputs(50, seed=3)).eq(0).all()  # T = 1: no disagreement
    assert (scores > 0).all()
    with torch.no_grad():  # a head that ignores its input makes every dropout sample agree
        inputs.aux_head.classifier.weight.zero_()
    assert (create_strategy("bald").score(inputs) < 1e-12).all()


def test_the_dropout_head_trains_with_masks_from_its_own_stream_and_no_gradient_to_the_backbone():
    model = create_model("cnn", 1, 10, generator_seed=0)
    head = create_strategy("bald", dropout=0.5).aux_head(model, Protocol())
    assert isinstance(head, DropoutHead) and head.classifier.out_features == 10
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    out = model(x)
    per_sample = F.cross_entropy(out.logits, y, reduction="none")

    def loss(seed: int) -> torch.Tensor:
        return head.training_loss(out, per_sample, y, 0, torch.Generator().manual_seed(seed))

    assert loss(1).item() == loss(1).item() != loss(2).item()  # the masks come from the generator passed in
    # an independent computation of the same loss: the head's masks redrawn from a generator at the same seed
    g = torch.Generator().manual_seed(1)
    keep = torch.empty_like(out.embedding).uniform_(generator=g) >= 0.5
    expected = F.cross_entropy(head.classifier(out.embedding.detach() * keep / 0.5), y)
    assert loss(1).item() == pytest.approx(expected.item(), rel=1e-6)
    model.zero_grad(set_to_none=True)
    loss(1).backward()
    assert all(p.grad is None for p in model.parameters())  # the backbone trains as for every other strategy
    assert head.classifier.weight.grad is not None and head.classifier.weight.grad.abs().sum() > 0


def test_bald_parameters_are_parsed_and_checked():
    bald = create_strategy("bald", samples="5", dropout="0.1")
    assert (bald.samples, bald.dropout) == (5, 0.1)
    for bad in ({"samples": "0"}, {"dropout": "1.0"}, {"dropout": "0"}, {"dropout": "-0.1"}, {"samples": "2.5"}):
        with pytest.raises(UserError):
            create_strategy("bald", **bad)


def test_bald_selects_k_distinct_positions_following_the_rng():
    strategy = create_strategy("bald")
    picks = strategy.select(bald_inputs(300, seed=4), 60)
    assert picks.shape == (60,) and np.unique(picks).size == 60 and 0 <= picks.min() and picks.max() < 300
    assert strategy.select(bald_inputs(300, seed=4), 60).tolist() == picks.tolist()
    inputs = bald_inputs(300, seed=4)
    inputs.rng = np.random.default_rng(99)
    assert strategy.select(inputs, 60).tolist() != picks.tolist()


# ---------------------------------------------------------------- held to the authors' code


def test_scores_and_picks_equal_the_authors_bald(monkeypatch):
    # tests/fixtures/bald.npz: Gal & Islam's acquisition lines (Riashat/Deep-Bayesian-Active-Learning) run on the
    # MC-dropout samples of mc_dropout_scores.npz; their entropies are in bits, ours in nats
    ref = np.load(ROOT / "tests" / "fixtures" / "bald.npz", allow_pickle=False)
    samples = torch.from_numpy(np.load(ROOT / "tests" / "fixtures" / "mc_dropout_scores.npz")["probs"])  # [T, n, C]
    np.testing.assert_allclose(bald_score(samples).numpy() / math.log(2), ref["scores"], rtol=1e-12, atol=1e-14)
    inputs = bald_inputs(samples.shape[1], seed=0)
    monkeypatch.setattr("strategies.bald.mc_dropout_probs", lambda *args: samples)  # the strategy's own path, fed them
    picks = create_strategy("bald", samples=samples.shape[0]).select(inputs, int(ref["k"]))
    assert picks.tolist() == ref["picks"].tolist()
