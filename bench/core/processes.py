"""How processes end. A process that ends with its parent: loky workers and the Manager's server are started by
the driver, and none of them outlives it (nor holds the results folder's lock after it)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal this process gets when its parent dies


def die_with_parent(parent: int) -> None:
    """Make this process (a loky worker, the Manager's server) end as soon as its parent, the driver, does.
    Without it a driver killed by SIGKILL or SIGTERM leaves its workers computing, or idling in loky's timeout,
    for minutes. On Linux the kernel sends SIGKILL the moment the parent dies; everywhere, a watchdog thread
    exits once the process has been re-parented. Called first thing in the process (as its initializer)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: the watchdog alone
            pass
    if os.getppid() != parent:  # the driver died while this process was starting
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="die-with-parent", daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
