"""Processes and exit statuses: workers die with the driver and never hold its folder lock; SIGTERM and SIGHUP
stop a run as Ctrl-C does; the exit statuses of README's Guarantees (0 done, 1 some jobs failed, 2 bad input,
128 + the signal's number when interrupted).

Every run is run_bench.py in a real subprocess; where a signal must land mid-run, the run is paused at an exact
point by reliability/fault_injection.py (a worker sleeps there until it is killed). Each test kills whatever
it started, the driver's workers included, before it ends."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guarantees.reliability.support import (
    FAULTS,
    PROTOCOL,
    one_error_line,
    picks,
    rows,
    snapshot,
    temp_files,
)
from launch import read_table, run_cli, start_cli

# Two jobs of 3 cycles on two worker processes (a loky pool and its Manager), done in seconds. The strategies are
# fault_injection.py's, ordinary ones unless REL_FAIL is set: each worker imports that file to run them, and so
# pauses where REL_FAULT says.
JOBS = ["--strategy-file", FAULTS, "--strategies", "test-nan", "test-oom", "--seeds", "1", *PROTOCOL, "--jobs", "2"]
ROWS = 6  # rows of cycles.parquet when JOBS has finished
WAIT = 60  # seconds to reach a pause point (about 40 on a loaded 2-core machine: the workers start slowly)
GONE = 10  # seconds the processes of a dead driver may take to go

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


# ---------------------------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...]; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, str]:
    """Every process below pid, by pid, with its start time (which tells it from a later one given its pid)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            table[int(entry.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    level = {pid}
    while level:
        level = {p for p, (parent, _) in table.items() if parent in level and p not in found}
        found.update({p: table[p][1] for p in level})
    return found


def _alive(processes: dict[int, str]) -> dict[int, str]:
    """Those still running, by pid, with their command lines (a zombie waiting for its new parent is gone)."""
    alive = {}
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields and fields[19] == started and fields[0] != "Z":
            with contextlib.suppress(OSError):
                alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return alive


def _wait_gone(processes: dict[int, str], timeout: float) -> dict[int, str]:
    """Wait up to `timeout` seconds for the processes to end; returns those left."""
    deadline = time.monotonic() + timeout
    while (alive := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _default_signals() -> None:
    """In the child, before exec: the signals the tests send take their default action, even when pytest itself
    was started with one ignored (nohup ignores SIGHUP, and the CLI leaves an ignored SIGHUP ignored)."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class Run:
    """run_bench.py in the background, its output in files; `seen` collects the processes below it."""

    def __init__(self, logs: Path, *args: object, env: dict[str, str] | None = None) -> None:
        started = start_cli(logs, *args, env={"PYTHONUNBUFFERED": "1"} | (env or {}), preexec_fn=_default_signals)
        self.proc, self.out, self.err = started.proc, started.out, started.err
        self.seen: dict[int, str] = {}

    def children(self) -> dict[int, str]:
        """The processes below the driver now (remembered, so that they can be killed once it is gone)."""
        now = _descendants(self.proc.pid)
        self.seen.update(now)
        return now

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Wait up to WAIT seconds for done(), while the run goes on; fail if it ends first or time runs out."""
        deadline = time.monotonic() + WAIT
        while not done():
            assert self.proc.poll() is None, (f"the run ended ({self.proc.returncode}) before {what}: "
                                              f"{self.err.read_text()[-2000:]}")
            assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
            time.sleep(0.2)  # a look at /proc costs about 10 ms: leave the cores to the run
        self.children()

    def finish(self) -> tuple[int, str]:
        return self.proc.wait(timeout=WAIT), self.err.read_text()

    def kill(self) -> None:
        """The driver and every process seen below it, whatever state they are in."""
        if self.proc.poll() is None:
            self.children()
            self.proc.kill()
        self.proc.wait()
        for pid in _alive(self.seen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start(tmp_path) -> Iterator:
    """start(*args, env=...) -> Run; every run is killed, with its workers, when the test ends."""
    runs: list[Run] = []

    def started(*args: object, env: dict[str, str] | None = None) -> Run:
        runs.append(Run(tmp_path / f"logs{len(runs)}", *args, env=env))
        return runs[-1]

    yield started
    for run in runs:
        run.kill()


def _pause_at(point: str, tmp_path: Path) -> dict[str, str]:
    """The environment that pauses a run at `point` (fault_injection.py), telling the test through tmp_path/mark."""
    return {"REL_FAULT": point, "REL_MARK": str(tmp_path / "mark")}


def _rows(folder: Path) -> int:
    path = folder / "cycles.parquet"
    return len(read_table(path)) if path.exists() else 0


def _open_by(pid: int, path: Path) -> bool:
    """Whether the process has `path` open (one of its descriptors leads there)."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(fd)) == path:
                return True
    return False


# ---------------------------------------------------------------------------------------------- dying together


def _paused(run: Run, folder: Path, mark: Path, rows: int = 0) -> dict[int, str]:
    """Wait until a worker sleeps at the fault point and the folder holds `rows` finished cycles; returns the
    processes below the driver then."""
    run.wait_until(lambda: mark.exists() and _rows(folder) >= rows, "a worker paused at the fault point")
    return run.children()


def _with_workers(run: Run, workers: int) -> dict[int, str]:
    """Wait until the pool's worker processes exist (the Manager is started before them); returns the processes
    below the driver then."""
    def started() -> bool:
        return sum("LokyProcess" in cmd for cmd in _alive(run.children()).values()) >= workers

    run.wait_until(started, f"{workers} worker processes started")
    return run.children()


def _unlocked(folder: Path) -> bool:
    """Whether the folder's lock is free (the same command, run again, takes it first)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # and with it the lock, if taken


@needs_proc
def test_no_process_below_the_driver_holds_the_folder_lock(start, tmp_path):
    # The lock is an flock on the folder's descriptor: a process that shares that descriptor shares the lock,
    # and keeps the folder "in use" for as long as it lives, after the driver too.
    folder = tmp_path / "run"
    run = start(*JOBS, "--out", folder, env=_pause_at("train:1", tmp_path))  # paused in its first cycle: it stays
    children = _with_workers(run, 2)
    holders = {pid: cmd for pid, cmd in _alive(children).items() if _open_by(pid, folder.resolve())}
    assert holders == {}, f"processes below the driver hold the results folder open: {holders}"
    assert _open_by(run.proc.pid, folder.resolve())  # the driver does: the check sees a holder
    run.proc.kill()
    run.proc.wait()
    # Free at once, whatever its children are still doing: the same command, run again, takes it and resumes
    # (what a resumed run computes is test_faults.py's; a whole run here would take most of a minute).
    assert _unlocked(folder)


@needs_proc
def test_sigkill_of_the_driver_mid_cycle_ends_every_process_below_it(start, tmp_path):
    folder = tmp_path / "run"
    run = start(*JOBS, "--out", folder, env=_pause_at("train:1", tmp_path))
    children = _paused(run, folder, tmp_path / "mark")  # a worker sleeps in its first cycle, for 10 minutes
    run.proc.kill()
    run.proc.wait()
    left = _wait_gone(children, GONE)
    assert left == {}, f"{len(left)} process(es) outlived the driver by {GONE} s: {left}"
    assert _unlocked(folder)


@needs_proc
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["sigterm", "sighup"])
def test_a_signal_stops_the_run_like_ctrl_c(sig, status, start, tmp_path):
    folder = tmp_path / "run"
    run = start(*JOBS, "--out", folder, env=_pause_at("select:2", tmp_path))
    children = _paused(run, folder, tmp_path / "mark", rows=1)  # a cycle finished; a worker sleeps in the next
    run.proc.send_signal(sig)
    code, stderr = run.finish()
    assert code == status, stderr
    line = one_error_line(stderr)
    assert line.startswith("interrupted") and "run the same command again to resume" in line, line
    left = _wait_gone(children, GONE)
    assert left == {}, f"{len(left)} process(es) outlived the interrupted run by {GONE} s: {left}"
    assert temp_files(folder) == []
    assert 1 <= len(rows(folder)) < ROWS and not picks(folder).empty  # finished cycles kept; both tables whole
    assert _unlocked(folder)  # so the same command resumes (it does after Ctrl-C: test_faults.py's sigint cases)


# ---------------------------------------------------------------------------------------------- exit statuses


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run's folder (exit status 0)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli("--strategies", "random", "entropy", "--seeds", "1", *PROTOCOL, "--out", folder, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    return folder


def test_report_with_an_unknown_baseline_is_one_line_exit_2_and_writes_nothing(finished):
    before = snapshot(finished)
    result = run_cli("report", finished, "--baseline", "randon", timeout=WAIT)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_error_line(result.stderr)
    assert "'randon'" in line and "did you mean 'random'" in line, line
    assert "entropy" in line and "least-confidence" in line, line  # the known strategies are named
    assert snapshot(finished) == before


def test_when_every_job_fails_at_its_first_cycle_the_run_exits_1_with_the_failures(tmp_path):
    folder = tmp_path / "run"
    result = run_cli("--strategy-file", FAULTS, "--strategies", "test-nan", "--seeds", "1", *PROTOCOL, "--out", folder,
                     env={"REL_FAIL": "1"}, timeout=WAIT)  # its training loss is NaN from the first cycle on
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "No results" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("failed    1 job(s): test-nan/seed0; details in")
    failures = json.loads((folder / "failures.json").read_text())
    assert [f["job"] for f in failures] == ["test-nan/seed0"]
    assert failures[0]["error"].startswith("TrainingDiverged")


def test_a_process_whose_parent_is_already_gone_ends_at_once():
    """die_with_parent, called with a parent that is not this process's: the driver died while it started."""
    from bench.core.processes import die_with_parent

    child = os.fork()
    if child == 0:  # the child names a parent it does not have: it must end here, with status 1
        try:
            die_with_parent(os.getppid() + 1_000_000)
            os._exit(0)  # reached only if it did not end
        finally:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 1


def test_a_process_ends_when_its_parent_does():
    """A grandchild tied to its parent (the child) by die_with_parent ends once the child is gone."""
    from bench.core.processes import die_with_parent

    tied_r, tied_w = os.pipe()  # grandchild -> child: it is tied
    pid_r, pid_w = os.pipe()  # child -> this process: the grandchild's pid
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            die_with_parent(os.getppid())
            os.write(tied_w, b"tied")
            time.sleep(60)  # killed long before this ends, once its parent has gone
            os._exit(0)
        os.read(tied_r, 4)
        os.write(pid_w, f"{grandchild}\n".encode())
        os._exit(0)  # the parent goes
    for fd in (tied_r, tied_w, pid_w):
        os.close(fd)
    pid = int(os.read(pid_r, 64).decode())
    os.waitpid(child, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the grandchild outlived its parent by 10 s")
