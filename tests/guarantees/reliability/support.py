"""Helpers shared by the reliability tests: folder snapshots, result tables, waiting for a fault point; the CLI is
launched through tests/launch.py."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from launch import WAIT, Started

FAULTS = Path(__file__).with_name("fault_injection.py")

# A protocol small enough that a (strategy, seed) job takes well under a second on one core.
PROTOCOL = ["--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "2"]
# The reference run: 2 strategies x 2 seeds x 3 cycles = 12 rows on the digits default.
REFERENCE = ["--strategies", "random", "entropy", "--seeds", "2", *PROTOCOL]
REFERENCE_ROWS = 12
# the only columns allowed to differ between runs
TIMING = ["train_seconds", "eval_seconds", "score_seconds", "select_seconds", "select_peak_mb", "select_rise_mb",
          "finished_at"]


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
