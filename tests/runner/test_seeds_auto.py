"""bench.runner.seeds_auto: --seeds auto's plan and its looks, the strategies each round runs (only those of the
comparisons still undecided, at the next look's seeds), the record config.json keeps of every look, and a run
started again resuming at the look it reached. The rounds' jobs are replaced by hand-made rows where the test is
about which round runs what; one test trains a tiny digits protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.analysis import paired, verdicts
from bench.core.errors import UserError
from bench.results.store import RunStore
from bench.runner import seeds_auto
from bench.runner.resolve import RunOptions, RunResult, build_config

# each strategy's accuracy above random's at cycle 1: entropy far better on every seed, margin alike up to noise
LIFT = {"random": 0.0, "entropy": 0.2, "margin": 0.0}


def fake_rounds(monkeypatch) -> list[tuple[tuple[str, ...], int, bool]]:
    """Replace each round's jobs by hand-made rows (two cycles per job, margin's noisy around random's) and the
    report by nothing; returns the rounds run, as (strategies, seeds, quiet)."""
    rounds: list[tuple[tuple[str, ...], int, bool]] = []

    def benchmark_round(config, options, analysis, quiet, held, tracker=None):
        rounds.append((config.strategies, len(config.seeds), quiet))
        store = RunStore(config.out)
        for strategy in config.strategies:
            for seed in config.seeds:
                if store.done_cycles(strategy, seed):
                    continue
                noise = np.random.default_rng(seed).normal(0, 0.05) if strategy == "margin" else 0
                for cycle, acc in enumerate((0.5, 0.6 + LIFT[strategy] + noise)):
                    store.add_cycle({"run": "r", "dataset": "digits", "strategy": strategy, "seed": seed,
                                     "cycle": cycle, "n_labeled": 20 * (cycle + 1), "test_acc": acc},
                                    np.arange(20 * cycle, 20 * (cycle + 1)) + 100 * seed)
        store.write_config({**(store.read_config() or {}), "strategies": list(config.strategies)})
        return []

    monkeypatch.setattr(seeds_auto, "benchmark_round", benchmark_round)
    monkeypatch.setattr(seeds_auto, "finish",
                        lambda folder, failures, options, tracker=None: RunResult(folder, (), None))
    return rounds


def test_the_plan_is_the_primary_familys_with_looks_up_to_max_seeds(tmp_path):
    config = build_config("quick", ["entropy", "random", "margin"], 3, out=tmp_path / "R")
    options = RunOptions(max_seeds=20, margin=0.02)
    assert seeds_auto.primary_pairs(config, options) == [("entropy", "random"), ("margin", "random")]
    plan = seeds_auto.plan_for(config, options)
    assert plan == verdicts.make_plan(20, 2, paired.ALPHA, 0.02) and plan.looks == (5, 10, 15, 20)
    alone = build_config("quick", ["entropy", "margin", "least-confidence"], 3, out=tmp_path / "S")
    assert len(seeds_auto.primary_pairs(alone, options)) == 3  # without the baseline: every pair
    assert seeds_auto.look(config, options, plan) == (None, [])  # no folder yet: nothing looked at


def test_one_strategy_is_refused_before_any_round(tmp_path, monkeypatch):
    rounds = fake_rounds(monkeypatch)
    config = build_config("quick", ["entropy"], 3, out=tmp_path / "R")
    with pytest.raises(UserError, match="'entropy' alone makes none: name two strategies or more"):
        seeds_auto.benchmark_in_rounds(config, RunOptions(max_seeds=10))
    assert rounds == [] and not (tmp_path / "R").exists()


def test_each_round_runs_the_undecided_comparisons_strategies_at_the_next_looks_seeds(tmp_path, monkeypatch):
    rounds = fake_rounds(monkeypatch)
    config = build_config("quick", ["random", "entropy", "margin"], 3, out=tmp_path / "R")
    options = RunOptions(max_seeds=10)
    seeds_auto.benchmark_in_rounds(config, options)
    # entropy vs random is decided at the first look; margin vs random is not, so only those two run on
    assert rounds == [(("random", "entropy", "margin"), 5, False), (("random", "margin"), 10, True)]
    analysis = json.loads((tmp_path / "R" / "config.json").read_text())["analysis"]
    history = analysis["sequential"]["history"]
    assert [h["seeds"] for h in history] == [5, 10]
    assert history[0]["decided"] == ["entropy vs random: entropy better"]
    assert history[0]["undecided"] == history[1]["undecided"] == ["margin vs random"]
    assert analysis["sequential"]["stopped"] == "stopped at --max-seeds 10 with 1 comparison(s) undecided"
    assert analysis["strategies"] == ["random", "entropy", "margin"] and analysis["design"] == "sequential"
    seeds_auto.benchmark_in_rounds(config, options)  # the same command again: every look already taken
    assert len(rounds) == 2


def test_the_rounds_stop_at_the_look_that_decides_everything(tmp_path, monkeypatch):
    rounds = fake_rounds(monkeypatch)
    config = build_config("quick", ["random", "entropy"], 3, out=tmp_path / "R")
    seeds_auto.benchmark_in_rounds(config, RunOptions(max_seeds=20))
    assert rounds == [(("random", "entropy"), 5, False)]
    sequential = json.loads((tmp_path / "R" / "config.json").read_text())["analysis"]["sequential"]
    assert sequential["stopped"] == "every primary comparison decided after 5 seeds"
    assert sequential["looks"] == [5, 10, 15, 20] and sequential["max_seeds"] == 20


def test_a_look_reads_only_the_strategies_named_not_the_folders_others(tmp_path, monkeypatch):
    fake_rounds(monkeypatch)
    config = build_config("quick", ["random", "margin"], 3, out=tmp_path / "R")
    options = RunOptions(max_seeds=5)
    seeds_auto.benchmark_in_rounds(config, options)
    store = RunStore(tmp_path / "R")  # another run's strategy in the folder, with a cycle the named ones lack
    for cycle in range(3):
        store.add_cycle({"run": "r", "dataset": "digits", "strategy": "entropy", "seed": 0, "cycle": cycle,
                         "n_labeled": 20 * (cycle + 1), "test_acc": 0.5}, np.arange(20 * cycle, 20 * (cycle + 1)))
    found, history = seeds_auto.look(config, options, seeds_auto.plan_for(config, options))
    assert found[["strategy", "other", "n_pairs"]].values.tolist() == [["margin", "random", 5]]
    assert history == [{"seeds": 5, "decided": [], "undecided": ["margin vs random"]}]


def test_a_look_is_recorded_before_the_next_round_starts(tmp_path, monkeypatch):
    # a kill between a look and the next round must leave that look in config.json: the design check reads it
    from bench.runner import seeds_auto as rounds
    from bench.runner.resolve import RunOptions, build_config
    config = build_config(strategies=["random", "entropy"], seeds=5, out=tmp_path / "R",
                          protocol={"initial": 20, "budget": 20, "cycles": 2, "epochs": 3}, devices="cpu")
    real, calls = rounds.benchmark_round, []

    def benchmark_round(*args, **kwargs):
        calls.append(args[0].seeds)
        if len(calls) == 2:  # the second round's start: killed there
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rounds, "benchmark_round", benchmark_round)
    with pytest.raises(KeyboardInterrupt):
        rounds.benchmark_in_rounds(config, RunOptions(max_seeds=10, jobs=1, margin=0.0001))
    history = json.loads((tmp_path / "R" / "config.json").read_text())["analysis"]["sequential"]["history"]
    assert [h["seeds"] for h in history] == [5]
