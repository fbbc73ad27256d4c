"""One process per results folder: the lock a run holds from its first write to its report's last, and the checks
that a folder can be written at all, made before any work."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bench.core.errors import UserError
from bench.results.store import CHECKPOINTS, CONFIG, CYCLES, REPORT

# the real paths of the folders whose lock this context holds (FolderLock.holding)
_HOLDING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("holding", default=())


def check_writable(folder: Path) -> None:
    """Create the folder if needed and prove it can be written, or say how to fix it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"Cannot write to the output folder {folder} ({err.strerror}): choose another --out.") from None


IN_USE = "wait for it to finish, or write elsewhere with --name"  # a run's advice when its folder is in use


class FolderLock:
    """An exclusive lock on a results folder, so two processes never write one folder. The lock is taken on
    the folder itself (flock on its descriptor): nothing is written, and it dies with the process.

    A run holds its folder from its first write to its last (every round of --seeds auto, the record of the
    looks, the report): `with FolderLock(folder).holding():` around it, and a FolderLock of the same folder taken
    inside that block (by the steps of the run) is that same hold, not a second lock that would refuse it.

    An flock belongs to the open file description, which a forked child shares even though the descriptor is
    close-on-exec: a child that outlived a killed driver (the Manager of the worker pool did) kept the folder
    "in use". So a forked child closes its copies at once (os.register_at_fork, below): the lock stays with
    the process that took it."""

    _held: set[int] = set()  # descriptors of the locks this process holds

    def __init__(self, folder: Path, advice: str = IN_USE) -> None:
        self.folder = Path(folder)
        self.advice = advice  # what the refusal tells the user to do (`report` has no --name to offer)
        self._fd: int | None = None
        self._within = False  # taken inside a holding() block of the same folder: nothing to release

    def acquire(self) -> None:
        if os.path.realpath(self.folder) in _HOLDING.get():
            self._within = True
            return
        try:  # O_DIRECTORY: whatever else stands at the path is refused, never opened (a FIFO would wait)
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise UserError(f"Cannot lock the results folder {self.folder} ({err.strerror}): give the path of a "
                            "folder.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.folder} is in use by another process: {self.advice}.") from None
        self._fd = fd
        FolderLock._held.add(fd)

    def release(self) -> None:
        if self._within:
            self._within = False
            return
        if self._fd in FolderLock._held:  # not in a forked child, which closed its copy and holds nothing
            FolderLock._held.discard(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    @contextlib.contextmanager
    def holding(self) -> Iterator[FolderLock]:
        """The lock held for the block; the block's own FolderLocks of this folder are this hold."""
        self.acquire()
        token = _HOLDING.set((*_HOLDING.get(), os.path.realpath(self.folder)))
        try:
            yield self
        finally:
            _HOLDING.reset(token)
            self.release()

    @staticmethod
    def _close_inherited() -> None:
        """In a forked child: close the parent's lock descriptors (the parent's lock is untouched)."""
        for fd in FolderLock._held:
            try:
                os.close(fd)
            except OSError:
                pass
        FolderLock._held.clear()
        _HOLDING.set(())


def check_place(folder: Path, flag: str = "--out") -> None:
    """A results folder never lies inside another run's report/ (rewritten whole by every report) or
    checkpoints/ (deleted by --fresh): that run would delete it."""
    path = Path(os.path.abspath(folder))
    for inner in (path, *path.parents):
        if inner.name in (REPORT, CHECKPOINTS) and any((inner.parent / n).exists() for n in (CYCLES, CONFIG)):
            raise UserError(f"{flag} {folder} is inside the {inner.name} folder of the run in {inner.parent}, which "
                            f"that run rewrites or deletes: choose an {flag} outside it.")


os.register_at_fork(after_in_child=FolderLock._close_inherited)
