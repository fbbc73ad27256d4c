"""User errors: one line that says what was wrong and how to fix it (the CLI exits with status 2)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np


class UserError(Exception):
    """Bad input from the person running the benchmark, as opposed to a bug (which keeps its traceback)."""


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def regular_file(path: Path | str, what: str) -> Path:
    """path, when it is a regular file (or absent, or a folder: the caller says what that means); otherwise the
    UserError that names what it is. os.stat never opens the file: opening a FIFO would wait for a writer forever, and
    reading a device would never end. what: the file's role, e.g. "the run's configuration"."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    kind = next((word for test, word in _KINDS if test(mode)), "not a file")
    raise UserError(f"{path} is not a regular file ({kind}), where {what} belongs: move it away and put the file "
                    "there, or give the path of a regular file.")


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, a numpy scalar's as the Python value it holds (numpy 2 would print
    np.int64(-1) where the file holds -1)."""
    return repr(value.item() if isinstance(value, np.generic) else value)
