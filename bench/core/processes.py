"""How processes end. A process that ends with its parent: loky workers and the Manager's server are started by
the driver, and none of them outlives it (nor holds the results folder's lock after it). And the command line's own
end, without the seconds of module teardown."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import NoReturn

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


def exit_process(status: int) -> NoReturn:
    """End the command-line process with `status` as Python's own exit would, less the teardown of every module
    object by object: after torch, pandas, scipy and matplotlib are imported that teardown takes about 2 s
    (measured on a 2-core CPU), and nothing of ours is in it. What an exit must do is done first: wait for the
    threads that are not daemons, run the atexit handlers (multiprocessing's, loky's, logging's, tempfile's
    finalizers), flush stdout and stderr. Only for the command line's end: never in a process that goes on."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # atexit's own runner of the registered handlers, as Python's exit calls it
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing left to say on it
            stream.flush()
    os._exit(status)
