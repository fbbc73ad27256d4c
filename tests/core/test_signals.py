"""bench.core.signals: SIGTERM and SIGHUP stop a run as Ctrl-C does, with the caller's handlers given back after,
and the interruption's one line and exit status (128 + the signal's number)."""

from __future__ import annotations

import io
import signal
import threading

import pytest

from bench.core import signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_in_the_block_is_a_keyboard_interrupt_and_the_handlers_come_back(sig):
    mine = lambda signum, frame: None  # noqa: E731
    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        with pytest.raises(KeyboardInterrupt) as caught, signals.stop_on_signals():
            signal.raise_signal(sig)
        assert getattr(caught.value, "signum", signal.SIGINT) == sig
        assert isinstance(caught.value, signals.Interrupted) == (sig != signal.SIGINT)
        assert all(signal.getsignal(s) is mine for s in before)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_an_ignored_sighup_stays_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with signals.stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)  # ignored: nothing raised
    finally:
        signal.signal(signal.SIGHUP, before)


def test_outside_the_main_thread_the_handlers_are_left_alone():
    seen = []

    def worker() -> None:
        with signals.stop_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


@pytest.mark.parametrize("stop, status, by", [(KeyboardInterrupt(), 130, ""),
                                              (signals.Interrupted(signal.SIGTERM), 143, " by SIGTERM"),
                                              (signals.Interrupted(signal.SIGHUP), 129, " by SIGHUP")])
def test_the_interruption_is_one_line_and_128_plus_the_signal(stop, status, by, capsys):
    assert signals.explain_interruption(stop) == status
    assert capsys.readouterr().err == (f"interrupted{by}: finished cycles are kept in the results folder; run the "
                                       "same command again to resume\n")


def test_a_closed_terminal_still_gives_the_status(monkeypatch):
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr("sys.stderr", Gone())
    assert signals.explain_interruption(signals.Interrupted(signal.SIGHUP)) == 129
