"""Stochastic batch acquisition held to baal's PowerSampling, GibbsSampling and RankBasedSampling (the same noise
on both sides, tests/fixtures/stochastic_batch.npz), and its draw held to the analytic Plackett-Luce law."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import create_model
from conftest import ROOT
from strategies import STRATEGIES, PoolInputs, Strategy, create_strategy
from strategies.bald import DropoutHead, bald_score
from strategies.base import StrategyOutputError, entropy
from strategies.stochastic_batch import StochasticBatch, gumbel_top_k, log_weights, stochastic

FIXTURE = ROOT / "tests" / "fixtures" / "stochastic_batch.npz"


def test_weights_and_picks_equal_baals_under_the_same_noise():
    ref = np.load(FIXTURE, allow_pickle=False)
    scores = {"entropy": entropy(torch.from_numpy(ref["probs"])).numpy(),  # [n]
              "bald": bald_score(torch.from_numpy(ref["mc_probs"])).numpy()}
    checked = 0
    for base, s in scores.items():
        for mode in ("power", "softmax", "softrank"):
            for beta in ref["betas"]:
                key = f"{mode}_{base}_{beta:g}"
                log_w = log_weights(s, mode, float(beta))
                weights = np.exp(log_w - log_w.max())
                np.testing.assert_allclose(weights / weights.sum(), ref[f"{key}_dist"], rtol=1e-9, atol=1e-15)
                picks = np.stack([gumbel_top_k(log_w, 10, g) for g in ref["gumbel"]])  # [draws, k]
                assert picks.tolist() == ref[f"{key}_picks"].tolist(), key
                checked += 1
    assert checked == 18 and len(set(map(tuple, ref["power_entropy_1_picks"]))) == 5  # the draws differ


def plackett_luce(p: np.ndarray, order: tuple[int, ...]) -> float:
    """Probability of drawing `order` first, without replacement, with probabilities p (by hand)."""
    left, prob = 1.0, 1.0
    for i in order:
        prob *= p[i] / left
        left -= p[i]
    return prob


@pytest.mark.parametrize("mode, expected", [
    ("power", np.array([1.0, 4.0, 9.0, 16.0]) / 30),  # s^2
    ("softmax", np.exp(2 * np.arange(1.0, 5.0)) / np.exp(2 * np.arange(1.0, 5.0)).sum()),  # exp(2 s)
    ("softrank", np.array([1 / 16, 1 / 9, 1 / 4, 1.0]) / (1 + 1 / 4 + 1 / 9 + 1 / 16)),  # rank^-2, rank 1 = s of 4
])
def test_the_first_two_picks_follow_the_analytic_law(mode, expected):
    # 40000 draws of the first two picks over scores 1..4 at beta = 2; each frequency is within 5 standard errors
    # (at most 5 * sqrt(0.25 / 40000) = 0.0125) of its probability
    scores, draws = np.arange(1.0, 5.0), 40_000
    gumbel = np.random.default_rng(0).gumbel(size=(draws, 4))
    picks = np.stack([gumbel_top_k(log_weights(scores, mode, 2.0), 2, g) for g in gumbel])  # [draws, 2]
    first = np.bincount(picks[:, 0], minlength=4) / draws
    assert (np.abs(first - expected) <= 5 * np.sqrt(expected * (1 - expected) / draws)).all(), (first, expected)
    for pair in permutations(range(4), 2):
        q = plackett_luce(expected, pair)
        freq = np.mean((picks[:, 0] == pair[0]) & (picks[:, 1] == pair[1]))
        assert abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / draws) + 1e-4, (pair, freq, q)


def test_beta_zero_is_uniform_and_a_large_beta_is_the_top_k():
    s = np.array([0.0, 0.3, 2.0, 0.1, 1.5])
    for mode in ("power", "softmax", "softrank"):
        assert log_weights(s, mode, 0.0).tolist() == [0.0] * 5
    g = np.random.default_rng(1).gumbel(size=5)
    assert gumbel_top_k(log_weights(s, "softmax", 1e6), 3, g).tolist() == [2, 4, 1]


def test_zero_weights_come_after_every_other_and_negative_scores_refuse_power():
    s = np.array([0.0, 2.0, 0.0, np.nan, 1.0])
    for seed in range(20):
        picks = gumbel_top_k(log_weights(s, "power", 1.0), 5, np.random.default_rng(seed).gumbel(size=5))
        assert set(picks[:2].tolist()) == {1, 4} and sorted(picks.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(StrategyOutputError, match="power sampling needs scores >= 0"):
        log_weights(np.array([0.5, -0.1]), "power", 1.0)
    assert np.isneginf(log_weights(s, "softmax", 1.0)[3])  # NaN is the lowest score, as in top_k


def probs_inputs(n: int, seed: int) -> PoolInputs:
    probs = torch.softmax(torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), 1)
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"), probs=probs)


def test_the_strategies_draw_from_inputs_rng_and_refuse_a_negative_beta(cli, tmp_path):
    strategy = create_strategy("power-entropy", beta="2")
    assert strategy.beta == 2.0 and strategy.needs == {"probs"}
    picks = strategy.select(probs_inputs(100, 3), 10)
    assert picks.tolist() == strategy.select(probs_inputs(100, 3), 10).tolist()
    other = probs_inputs(100, 3)
    other.rng = np.random.default_rng(4)
    assert strategy.select(other, 10).tolist() != picks.tolist()
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(UserError, match="'power-entropy.beta' parameter must be a finite number >= 0"):
            create_strategy("power-entropy", beta=bad)
    status, _, stderr = cli("--strategies", "softrank-bald", "--strategy-param", "softrank-bald.beta=-0.5",
                            "--epochs", "1", "--out", tmp_path / "out")
    assert status == 2 and stderr.count("\n") == 1 and "'softrank-bald.beta' parameter" in stderr, stderr


def test_a_wrapped_bald_trains_and_samples_balds_head():
    power = create_strategy("power-bald", samples="5", dropout="0.3")
    assert power.params == {"samples": 5, "dropout": 0.3, "beta": 1.0} and power.needs == {"embeddings"}
    model = create_model("cnn", 1, 10, generator_seed=0).eval()
    head = power.aux_head(model, Protocol())
    assert isinstance(head, DropoutHead) and head.rate == 0.3
    emb = torch.randn(40, model.embedding_dim, generator=torch.Generator().manual_seed(0)).relu()
    inputs = PoolInputs(n=40, rng=np.random.default_rng(0), model=model, device=torch.device("cpu"),
                        embeddings=emb, aux_head=head.eval())
    picks = power.select(inputs, 8)
    bald = create_strategy("bald", samples=5, dropout=0.3)  # the same rng: the same samples, then the noise
    rng = np.random.default_rng(0)
    scores = bald.score(PoolInputs(n=40, rng=rng, model=model, device=inputs.device, embeddings=emb, aux_head=head))
    assert picks.tolist() == gumbel_top_k(np.log(scores.numpy()), 8, rng.gumbel(size=40)).tolist()


def test_a_users_own_strategy_is_wrapped_by_naming_it():
    with STRATEGIES.scoped():
        class Lowest(Strategy):
            """Lower positions first (a test's own score)."""

            name = "test-lowest-first"
            needs = frozenset({"probs"})
            params = {"offset": 1.0}

            def score(self, inputs: PoolInputs) -> np.ndarray:
                return self.offset + np.arange(inputs.n, 0, -1, dtype=float)  # [n]

        class PowerLowest(StochasticBatch):
            """Power sampling over the test's score."""

            name, base, mode = "test-power-lowest", "test-lowest-first", "power"

        strategy = create_strategy("test-power-lowest", offset="0.5", beta="50")
        assert strategy.inner.offset == 0.5 and PowerLowest.needs == {"probs"}
        assert strategy.select(probs_inputs(6, 0), 3).tolist() == [0, 1, 2]  # s^50: all but surely the top 3
        soft = stochastic("softmax", "test-lowest-first")  # the one-line form
        assert soft.name == "softmax-test-lowest-first" and STRATEGIES.get(soft.name) is soft
        assert create_strategy(soft.name, beta=100).select(probs_inputs(6, 0), 2).tolist() == [0, 1]
        with pytest.raises(TypeError, match="no score"):
            type("PowerCoreSet", (StochasticBatch,), {"name": "test-power-core-set", "base": "core-set",
                                                      "mode": "power"})
        with pytest.raises(TypeError, match="mode 'gibbs'"):
            type("Gibbs", (StochasticBatch,), {"name": "test-gibbs", "base": "entropy", "mode": "gibbs"})
