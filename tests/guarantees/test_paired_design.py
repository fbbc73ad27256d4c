"""The paired design: at one seed, strategies share the initial set and the initial weights, and at each cycle
the permutation of the pool their candidates are drawn from (a fresh one per cycle)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

import bench.training.loop as loop
from bench.core.config import Protocol
from bench.data.datasets import load_dataset
from bench.models.backbones import MODELS, Backbone, register_model
from bench.training.loop import JobSpec, candidates, pool_order, run_job
from bench.training.trainer import DeviceData, Trainer

_FIT, _GATHER = Trainer.fit, loop.gather_inputs


def _run(strategy: str, seed: int, monkeypatch, cycles: int = 3, subset: int = 60) -> dict:
    """Run a tiny job, recording the weights each fit starts from and the candidates each cycle scores."""
    data = load_dataset("digits")
    protocol = dataclasses.replace(Protocol(), initial=20, budget=10, cycles=cycles, epochs=2, milestones=(),
                                   subset=subset, precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), protocol, torch.device("cpu"))
    seen = {"weights": [], "labeled": [], "candidates": []}

    def spy_fit(self, model, labeled, generator, aux=None, aux_generator=None):
        seen["weights"].append({k: v.clone() for k, v in model.state_dict().items()})
        seen["labeled"].append(labeled.clone())
        return _FIT(self, model, labeled, generator, aux, aux_generator)

    def spy_gather(strategy, trainer, model, aux, cand, labeled, rng):
        seen["candidates"].append(cand.clone())
        return _GATHER(strategy, trainer, model, aux, cand, labeled, rng)

    monkeypatch.setattr(Trainer, "fit", spy_fit)
    monkeypatch.setattr(loop, "gather_inputs", spy_gather)
    seen["results"] = list(run_job(JobSpec("t", "digits", strategy, seed, protocol), trainer, data.n_classes))
    seen["n_pool"] = data.x_train.shape[0]
    return seen


def test_strategies_at_one_seed_share_start_and_candidate_order(monkeypatch):
    a = _run("entropy", 0, monkeypatch)
    b = _run("random", 0, monkeypatch)
    c = _run("entropy", 1, monkeypatch)
    # Same initial labeled indices and identical initial weights at one seed; different at another seed.
    assert torch.equal(a["labeled"][0], b["labeled"][0])
    assert not torch.equal(a["labeled"][0], c["labeled"][0])
    for key, value in a["weights"][0].items():
        assert torch.equal(value, b["weights"][0][key]), key
    assert any(not torch.equal(v, c["weights"][0][k]) for k, v in a["weights"][0].items())
    # Cycle 0 scores the very same candidates; each later cycle draws from that cycle's permutation of the
    # seed, in its order, skipping only what each strategy has labeled.
    assert torch.equal(a["candidates"][0], b["candidates"][0])
    for run in (a, b):
        for cycle, cand in enumerate(run["candidates"]):
            labeled = run["labeled"][cycle].numpy()
            assert np.array_equal(cand.numpy(), candidates(pool_order(0, cycle, a["n_pool"]), labeled, 60))
    assert not torch.equal(a["labeled"][1], b["labeled"][1])  # the strategies did pick differently


def test_candidates_are_fresh_each_cycle_with_the_overlap_of_independent_draws(monkeypatch):
    m = 300  # candidates per cycle, from a pool of 1437 with 20..50 labeled
    run = _run("random", 0, monkeypatch, cycles=4, subset=m)
    for cycle in range(1, 3):
        before, now = set(run["candidates"][cycle - 1].tolist()), set(run["candidates"][cycle].tolist())
        unlabeled = run["n_pool"] - run["labeled"][cycle].numel()
        # Two independent draws of m from u share a hypergeometric number of items (mean m^2 / u, about 64 here;
        # one fixed order for every cycle would share about 290).
        low, high = stats.hypergeom(unlabeled, m, m).ppf([1e-4, 1 - 1e-4])
        assert low <= len(before & now) <= high, (cycle, len(before & now), low, high)


def test_candidates_depend_on_seed_and_cycle_only():
    n = 1000
    assert np.array_equal(pool_order(3, 2, n), pool_order(3, 2, n))
    assert not np.array_equal(pool_order(3, 2, n), pool_order(3, 1, n))
    assert not np.array_equal(pool_order(3, 2, n), pool_order(4, 2, n))
    labeled = np.arange(0, n, 7)
    cand = candidates(pool_order(3, 2, n), labeled, 50)
    assert cand.size == 50 and not set(cand) & set(labeled)


@pytest.mark.parametrize("strategy", ["bald", "core-set"])
def test_a_strategy_without_gradient_to_the_backbone_matches_random_at_cycle_0(strategy, monkeypatch):
    # BALD trains its dropout head on the detached embedding: the backbone's cycle 0 is random's, bit for bit.
    a, b = _run(strategy, 2, monkeypatch, cycles=2), _run("random", 2, monkeypatch, cycles=2)
    assert a["results"][0].record["test_acc"] == b["results"][0].record["test_acc"]
    assert a["results"][0].record["test_loss"] == b["results"][0].record["test_loss"]


def test_labeled_set_grows_by_the_picks(monkeypatch):
    a = _run("margin", 3, monkeypatch)
    results = a["results"]
    assert [r.record["n_labeled"] for r in results] == [20, 30, 40]
    for cycle in (1, 2):
        grown = np.concatenate([a["labeled"][cycle - 1].numpy(), results[cycle].added])
        assert np.array_equal(grown, a["labeled"][cycle].numpy())
        assert set(results[cycle].added) <= set(a["candidates"][cycle - 1].tolist())


def test_candidates_take_the_first_unlabeled_in_order():
    order = np.array([5, 3, 2, 0, 4, 1])
    assert candidates(order, np.array([3, 0]), 3).tolist() == [5, 2, 4]
    assert candidates(order, np.array([3, 0]), None).tolist() == [5, 2, 4, 1]


class _DropoutCNN(Backbone):
    """A Backbone whose stage draws dropout from torch's global generator, as torchvision's models do."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.stage_channels, self.embedding_dim = [16], 16
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                                                   nn.Dropout(0.5))])
        self.classifier = nn.Linear(16, n_classes)


