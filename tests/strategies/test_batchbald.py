"""BatchBALD against the authors' batchbald_redux on fixed MC samples (tests/fixtures/batchbald.npz: an exact and
a sampled batch, the sampled configurations drawn alike on both sides), against a brute-force enumeration of the
joint, a hand-worked case of duplicates, and its parameter checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_variation_ratio import mc_inputs

from bench.core.errors import UserError
from conftest import ROOT
from strategies import create_strategy, top_k
from strategies.bald import bald_score, mc_dropout_probs
from strategies.batchbald import batchbald, joint_entropies, sampled_table

FIXTURE = ROOT / "tests" / "fixtures" / "batchbald.npz"


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("case", ["a", "b"])  # a: exact throughout (num_samples 100000); b: sampled from pick 5
def test_picks_equal_batchbald_redux(case):
    ref = np.load(FIXTURE, allow_pickle=False)
    probs = torch.from_numpy(ref["log_probs"]).exp()  # [n, K, C], as the reference exponentiates them
    m = int(ref[f"{case}_num_samples"])
    picks, scores = batchbald(probs, int(ref[f"{case}_batch_size"]), m, m, generator(int(ref["draw_seed"])))
    assert picks == ref[f"{case}_picks"].tolist()
    np.testing.assert_allclose(scores, ref[f"{case}_scores"], rtol=1e-12, atol=0)
    # the fixture exercises the joint: rows 100..119 repeat 80..99, and BALD's top k (torch.topk's order within
    # ties) takes more of both copies than BatchBALD does
    bald = set(ref["bald_picks"][:len(picks)].tolist())
    assert bald == set(top_k(bald_score(probs.transpose(0, 1)), len(picks)).tolist())
    pairs = lambda chosen: sum(x + 20 in chosen for x in range(80, 100))  # noqa: E731
    assert pairs(bald) > pairs(set(picks))


def brute_force(probs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Greedy picks by I(y_S; w) = H[y_S] - sum_i H[y_i | w], H[y_S] summed over every configuration of y_S."""
    n, n_samples, c = probs.shape
    cond = -(probs * np.log(probs)).sum(2).mean(1)  # [n]
    picks: list[int] = []
    scores: list[float] = []
    for _ in range(k):
        best, best_score = -1, -np.inf
        for x in range(n):
            if x in picks:
                continue
            batch = [*picks, x]
            h = 0.0
            for ys in itertools.product(range(c), repeat=len(batch)):
                rows = probs[batch, :, list(ys)]  # [len(batch), K]: each pick's class ys_i under every sample
                p = rows.prod(0).mean()
                h -= p * np.log(p)
            score = h - cond[batch].sum()
            if score > best_score:
                best, best_score = x, score
        picks.append(best)
        scores.append(best_score)
    return picks, scores


def test_exact_scores_equal_an_enumeration_of_the_joint():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 5, 3)) * rng.uniform(0.5, 3, size=(7, 1, 1))
    probs = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)  # [n=7, K=5, C=3]
    picks, scores = batchbald(torch.from_numpy(probs), 4, 100, 100, generator(0))
    want_picks, want_scores = brute_force(probs, 4)
    assert picks == want_picks
    np.testing.assert_allclose(scores, want_scores, rtol=1e-12)


def test_sampled_scores_estimate_the_exact_ones():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(30, 6, 3)) * 2
    probs = torch.from_numpy(np.exp(logits) / np.exp(logits).sum(2, keepdims=True))  # [n=30, K=6, C=3]
    exact_picks, exact = batchbald(probs, 5, 10, 10**6, generator(0))
    # max_exact=1: sampled from the second pick on; given the exact picks, each step's score is an estimate
    for i in range(1, 5):
        picks = exact_picks[:i]
        table, log_scale = sampled_table(probs[picks], 30000, generator(i))
        weights = table.mean(1).mul_(table.shape[0]).reciprocal_()
        cond = -torch.special.xlogy(probs, probs).sum(2).mean(1)
        score = joint_entropies(probs, table, weights, log_scale) - cond - cond[picks].sum()
        assert abs(float(score[exact_picks[i]]) - exact[i]) < 0.02, i


