"""Helpers shared by the reliability tests: the CLI in a subprocess, folder snapshots, result tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
RUN_BENCH = ROOT / "run_bench.py"
FAULTS = Path(__file__).with_name("fault_injection.py")

# A protocol small enough that a (strategy, seed) job takes well under a second on one core.
PROTOCOL = ["--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "2"]
# The reference run: 2 strategies x 2 seeds x 3 cycles = 12 rows on the digits default.
REFERENCE = ["--strategies", "random", "entropy", "--seeds", "2", *PROTOCOL]
REFERENCE_ROWS = 12
# the only columns allowed to differ between runs
TIMING = ["train_seconds", "eval_seconds", "score_seconds", "select_seconds", "finished_at"]
WAIT = 300  # seconds: generous, the machine may be shared

# One thread per process: runs are compared within one environment, and on a shared 2-core machine several
# single-threaded runs finish sooner than a few oversubscribed ones.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("REL_")} | {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(*args: object) -> list[str]:
    """run_bench.py with these arguments; a run without --jobs gets one worker, in the run's own process, where
    the injected faults strike (as the cli fixture does)."""
    argv = [str(a) for a in args]
    if argv[:1] != ["report"] and "--jobs" not in argv:
        argv += ["--jobs", "1"]
    return [sys.executable, str(RUN_BENCH), *argv]


def run_cli(*args: object, env: dict[str, str] | None = None, timeout: float = WAIT,
            **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=ROOT, env=ENV | (env or {}),
                          timeout=timeout, **kwargs)


@dataclass
class Started:
    """A CLI process running in the background, its output going to files."""

    proc: subprocess.Popen
    out: Path
    err: Path

    def finish(self, timeout: float = WAIT) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self.out.read_text(), self.err.read_text()


def start_cli(logs: Path, *args: object, env: dict[str, str] | None = None) -> Started:
    logs.mkdir(parents=True, exist_ok=True)
    n = len(list(logs.glob("*.out")))
    out, err = logs / f"{n}.out", logs / f"{n}.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(command(*args), stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=ENV | (env or {}))
    return Started(proc, out, err)


def wait_for(path: Path, started: Started, timeout: float = WAIT) -> None:
    """Wait until `path` exists (the fault point was reached); fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if started.proc.poll() is not None:
            raise AssertionError(f"the run ended ({started.proc.returncode}) before reaching the fault point: "
                                 f"{started.err.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            started.proc.kill()
            raise AssertionError("the fault point was not reached in time")
        time.sleep(0.02)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder, nested ones included: a file's bytes, None for a folder."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def temp_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def rows(folder: Path) -> pd.DataFrame:
    """cycles.parquet without its timing columns, in a fixed order."""
    df = pd.read_parquet(folder / "cycles.parquet").drop(columns=TIMING)
    return df.sort_values(["strategy", "seed", "cycle"]).reset_index(drop=True)


def picks(folder: Path) -> pd.DataFrame:
    """selections.parquet in a fixed order."""
    df = pd.read_parquet(folder / "selections.parquet")
    return df.sort_values(["strategy", "seed", "cycle", "rank"]).reset_index(drop=True)


def assert_same_results(folder: Path, reference: Path) -> None:
    """All non-timing columns of cycles.parquet and all of selections.parquet equal the reference's."""
    pd.testing.assert_frame_equal(rows(folder), rows(reference), check_exact=True)
    pd.testing.assert_frame_equal(picks(folder), picks(reference), check_exact=True)


def one_error_line(stderr: str) -> str:
    """The single line a user error prints; fails on a traceback or on more lines."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]