def _dropout_rows(strategies: list[str]) -> dict[str, list[tuple]]:
    """Run the strategies' jobs one after another in this process, as one worker does: {strategy: rows}."""
    data = load_dataset("digits")
    protocol = dataclasses.replace(Protocol(), model="test-dropout-cnn", initial=20, budget=10, cycles=2, epochs=2,
                                   milestones=(), subset=60, precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), protocol, torch.device("cpu"))
    rows = {}
    for name in strategies:
        results = run_job(JobSpec("t", "digits", name, 0, protocol), trainer, data.n_classes)
        rows[name] = [(r.record["test_loss"], r.record["train_loss"], tuple(r.added)) for r in results]
    return rows


def test_a_dropout_model_is_reproducible_and_paired_whatever_ran_before():
    with MODELS.scoped():
        register_model("test-dropout-cnn")(_DropoutCNN)
        torch.manual_seed(12345)  # the caller's global state: a job must neither read it nor change it
        before = torch.random.get_rng_state()
        beside = _dropout_rows(["random", "entropy"])
        assert torch.equal(torch.random.get_rng_state(), before)
        alone = _dropout_rows(["entropy"])
        torch.rand(7)  # another global state in between
        again = _dropout_rows(["random", "entropy"])
    assert beside == again  # the same command twice
    assert alone["entropy"] == beside["entropy"]  # run alone or after another strategy's job
    assert beside["random"][0][:2] == beside["entropy"][0][:2]  # cycle 0: the same training at one seed
    assert beside["random"][1][:2] != beside["entropy"][1][:2]  # the picks did differ, and so did cycle 1


def test_numbers_do_not_depend_on_jobs(cli, tmp_path):
    # a folder resumed or widened with another --jobs must pair rows computed alike
    tiny = ["--strategies", "random", "entropy", "--seeds", "2", "--initial", "20", "--budget", "20", "--cycles", "2",
            "--epochs", "3"]
    frames = []
    for jobs in ("1", "2"):
        status, _, err = cli(*tiny, "--jobs", jobs, "--out", tmp_path / jobs)
        assert status == 0, err
        frame = pd.read_parquet(tmp_path / jobs / "cycles.parquet")
        frames.append(frame.drop(columns=["train_seconds", "eval_seconds", "score_seconds", "select_seconds",
                                          "select_peak_mb", "select_rise_mb",
                                          "finished_at"]).sort_values(["strategy", "seed", "cycle"])
                      .reset_index(drop=True))
    pd.testing.assert_frame_equal(frames[0], frames[1])
