"""Live progress: a rich table (one line per job, an overall bar with ETA) on a terminal, plain lines
otherwise (CI, log files). A cycle is named by its number in cycles.parquet, from 0 ("cycle 0 of 0-5 done");
counts of cycles done say so ("1/6 cycles done")."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from bench.training.jobs import JobSpec

HEARTBEAT_S = 60.0  # in a log, a line at least this often, even while one long cycle runs


@dataclass
class _Job:
    cycles: int
    done: int = 0  # cycles finished; the last one is cycle done - 1 (cycles.parquet counts from 0)
    acc: float | None = None
    state: str = "waiting"


class Progress:
    def __init__(self, specs: list[JobSpec], done: dict[str, int], live: bool | None = None) -> None:
        self.jobs = {s.key: _Job(s.protocol.cycles, done.get(s.key, 0)) for s in specs}
        for job in self.jobs.values():
            job.state = "done" if job.done >= job.cycles else "waiting"
        self.total = sum(j.cycles for j in self.jobs.values())
        self.start_done = sum(j.done for j in self.jobs.values())
        self.started = time.monotonic()
        self.live = sys.stdout.isatty() if live is None else live
        self._live = None
        self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            from rich.live import Live

            self._live = Live(self._render(), refresh_per_second=2, transient=False)
            self._live.__enter__()
        else:  # a log: a cycle of the paper preset runs for many minutes, and silence looks like a hang
            self._heartbeat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    def _beat(self) -> None:
        while not self._stop.wait(min(HEARTBEAT_S, 5.0)):
            quiet = time.monotonic() - self._last_line
            if quiet >= HEARTBEAT_S:
                running = [k for k, j in self.jobs.items() if j.state in ("running", "waiting") and j.done < j.cycles]
                self._print(f"[running] {len(running)} job(s) not finished, no cycle finished in the last "
                            f"{quiet / 60:.1f} min, {(time.monotonic() - self.started) / 60:.1f} min in | "
                            f"{self._overall()}")

    def _print(self, line: str) -> None:
        self._last_line = time.monotonic()
        print(line, flush=True)

    def cycle_done(self, spec: JobSpec, record: dict) -> None:
        job = self.jobs[spec.key]
        job.done, job.acc = record["cycle"] + 1, record["test_acc"]
        job.state = "done" if job.done >= job.cycles else "running"
        if self._live is not None:
            self._live.update(self._render())
        else:
            self._print(f"[{spec.key}] cycle {record['cycle']} of 0-{job.cycles - 1} done  "
                        f"labels {record['n_labeled']:>6}  "
                        f"acc {100 * record['test_acc']:5.1f}%  train {record['train_seconds']:.1f}s  "
                        f"select {record['select_seconds']:.2f}s  | {self._overall()}")

    def failed(self, spec: JobSpec, error: str) -> None:
        self.jobs[spec.key].state = "failed"
        if self._live is not None:
            self._live.update(self._render())
        else:
            self._print(f"[{spec.key}] FAILED: {error}")

    def eta_seconds(self) -> float | None:
        done = sum(j.done for j in self.jobs.values()) - self.start_done
        left = sum(j.cycles - j.done for j in self.jobs.values() if j.state != "failed")
        if done <= 0:
            return None
        return (time.monotonic() - self.started) / done * left

    def _overall(self) -> str:
        done = sum(j.done for j in self.jobs.values())
        eta = self.eta_seconds()
        return f"{done}/{self.total} cycles done, ETA " + ("?" if eta is None else f"{eta / 60:.1f} min")

    def _render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("job", "cycles done", "last cycle", "accuracy", "state"):
            table.add_column(column)
        for key, job in self.jobs.items():
            acc = "" if job.acc is None else f"{100 * job.acc:.1f}%"
            last = "" if job.done == 0 else str(job.done - 1)  # its number in cycles.parquet
            table.add_row(key, f"{job.done}/{job.cycles}", last, acc, job.state)
        done = sum(j.done for j in self.jobs.values())
        return Group(table, ProgressBar(total=self.total, completed=done, width=50), self._overall())
