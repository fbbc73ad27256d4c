"""Stopping a run: Ctrl-C, SIGTERM (kill, a batch system's time limit) and SIGHUP (the terminal closed) all stop
it the same clean way, with the workers stopped, finished cycles kept, no half-written file, the folder unlocked,
and exit status 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (an Interrupted for the latter two). Handlers live
    in the main thread only, so elsewhere this does nothing. A caller in this process (a test, a notebook) gets
    its own handlers back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),  # even if started ignored
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup's ignore stays
        replaced[signal.SIGHUP] = signal.signal(signal.SIGHUP, _interrupt)
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            if handler is not None:
                signal.signal(signum, handler)


def explain_interruption(stop: KeyboardInterrupt) -> int:
    """One line on stderr about what is kept; returns the exit status (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    signum = getattr(stop, "signum", signal.SIGINT)
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone: the status still says it
        print(f"interrupted{by}: finished cycles are kept in the results folder; run the same command again "
              "to resume", file=sys.stderr)
    return 128 + signum
