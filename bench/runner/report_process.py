"""The report's process, started ahead. Importing the report's stack (pandas, scipy.stats, matplotlib, seaborn)
takes seconds; a run forks, as its jobs start, a process that imports it meanwhile on a core the jobs leave free,
then waits. At the run's end it is asked for the report (bench.report.layout.report_folder) and answers in one line
of JSON: the path and the console lines, or a refusal's message. If it died, was not ready within READY_S or
gave no answer within ANSWER_S, the report is written in the run's own process instead, as without it.

A thread cannot do this: the import holds the interpreter's lock, which a lone job training in the run's process
needs (measured on 2 cores: tiny runs took 11.0 to 12.8 s with an importing thread, 9.9 to 10.2 s without).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
from pathlib import Path

from bench.core.errors import UserError
from bench.core.processes import die_with_parent

READY_S = 120  # seconds the process may take to import the report's stack before the run writes the report itself
# Seconds it may take to write the report: a run's report takes seconds, so past this the process is taken to be
# stuck and the run writes the report itself.
ANSWER_S = 900


class ReportProcess:
    """A forked process holding the report's stack, asked for one report (`write`) or told to go (`close`)."""

    def __init__(self) -> None:
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here is the child's to say again
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(from_parent)
            os.close(to_parent)
            _serve(to_child, from_child, parent)
        os.close(to_child)
        os.close(from_child)
        self.pid: int | None = pid
        self._request = os.fdopen(from_parent, "w")
        self._answers = os.fdopen(to_parent, "r")

    def write(self, folder: Path, baseline: str, margin: float | None) -> tuple[Path, list[str]] | None:
        """The report of `folder` as bench.report.layout.report_folder writes it (raising UserError with its message);
        None when that process could not (it died or was stuck, and is killed): then report/ is as it was, and
        the report is this process's to write."""
        try:
            if self._wait_readable(READY_S) and self._answers.readline().strip() == "ready":
                self._request.write(json.dumps({"folder": str(folder), "baseline": baseline, "margin": margin}) + "\n")
                self._request.flush()
                answer = self._answers.readline() if self._wait_readable(ANSWER_S) else ""
                if answer:
                    reply = json.loads(answer)
                    if "error" in reply:
                        raise UserError(reply["error"])
                    return Path(reply["path"]), list(reply["lines"])
        except (OSError, ValueError):  # a closed pipe or a torn line: the child is gone
            pass
        finally:
            self.close()
        return None

    def _wait_readable(self, seconds: float) -> bool:
        return bool(select.select([self._answers], [], [], seconds)[0])

    def close(self) -> None:
        """Stop the process (if it still runs) and reap it."""
        for stream in (self._request, self._answers):
            with contextlib.suppress(OSError):
                stream.close()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)  # an exited child is a zombie until reaped: never another's pid
                os.waitpid(self.pid, 0)
            self.pid = None


def _serve(requests: int, answers: int, parent: int) -> None:
    """The child: import the report's stack, say ready, write the one report asked (if any), exit."""
    status = 1
    try:
        die_with_parent(parent)  # a run killed meanwhile leaves no process behind
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the run's stop is the run's to handle
            signal.signal(signum, signal.SIG_IGN)
        from bench.report.layout import report_folder

        with os.fdopen(requests, "r") as incoming, os.fdopen(answers, "w") as outgoing:
            outgoing.write("ready\n")
            outgoing.flush()
            line = incoming.readline()
            if line:
                asked = json.loads(line)
                try:
                    path, lines = report_folder(Path(asked["folder"]), asked["baseline"], asked["margin"])
                    reply = {"path": str(path), "lines": lines}
                except UserError as err:
                    reply = {"error": str(err)}
                outgoing.write(json.dumps(reply) + "\n")
                outgoing.flush()
        status = 0
    finally:
        os._exit(status)


class ReportAhead:
    """The report's process of one run (a context manager that stops it at the end). The run starts it (`start`)
    when its jobs are about to start, so that a run refused before them forks nothing; and only where it can be
    forked safely and the jobs leave a core for it: on Linux (where the run forks its other helpers too), from a
    process with no other Python thread (a fork copies only the thread that calls it), with a second core.
    Without it, `write` answers None and the report is written in the run's own process."""

    def __init__(self) -> None:
        self.process: ReportProcess | None = None

    def __enter__(self) -> ReportAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        usable = sys.platform.startswith("linux") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1
        if self.process is None and usable:
            self.process = ReportProcess()

    def write(self, folder: Path, baseline: str, margin: float | None) -> tuple[Path, list[str]] | None:
        """ReportProcess.write, or None when none was started."""
        return None if self.process is None else self.process.write(folder, baseline, margin)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
