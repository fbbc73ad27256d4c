"""What one cycle of the loop computes and how it times it.

On CUDA the host only queues kernels: a clock read without a synchronise measures the launches, and the
queued work lands in whichever phase syncs next. Every phase's time is read through bench.training.trainer.synced_clock,
tested here with torch.cuda.synchronize patched. And the loop computes only what a strategy declares in `needs`:
a strategy that needs nothing pays for no model pass.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

import bench.training.loop as loop
import bench.training.trainer as trainer_module
from bench.core.config import Protocol
from bench.core.seeding import numpy_rng
from bench.data.datasets import load_dataset
from bench.training.loop import JobSpec, candidates, next_cycle, pool_order, start_state
from bench.training.trainer import DeviceData, Trainer, synced_clock
from strategies import Strategy, top_k


def test_synced_clock_synchronises_a_cuda_device_before_it_reads_the_time(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("sync", device)))
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: events.append("clock")
                                                                      or 12.5))
    assert synced_clock(torch.device("cuda", 1)) == 12.5
    assert events == [("sync", torch.device("cuda", 1)), "clock"]
    events.clear()
    assert synced_clock(torch.device("cpu")) == 12.5  # nothing queued on the CPU: no synchronise
    assert events == ["clock"]


def _tiny(strategy: str, **protocol) -> tuple[JobSpec, Trainer, int]:
    data = load_dataset("digits")
    p = dataclasses.replace(Protocol(), initial=20, budget=10, cycles=2, epochs=1, milestones=(), subset=60,
                            precision="fp32", **protocol)
    return JobSpec("t", "digits", strategy, 0, p), Trainer(DeviceData.from_images(data, torch.device("cpu")), p,
                                                           torch.device("cpu")), data.n_classes


def test_the_cycle_reads_a_synced_clock_between_scoring_and_selection(monkeypatch):
    spec, trainer, n_classes = _tiny("entropy")
    events: list[str] = []
    ticks = iter(range(100, 200))

    def clock(device):
        assert device == trainer.device
        events.append("clock")
        return float(next(ticks)) ** 2  # distinct gaps: each phase's time names the two reads it came from

    gather, select = loop.gather_inputs, loop._select
    monkeypatch.setattr(loop, "synced_clock", clock)
    monkeypatch.setattr(trainer_module, "synced_clock", clock)
    monkeypatch.setattr(loop, "gather_inputs", lambda *a: events.append("gather") or gather(*a))
    monkeypatch.setattr(loop, "_select", lambda *a: events.append("select") or select(*a))
    fit, evaluate = Trainer.fit, Trainer.evaluate
    monkeypatch.setattr(Trainer, "fit", lambda self, *a: events.append("fit") or fit(self, *a))
    monkeypatch.setattr(Trainer, "evaluate", lambda self, *a: events.append("evaluate") or evaluate(self, *a))
    result, _ = next_cycle(spec, trainer, n_classes, start_state(spec, trainer.data.n_train))
    # fit reads the clock on entry and on exit; each later phase is bracketed by reads
    assert events == ["fit", "clock", "clock", "clock", "evaluate", "clock", "clock", "gather", "clock", "select",
                      "clock"]
    row = result.record
    assert row["train_seconds"] == 101 ** 2 - 100 ** 2
    assert row["eval_seconds"] == 103 ** 2 - 102 ** 2
    assert row["score_seconds"] == 105 ** 2 - 104 ** 2  # the scoring pass, synchronised before selection
    assert row["select_seconds"] == 106 ** 2 - 104 ** 2  # scoring and selection, as the column always held


def test_a_strategy_that_needs_nothing_runs_a_cycle_without_a_model_pass(monkeypatch):
    class Blind(Strategy):
        name = "blind-test"

        def score(self, inputs):
            assert inputs.logits is None and inputs.embeddings is None and inputs.probs is None
            return -np.arange(inputs.n, dtype=float)  # the first candidates

    def no_inference(*args, **kwargs):
        raise AssertionError("Trainer.infer called for a strategy that needs no model output")

    spec, trainer, n_classes = _tiny("blind-test")
    monkeypatch.setattr(Trainer, "infer", no_inference)
    state = start_state(spec, trainer.data.n_train)
    _, after = next_cycle(spec, trainer, n_classes, state)
    cand = candidates(pool_order(0, 0, trainer.data.n_train), state.labeled, 60)
    assert after.added.tolist() == cand[:10].tolist()


def test_random_picks_from_its_stream_alone_without_a_model_pass(monkeypatch):
    spec, trainer, n_classes = _tiny("random")
    monkeypatch.setattr(Trainer, "infer", lambda *a, **k: pytest.fail("random needs no model output"))
    state = start_state(spec, trainer.data.n_train)
    _, after = next_cycle(spec, trainer, n_classes, state)
    cand = candidates(pool_order(0, 0, trainer.data.n_train), state.labeled, 60)
    expected = cand[top_k(numpy_rng(0, "select", "random", 0).random(cand.size), 10)]
    assert after.added.tolist() == expected.tolist()


def test_only_the_labeled_pass_runs_for_a_strategy_that_needs_only_labeled_embeddings(monkeypatch):
    class LabeledOnly(Strategy):
        name = "labeled-only-test"
        needs = frozenset({"labeled_embeddings"})

        def score(self, inputs):
            assert inputs.embeddings is None and inputs.labeled_embeddings.shape[0] == 20
            return np.zeros(inputs.n)

    spec, trainer, n_classes = _tiny("labeled-only-test")
    passes = []
    infer = Trainer.infer
    monkeypatch.setattr(Trainer, "infer", lambda self, model, idx, *a, **k: passes.append(idx.numel())
                        or infer(self, model, idx, *a, **k))
    next_cycle(spec, trainer, n_classes, start_state(spec, trainer.data.n_train))
    assert passes == [20]  # the labeled set, not the 60 candidates
