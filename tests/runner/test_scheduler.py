"""Fan-out, resume after SIGKILL, failure isolation, the folder lock and configuration refusal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from guarantees.reliability.support import picks, rows
from launch import read_table, run_cli, start_cli

from bench.core.config import Protocol
from bench.runner import progress, scheduler
from bench.training.jobs import JobSpec

# two worker processes: the scheduler's pool, not the driver's own process, runs the jobs
JOBS = ["--jobs", "2", "--strategies", "entropy", "random", "--seeds", "2", "--initial", "20", "--budget", "20",
        "--cycles", "4", "--epochs", "3"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, request) -> Path:
    folder = tmp_path_factory.mktemp("full") / "run"
    result = run_cli(*JOBS, "--dataset", request.getfixturevalue("module_npz"), "--out", folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def module_npz(tmp_path_factory) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(300) % 4
    x = rng.integers(0, 60, size=(300, 10, 10, 3))
    for c in range(4):
        x[y == c, c * 2:c * 2 + 3, :, c % 3] += 150
    path = tmp_path_factory.mktemp("data") / "m.npz"
    np.savez(path, x_train=x[:220].astype(np.uint8), y_train=y[:220], x_test=x[220:].astype(np.uint8),
             y_test=y[220:])
    return f"npz:{path}"


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, module_npz, uninterrupted):
    folder = tmp_path / "run"
    proc = start_cli(tmp_path / "logs", *JOBS, "--dataset", module_npz, "--out", folder).proc
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for a few finished cycles, then kill inside a later one
        if (folder / "cycles.parquet").exists() and len(read_table(folder / "cycles.parquet")) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(pd.read_parquet(folder / "cycles.parquet"))
    assert 5 <= partial < 16, partial  # killed mid-run
    result = run_cli(*JOBS, "--dataset", module_npz, "--out", folder)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stdout
    resumed = rows(folder)
    assert not resumed.duplicated(["strategy", "seed", "cycle"]).any()
    pd.testing.assert_frame_equal(resumed, rows(uninterrupted))
    pd.testing.assert_frame_equal(picks(folder), picks(uninterrupted))
    assert not (folder / "checkpoints").exists() or not any((folder / "checkpoints").iterdir())


def test_rerunning_a_finished_run_runs_nothing_and_changes_no_row(tmp_path, module_npz, uninterrupted):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(uninterrupted, folder)
    before = (folder / "cycles.parquet").read_bytes()
    result = run_cli(*JOBS, "--dataset", module_npz, "--out", folder)
    assert result.returncode == 0 and "4 of 4 jobs already finished" in result.stdout
    assert " cycle " not in result.stdout  # no progress line: no cycle ran again
    assert (folder / "cycles.parquet").read_bytes() == before


def test_dask_local_cluster_gives_the_same_rows_as_loky(tmp_path, module_npz, uninterrupted):
    pytest.importorskip("dask.distributed")
    loky, dask = uninterrupted, tmp_path / "dask"  # the same command on the default backend (loky)
    result = run_cli(*JOBS, "--dataset", module_npz, "--backend", "dask", "--out", dask)
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(rows(dask), rows(loky))
    pd.testing.assert_frame_equal(picks(dask), picks(loky))


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path, module_npz):
    strategy_file = tmp_path / "flaky.py"
    strategy_file.write_text(
        "from strategies import Strategy\n\n"
        "class Flaky(Strategy):\n"
        "    '''Raises whenever its parameter `fail` is true (test only).'''\n"
        "    name = 'test-flaky'\n"
        "    needs = frozenset({'probs'})\n\n"
        "    def score(self, inputs):\n"
        "        if self.fail:\n"
        "            raise ValueError('deliberate failure')\n"
        "        return inputs.probs.max(1).values\n\n"
        "    params = {'fail': False}\n"
    )
    folder = tmp_path / "run"
    result = run_cli("--jobs", "2", "--strategy-file", strategy_file, "--strategies", "test-flaky", "random",
                     "--seeds", "1", "--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "2",
                     "--dataset", module_npz, "--strategy-param", "test-flaky.fail=true", "--out", folder)
    assert result.returncode == 1
    assert "failed    1 job(s): test-flaky/seed0" in result.stderr
    failures = json.loads((folder / "failures.json").read_text())
    assert failures[0]["job"] == "test-flaky/seed0" and "deliberate failure" in failures[0]["traceback"]
    rows = pd.read_parquet(folder / "cycles.parquet")
    assert sorted(rows[rows.strategy == "random"]["cycle"]) == [0, 1, 2]  # the other job is complete


def test_a_second_process_on_the_same_folder_is_refused(tmp_path, module_npz):
    from bench.core.errors import UserError
    from bench.results.lock import FolderLock
    folder = tmp_path / "run"
    folder.mkdir()
    held = FolderLock(folder)
    held.acquire()
    try:
        result = run_cli(*JOBS, "--dataset", module_npz, "--out", folder)
        assert result.returncode == 2 and "in use by another process" in result.stderr
        with pytest.raises(UserError, match="in use"):
            FolderLock(folder).acquire()
    finally:
        held.release()
    assert not (folder / "cycles.parquet").exists()


def test_a_changed_configuration_is_refused_and_force_moves_old_results_aside(tmp_path, module_npz, uninterrupted,
                                                                               cli):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(uninterrupted, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    listing = sorted(p.name for p in folder.iterdir())
    result = run_cli(*JOBS[:-1], "5", "--dataset", module_npz, "--out", folder)  # epochs 3 -> 5
    assert result.returncode == 2
    assert "protocol.epochs 3 -> 5" in result.stderr and "--force" in result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    # the dry runs of both commands say what the runs do: the refusal, then what --force would move
    status, _, err = cli(*JOBS[:-1], "5", "--dataset", module_npz, "--out", folder, "--dry-run")
    assert status == 2 and "protocol.epochs 3 -> 5" in err
    status, planned, _ = cli(*JOBS[:-1], "5", "--dataset", module_npz, "--out", folder, "--force", "--dry-run")
    assert status == 0 and "force     cycles.parquet, selections.parquet, config.json" in planned
    assert f"in {folder} would be moved into previous-<time>/ inside it" in planned
    assert sorted(p.name for p in folder.iterdir()) == listing  # nothing moved
    result = run_cli(*JOBS[:-1], "5", "--dataset", module_npz, "--out", folder, "--force", "--strategies", "random",
                  "--seeds", "1", "--cycles", "2")
    assert result.returncode == 0, result.stderr
    aside = [p for p in folder.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and (aside[0] / "cycles.parquet").read_bytes() == before["cycles.parquet"]


def test_fresh_refuses_without_a_terminal(tmp_path, module_npz, uninterrupted):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(uninterrupted, folder)
    result = run_cli(*JOBS, "--dataset", module_npz, "--out", folder, "--fresh", stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "not a terminal" in result.stderr
    assert (folder / "cycles.parquet").exists()


def test_a_log_hears_from_a_run_during_a_long_cycle(monkeypatch, capsys):
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.2)
    spec = JobSpec("r", "digits", "random", 0, Protocol(cycles=2))
    with progress.Progress([spec], {}, live=False) as shown:
        time.sleep(0.7)  # a long cycle: nothing finishes
        beats = capsys.readouterr().out
        shown.cycle_done(spec, {"cycle": 0, "test_acc": 0.5, "n_labeled": 30, "train_seconds": 1.0,
                                "select_seconds": 0.1})
    lines = [line for line in beats.splitlines() if line.startswith("[running] 1 job(s) not finished")]
    assert 2 <= len(lines) <= 4, beats  # one line per quiet interval, no more
    assert "0/2 cycles" in lines[0]


# ---------------------------------------------------------------- the pool and its device slots, called directly


def test_make_pool_gives_each_device_its_slots_and_cuda_workers_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(scheduler, "LokyPool", lambda slots, threads: ("loky", slots, threads))
    monkeypatch.setattr(scheduler, "DaskPool", lambda address, slots: ("dask", address, slots))
    monkeypatch.setattr(scheduler.os, "cpu_count", lambda: 16)
    pool, threads = scheduler.make_pool("loky", ["cpu"], 1, 1, None)
    assert isinstance(pool, scheduler.InlinePool) and threads == 1  # one CPU job runs here
    assert scheduler.make_pool("loky", ["cpu"], 1, 1, None, isolate=True) == (("loky", ["cpu"], 1), 1)
    assert scheduler.make_pool("loky", ["cpu"], 3, 1, None) == (("loky", ["cpu"] * 3, 1), 1)
    assert scheduler.make_pool("loky", ["cuda:0", "cuda:1"], 4, 2, None) == (
        ("loky", ["cuda:0", "cuda:0", "cuda:1", "cuda:1"], 4), 4)  # 16 cores over 4 workers
    assert scheduler.make_pool("dask", ["cuda:0"], 1, 3, None) == (("dask", None, ["cuda:0"] * 3), 5)
    assert scheduler.make_pool("dask", ["cpu"], 2, 1, "tcp://h:8786") == (("dask", "tcp://h:8786", ["cpu"] * 2), None)


def test_a_worker_takes_the_first_slot_no_live_worker_holds():
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: its slot is free again
    holders, lock, me = {0: os.getpid()}, threading.Lock(), os.getpid()
    slots = ["cuda:0", "cuda:1", "cuda:2"]
    assert scheduler.claim_slot(slots, holders, lock, 101) == "cuda:1" and holders == {0: me, 1: 101}
    holders[1] = gone.pid
    assert scheduler.claim_slot(slots, holders, lock, 102) == "cuda:1" and holders == {0: me, 1: 102}
    holders = {0: me, 1: me, 2: me}
    with pytest.raises(RuntimeError, match="no free device slot"):
        scheduler.claim_slot(slots, holders, lock, 103)
