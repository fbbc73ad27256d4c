"""Files written whole or not at all: a temporary file beside the target, flushed to disk and renamed over it,
with the permissions open() would give; a failed write is one line that says why and what to do."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.core.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide results from colleagues


FOLDER_MODE = 0o777 & ~_umask()  # what mkdir() would give, likewise for mkdtemp's 0700


RESUME = "run the same command again to resume (finished cycles are kept)"


def cannot_write(path: Path, err: OSError, then: str = RESUME) -> UserError:
    """The one line that says a write failed, why, and what to do."""
    if isinstance(err, (FileExistsError, NotADirectoryError, IsADirectoryError)):
        fix = "a file or folder of that name is in the way: move it away"
    else:
        fix = "free disk space or fix the folder's permissions"
    return UserError(f"Cannot write {path} ({err.strerror or err}): {fix}, then {then}.")


@contextlib.contextmanager
def writing(path: Path, then: str = RESUME) -> Iterator[None]:
    """Turn an OSError raised while writing path into the one-line UserError of `cannot_write`."""
    try:
        yield
    except OSError as err:
        raise cannot_write(path, err, then) from None


def atomic_write(path: Path, write: Callable[[Path], None], then: str = RESUME) -> None:
    """Call write(tmp) on a temporary file beside path (its folder made if missing), flush it to disk, then
    rename it over path. A failed write (a full disk, a read-only folder) leaves the previous file as it was
    and says so."""
    tmp = None
    try:
        with writing(path, then):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            write(Path(tmp))
            os.chmod(tmp, FILE_MODE)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree, as far as possible (cleaning up: never an error)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
