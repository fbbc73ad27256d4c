"""A run holds its folder from its first write to its last: between the rounds of --seeds auto, while it records
its looks and while it writes its report, another taker (a `report`, a second run) is refused. --force and --fresh
act once, before round 1: a later round never sets the run's own earlier rounds aside."""

from __future__ import annotations

import contextvars
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import UserError
from bench.results.lock import FolderLock
from bench.results.store import RunStore
from bench.runner import benchmark, seeds_auto
from bench.runner.resolve import RunOptions, build_config

PROTOCOL = {"initial": 20, "budget": 20, "cycles": 2, "epochs": 1}
FLAGS = ["--initial", "20", "--budget", "20", "--cycles", "2", "--epochs", "1"]


def _free(folder: Path) -> bool:
    """Whether another taker would get the folder's lock now (a fresh context: not this run's own hold)."""
    def take() -> bool:
        lock = FolderLock(folder)
        try:
            lock.acquire()
        except UserError:
            return False
        lock.release()
        return True

    return contextvars.Context().run(take)


def _probing(monkeypatch, module, name: str, folder: Path, seen: list, after: bool = False) -> None:
    """Wrap module.name so that the lock's state is recorded before (or after) each call."""
    real = getattr(module, name)

    def probe(*args, **kwargs):
        if not after:
            seen.append((name, _free(folder)))
        result = real(*args, **kwargs)
        if after:
            seen.append((name, _free(folder)))
        return result

    monkeypatch.setattr(module, name, probe)


def test_the_lock_refuses_a_second_taker_and_is_one_hold_within_a_run(tmp_path):
    with FolderLock(tmp_path).holding():
        inner = FolderLock(tmp_path)
        inner.acquire()  # the run's own step: the same hold
        inner.release()
        assert not _free(tmp_path), "released by an inner step"
    assert _free(tmp_path)


def test_a_fixed_seed_run_holds_its_folder_until_its_report_is_written(tmp_path, monkeypatch):
    folder, seen = tmp_path / "run", []
    _probing(monkeypatch, benchmark, "finish", folder, seen)
    config = build_config(strategies=["random", "entropy"], seeds=1, protocol=PROTOCOL, out=folder)
    benchmark.run_benchmark(config, RunOptions())
    assert seen == [("finish", False)], "the report was written with the folder free for another process"
    assert _free(folder)


def test_seeds_in_rounds_hold_the_folder_between_rounds_and_fresh_deletes_once(tmp_path, monkeypatch):
    """Every round, the record of the looks and the report inside one hold; --fresh's deletion before round 1
    only (the rounds' own rows are never deleted again)."""
    folder, seen = tmp_path / "run", []
    old = build_config(strategies=["random", "entropy"], seeds=1, protocol={**PROTOCOL, "epochs": 2}, out=folder)
    benchmark.run_benchmark(old, RunOptions())
    _probing(monkeypatch, seeds_auto, "benchmark_round", folder, seen, after=True)
    _probing(monkeypatch, seeds_auto, "_record", folder, seen)
    _probing(monkeypatch, seeds_auto, "finish", folder, seen)
    deleted = []
    real_delete = RunStore.delete_results
    monkeypatch.setattr(RunStore, "delete_results", staticmethod(lambda f: (deleted.append(f), real_delete(f))))
    config = build_config(strategies=["random", "entropy"], seeds=3, protocol=PROTOCOL, out=folder)
    result = seeds_auto.benchmark_in_rounds(config, RunOptions(max_seeds=3, on_existing="fresh"))
    assert result.failed == ()
    assert [name for name, _ in seen].count("benchmark_round") >= 1 and {"_record", "finish"} <= {n for n, _ in seen}
    assert not any(free for _, free in seen), f"the folder was free for another process at {seen}"
    assert len(deleted) <= 1
    rows = pd.read_parquet(folder / "cycles.parquet")
    assert set(rows["seed"]) == {0, 1, 2} and len(rows) == 2 * 3 * 2


def test_force_with_seeds_in_rounds_sets_the_old_results_aside_once(tmp_path, cli):
    """Old results of another configuration, then --seeds auto --force over two looks (5 and 6 seeds): one
    previous-*/ holding the old results, and every round's rows in the folder."""
    folder = tmp_path / "run"
    code, _, err = cli("--strategies", "random", "entropy", "--seeds", "1", *FLAGS[:-1], "2", "--out", folder)
    assert code == 0, err
    old = pd.read_parquet(folder / "cycles.parquet")
    code, out, err = cli("--strategies", "random", "entropy", "--seeds", "auto", "--max-seeds", "6",
                         "--margin", "0.05", *FLAGS, "--force", "--out", folder)  # a margin the 5 seeds leave open
    assert code == 0, err
    rows = pd.read_parquet(folder / "cycles.parquet")
    seeds = set(rows["seed"])
    if seeds != set(range(6)):
        pytest.skip(f"decided at the first look (seeds {sorted(seeds)}): no second round to test")  # pragma: no cover
    aside = sorted(folder.glob("previous-*"))
    assert len(aside) == 1, f"{len(aside)} previous-*/ folders: {out}"
    pd.testing.assert_frame_equal(pd.read_parquet(aside[0] / "cycles.parquet"), old)
    assert len(rows) == len(rows.drop_duplicates(["strategy", "seed", "cycle"]))
    assert {(s, seed) for s, seed in zip(rows["strategy"], rows["seed"], strict=True)} >= \
        {(s, seed) for s in ("random", "entropy") for seed in range(5)}
