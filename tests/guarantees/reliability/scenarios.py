"""The fault scenarios of test_faults.py: each runs a few CLI processes in a row (a run paused at an exact
point through fault_injection.py, a signal, a re-run) and returns what it saw, for a test to judge. They
start in the background when the session starts (conftest.py), so that they overlap with other tests."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from launch import read_table, run_cli, start_cli

from .support import FAULTS, PROTOCOL, REFERENCE, rows, snapshot, temp_files, wait_for

# Job order of the reference run: random/seed0, entropy/seed0, random/seed1, entropy/seed1, 3 cycles each,
# one job's cycles in a row. Cycle k of the run (1-based) is its k-th training call and writes the store's
# parquet files for the (2k-1)-th (selections) and 2k-th (cycles) time; cycles 3, 6, 9, 12 select nothing.


def _truncate_checkpoint(folder: Path) -> None:
    path = folder / "checkpoints" / "entropy__seed0.pt"
    path.write_bytes(path.read_bytes()[:100])


@dataclass(frozen=True)
class Interruption:
    id: str
    fault: str  # REL_FAULT: where the run is paused when the signal lands
    sig: signal.Signals
    # (rows of cycles.parquet, cycle groups of selections.parquet) the folder may hold at that moment
    on_disk: set[tuple[int, int]]
    damage: Callable[[Path], None] | None = None  # done to the folder between the signal and the re-run
    second_writer: bool = False  # while paused, start a second run on the same folder (the lock must refuse it)


INTERRUPTIONS = [
    Interruption("sigkill-during-training", "train:5", signal.SIGKILL, {(4, 4)}),  # entropy/seed0, cycle 1
    Interruption("sigkill-during-selection", "select:4", signal.SIGKILL, {(4, 4)}, second_writer=True),
    Interruption("sigkill-mid-store-write", "store-tmp:6", signal.SIGKILL, {(2, 3)}),  # cycles.parquet's temp file
    # Between the two renames of a job's last cycle (one file of the pair replaced, whichever the store writes
    # first): a resume must neither take the job for finished nor lose the cycle's picks.
    Interruption("sigkill-between-store-files", "store-between:5", signal.SIGKILL, {(2, 3), (3, 2)}),
    Interruption("sigkill-then-corrupt-checkpoint", "select:4", signal.SIGKILL, {(4, 4)}, damage=_truncate_checkpoint),
    Interruption("sigint-during-selection", "select:7", signal.SIGINT, {(9, 9)}),  # entropy/seed1, cycle 0
    Interruption("sigint-mid-store-write", "store-tmp:3", signal.SIGINT, {(1, 1)}),
]


@dataclass
class Observed:
    """What a scenario saw, for its test to judge."""

    at_signal: dict = field(default_factory=dict)
    after_signal: dict = field(default_factory=dict)
    second_writer: tuple | None = None
    resume: tuple | None = None
    folder: Path | None = None


def _table_sizes(folder: Path) -> tuple[int, int]:
    """(rows of cycles.parquet, cycle groups of selections.parquet); reading them proves they are whole."""
    cycles = read_table(folder / "cycles.parquet") if (folder / "cycles.parquet").exists() else pd.DataFrame()
    sel = read_table(folder / "selections.parquet") if (folder / "selections.parquet").exists() else None
    groups = 0 if sel is None else sel.groupby(["strategy", "seed", "cycle"]).ngroups
    return len(cycles), groups


def _interrupt_and_resume(case: Interruption, base: Path) -> Observed:
    folder, mark, seen = base / "run", base / "mark", Observed(folder=base / "run")
    run = start_cli(base / "logs", *REFERENCE, "--strategy-file", FAULTS, "--out", folder,
                    env={"REL_FAULT": case.fault, "REL_MARK": str(mark)})
    wait_for(mark, run)
    seen.at_signal = {"sizes": _table_sizes(folder), "files": snapshot(folder)}
    if case.second_writer:
        other = run_cli(*REFERENCE, "--out", folder)
        seen.second_writer = (other.returncode, other.stderr, snapshot(folder))
    run.proc.send_signal(case.sig)
    code, _, err = run.finish()
    seen.after_signal = {"code": code, "stderr": err, "sizes": _table_sizes(folder), "temp": temp_files(folder)}
    if case.damage:
        case.damage(folder)
    again = run_cli(*REFERENCE, "--out", folder)
    seen.resume = (again.returncode, again.stdout, again.stderr)
    return seen


def _random_kills(base: Path, kills: int = 5) -> Observed:
    """SIGKILL at random moments (a seeded draw), each time after the run made some progress; then finish."""
    folder, seen = base / "run", Observed(folder=base / "run")
    rng = np.random.default_rng(20190601)
    landed = []
    for _ in range(kills):
        run = start_cli(base / "logs", *REFERENCE, "--out", folder)
        table = folder / "cycles.parquet"
        before = table.stat().st_ino if table.exists() else None
        deadline = time.monotonic() + 300
        while run.proc.poll() is None and time.monotonic() < deadline:  # wait for a new version of the table
            if table.exists() and table.stat().st_ino != before:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        run.proc.kill()
        code, _, _ = run.finish()
        landed.append({"code": code, "sizes": _table_sizes(folder)})
    seen.after_signal = {"kills": landed, "temp": temp_files(folder)}
    again = run_cli(*REFERENCE, "--out", folder)
    seen.resume = (again.returncode, again.stdout, again.stderr)
    return seen


def _failing_jobs(base: Path) -> Observed:
    """test-oom runs out of memory at its second selection, test-nan's loss is NaN; random must finish.
    Then the same command without the fault: the failed jobs resume and finish."""
    folder, seen = base / "run", Observed(folder=base / "run")
    args = ["--strategy-file", FAULTS, "--strategies", "random", "test-oom", "test-nan", "--seeds", "1",
            *PROTOCOL, "--out", folder]
    first = run_cli(*args, env={"REL_FAIL": "1"})
    failures = json.loads((folder / "failures.json").read_text()) if (folder / "failures.json").exists() else None
    seen.after_signal = {"code": first.returncode, "stderr": first.stderr, "failures": failures,
                         "rows": rows(folder), "raw": pd.read_parquet(folder / "cycles.parquet")}
    again = run_cli(*args)
    seen.resume = (again.returncode, again.stdout, again.stderr)
    return seen


def _dead_worker(base: Path) -> Observed:
    """--jobs 2: test-killed's worker process is SIGKILLed at selection (the kernel's OOM killer)."""
    folder, seen = base / "run", Observed(folder=base / "run")
    first = run_cli("--strategy-file", FAULTS, "--strategies", "random", "test-killed", "entropy", "--seeds", "1",
                    *PROTOCOL, "--jobs", "2", "--out", folder, env={"REL_FAIL": "1"})
    failures = json.loads((folder / "failures.json").read_text()) if (folder / "failures.json").exists() else None
    seen.after_signal = {"code": first.returncode, "stderr": first.stderr, "failures": failures,
                         "rows": rows(folder)}
    return seen


def all_scenarios() -> dict[str, Callable[[Path], Observed]]:
    """Every scenario by name: a function of an empty working folder."""
    longest_first: dict[str, Callable[[Path], Observed]] = {"random-sigkills": _random_kills,
                                                             "dead-worker": _dead_worker}
    return longest_first | {case.id: (lambda base, case=case: _interrupt_and_resume(case, base))
                            for case in INTERRUPTIONS} | {"failing-jobs": _failing_jobs}
