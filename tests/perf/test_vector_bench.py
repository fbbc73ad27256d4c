"""perf/vectors.py in miniature: the harness's vectors: runs timed per cycle from their rows, and scikit-learn's
LogisticRegression and SGDClassifier refitted until they reach the harness's training loss on the same labeled sets."""

from __future__ import annotations

import json

import numpy as np

from perf import vectors


def test_a_miniature_run_writes_every_figure(tmp_path):
    out = tmp_path / "vectors.json"
    assert vectors.main(["--n", "600", "--n-test", "200", "--dim", "8", "--classes", "3", "--cycles", "3",
                         "--budget", "50", "--initial", "50", "--epochs", "3", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert {(r["model"], r["strategy"]) for r in got["per_cycle"]} == {(m, s) for m in vectors.MODELS
                                                                       for s in vectors.STRATEGIES}
    for r in got["per_cycle"]:
        assert r["cycles"] == 3 and r["train_s"] > 0 and r["score_s"] >= 0 and 0 < r["final_acc"] <= 1
    assert [r["labeled"] for r in got["sklearn"]] == [50, 100, 150]  # cycles 0, 1, 2 of random's labeled sets
    for r in got["sklearn"]:
        for fitted in (r["logistic_regression"], r["sgd_classifier"]):
            assert fitted["seconds"] > 0 and fitted["iterations"] >= 1
            assert not fitted["reached"] or fitted["loss"] <= r["ours_loss"]
    assert "| linear | entropy |" in out.with_suffix(".md").read_text()
    assert got["machine"]["avx512_bf16_cpus"] == open("/proc/cpuinfo").read().count("avx512_bf16")


def test_the_training_loss_is_the_mean_cross_entropy():
    logits, y = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]), np.array([0, 2])
    by_hand = -np.mean([np.log(np.exp(2) / np.exp([2, 0, -1]).sum()), np.log(np.exp(3) / np.exp([0.5, 0.5, 3]).sum())])
    assert np.isclose(vectors.mean_cross_entropy(logits, y), by_hand)


def test_scikit_learn_is_refitted_until_it_reaches_the_target():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)), np.arange(80) % 2
    x[y == 1] += 1.5
    from sklearn.linear_model import LogisticRegression

    loose = vectors.sklearn_to_loss(lambda k: LogisticRegression(max_iter=k, tol=1e-12), x, y, target=10.0)
    assert loose["reached"] and loose["iterations"] == 1  # any fit is under a loss of 10
    tight = vectors.sklearn_to_loss(lambda k: LogisticRegression(max_iter=k, tol=1e-12), x, y, target=0.0, most=8)
    assert not tight["reached"] and tight["iterations"] == 8  # a loss of 0 is never reached: said so
