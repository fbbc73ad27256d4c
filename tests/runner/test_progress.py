"""bench.runner.progress: the plain lines of a log and the live table number cycles as cycles.parquet does, from 0."""

from __future__ import annotations

import io

from rich.console import Console

from bench.core.config import Protocol
from bench.runner import progress
from bench.training.jobs import JobSpec

RECORD = {"test_acc": 0.5, "n_labeled": 30, "train_seconds": 1.0, "select_seconds": 0.1}


def spec(seed: int = 0) -> JobSpec:
    return JobSpec("r", "digits", "random", seed, Protocol(cycles=3))


def test_a_log_line_names_the_cycle_as_cycles_parquet_does(capsys):
    job = spec()
    with progress.Progress([job], {}, live=False) as shown:
        for cycle in range(3):  # cycles.parquet's rows of this job: cycles 0, 1 and 2
            shown.cycle_done(job, {"cycle": cycle, **RECORD})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[random/seed0]")]
    assert len(lines) == 3
    for cycle, line in enumerate(lines):
        assert line.startswith(f"[random/seed0] cycle {cycle} of 0-2 done ") and f"{cycle + 1}/3 cycles done" in line


def test_the_live_table_counts_cycles_done_and_names_the_last_from_0():
    jobs = [spec(0), spec(1)]
    shown = progress.Progress(jobs, {"random/seed1": 2}, live=False)  # seed 1 resumed with cycles 0 and 1 done
    shown.cycle_done(jobs[0], {"cycle": 0, **RECORD})
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(shown._render())
    lines = console.file.getvalue().splitlines()
    header = next(line for line in lines if "job" in line.split())
    assert "cycles done" in header and "last cycle" in header, header
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("random/seed")}
    assert rows["random/seed0"][:3] == ["1/3", "0", "50.0%"], rows
    assert rows["random/seed1"][:2] == ["2/3", "1"], rows