def test_a_long_batch_does_not_underflow():
    # 800 picks, each uniform over 10 classes: every configuration has probability 10**-800, 0.0 in float64
    # (the reference's product gives 0 / 0); the joint entropy with a candidate is 800 log 10 + H[mean_k p_k]
    batch = torch.full((800, 4, 10), 0.1, dtype=torch.float64)
    table, log_scale = sampled_table(batch, 5, generator(0))
    assert batch[:, 0, 0].prod() == 0  # the reference's table
    assert torch.equal(table, torch.ones(20, 4, dtype=torch.float64))
    torch.testing.assert_close(log_scale, torch.full((20,), -800 * math.log(10), dtype=torch.float64))
    weights = table.mean(1).mul_(table.shape[0]).reciprocal_()
    cand = torch.softmax(torch.randn(3, 4, 10, generator=generator(1), dtype=torch.float64), dim=2)  # [3, K, C]
    mean = cand.mean(1)
    want = 800 * math.log(10) - (mean * mean.log()).sum(1)
    torch.testing.assert_close(joint_entropies(cand, table, weights, log_scale), want, rtol=1e-13, atol=0)


def test_a_duplicate_of_a_pick_is_passed_over_unlike_in_balds_top_k():
    e = 0.05
    # K = 4 dropout samples, C = 2: candidate 0 tells {w1, w2} from {w3, w4} for sure, 1 repeats it, 2 tells
    # {w1, w3} from {w2, w4} with 5% noise
    probs = torch.tensor([
        [[1, 0], [1, 0], [0, 1], [0, 1]],
        [[1, 0], [1, 0], [0, 1], [0, 1]],
        [[1 - e, e], [e, 1 - e], [1 - e, e], [e, 1 - e]],
    ], dtype=torch.float64)  # [n, K, C]
    h_noise = -(e * math.log(e) + (1 - e) * math.log(1 - e))
    assert top_k(bald_score(probs.transpose(0, 1)), 2).tolist() == [0, 1]  # log 2, log 2 > log 2 - h_noise
    picks, scores = batchbald(probs, 2, 1000, 1000, generator(0))
    # with 0 picked, 1 adds nothing (log 2 in all); 2's labels are independent of 0's: H = log 4, less its noise
    assert picks == [0, 2]
    np.testing.assert_allclose(scores, [math.log(2), math.log(4) - h_noise], rtol=1e-14)


def test_the_strategy_selects_over_balds_samples_of_its_head():
    inputs = mc_inputs(600, seed=5)  # more than one chunk of BALD's 512 rows
    strategy = create_strategy("batchbald", samples="8", num_samples="64")
    assert strategy.needs == {"embeddings"} and strategy.params["max_exact"] == 0
    picks = strategy.select(inputs, 5)
    rng = np.random.default_rng(5)  # inputs.rng: the masks' seed first, then the draws'
    masks, draws = generator(int(rng.integers(2**63 - 1))), generator(int(rng.integers(2**63 - 1)))
    with torch.no_grad():
        samples = torch.cat([mc_dropout_probs(inputs.aux_head.classifier, inputs.embeddings[r:r + 512], 8, 0.5, masks)
                             for r in (0, 512)], dim=1)  # [T, n, C]
    want, _ = batchbald(samples.transpose(0, 1).double(), 5, 64, 64, draws)  # 10 classes: sampled from pick 3
    assert picks.tolist() == want and len(set(want)) == 5


@pytest.mark.parametrize("params, message", [
    ({"num_samples": 0}, "'batchbald.num_samples' parameter must be an integer of at least batchbald.samples (20)"),
    ({"samples": 8, "num_samples": 7}, "must be an integer of at least batchbald.samples (8), one draw per"),
    ({"num_samples": 100.0}, "'batchbald.num_samples' parameter must be an integer"),
    ({"max_exact": -1}, "'batchbald.max_exact' parameter must be a non-negative integer"),
    ({"samples": 0}, "'batchbald.samples' parameter must be a positive integer"),
])
def test_bad_parameters_are_one_line(params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        create_strategy("batchbald", **params)
    assert "\n" not in str(err.value)


def test_bad_parameters_exit_2_from_the_cli(cli, tmp_path):
    status, _, stderr = cli("--strategies", "batchbald", "--strategy-param", "batchbald.num_samples=-5",
                            "--epochs", "1", "--out", tmp_path / "out")
    assert status == 2 and stderr.count("\n") == 1 and "'batchbald.num_samples' parameter must be" in stderr, stderr
