"""The one way tests launch the command line: in this process (`in_process`; the `cli` fixture wraps it) or as
run_bench.py in a subprocess (`command`, `run_cli`, `start_cli`). A run not given --jobs gets one worker, in the
run's own process, where a test's monkeypatches and injected faults hold, unless it imports a --strategy-file or
--model-file (user code runs in a worker process). `read_table` reads what a run still
running writes. A subprocess runs in the test's working folder (conftest gives each test an empty one), so a run
given no --out never touches the checkout's results/."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_BENCH = ROOT / "run_bench.py"
WAIT = 300  # seconds a subprocess gets: generous, the machine may be shared

# One thread per process: runs are compared within one environment, and on a shared 2-core machine several
# single-threaded runs finish sooner than a few oversubscribed ones.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("REL_")} | {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def arguments(*args: object) -> list[str]:
    argv = [str(a) for a in args]
    if argv[:1] != ["report"] and "--jobs" not in argv:
        argv += ["--jobs", "1"]
    return argv


def in_process(*args: object) -> int:
    """The CLI's exit status, run in this process (its output goes to the test's captured stdout/stderr)."""
    from bench.cli import main

    return main(arguments(*args))


def command(*args: object) -> list[str]:
    """The argv of run_bench.py with these arguments."""
    return [sys.executable, str(RUN_BENCH), *arguments(*args)]


def run_cli(*args: object, env: dict[str, str] | None = None, timeout: float = WAIT,
            **kwargs) -> subprocess.CompletedProcess:
    """run_bench.py in a subprocess, to its end: returncode, stdout and stderr as text."""
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=Path.cwd(), env=ENV | (env or {}),
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


def start_cli(logs: Path, *args: object, env: dict[str, str] | None = None, **popen) -> Started:
    """run_bench.py started in the background, its stdout and stderr in new files under logs/."""
    logs.mkdir(parents=True, exist_ok=True)
    n = len(list(logs.glob("*.out")))
    out, err = logs / f"{n}.out", logs / f"{n}.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(command(*args), stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=Path.cwd(),
                                env=ENV | (env or {}), **popen)
    return Started(proc, out, err)


def read_table(path: Path):
    """A parquet file that a running run may replace meanwhile, read through one open file: the writer's rename
    cannot swap it between pandas' reads of its footer and of its pages (a path is opened more than once)."""
    import pandas as pd

    with open(path, "rb") as handle:
        return pd.read_parquet(handle)
