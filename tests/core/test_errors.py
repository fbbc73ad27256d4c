"""bench.core.errors: a user error is its own type (the CLI's exit status 2), and regular_file refuses what is not
a regular file in one line, without opening it (a FIFO would wait for a writer forever)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import UserError, regular_file, shown


def test_a_user_error_is_an_exception_and_no_bug_is_one():
    assert issubclass(UserError, Exception) and not issubclass(UserError, (OSError, ValueError, KeyError))


def test_a_regular_file_a_folder_and_an_absent_path_pass_as_paths(tmp_path):
    (tmp_path / "f.json").write_text("{}")
    for path in (tmp_path / "f.json", str(tmp_path), tmp_path / "absent.json"):
        assert regular_file(path, "the run's configuration") == Path(path)


def test_a_fifo_is_refused_in_one_line_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(UserError) as caught:
        regular_file(fifo, "the run's configuration")  # opening it would block this test forever
    line = str(caught.value)
    assert line == (f"{fifo} is not a regular file (a FIFO), where the run's configuration belongs: move it away "
                    "and put the file there, or give the path of a regular file.")


def test_a_socket_and_a_character_device_are_named_for_what_they_are(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(UserError, match=r"\(a socket\)"):
            regular_file(path, "the weights")
    if Path("/dev/null").exists():
        with pytest.raises(UserError, match=r"/dev/null is not a regular file \(a character device\)"):
            regular_file("/dev/null", "the weights")


@pytest.mark.parametrize("value, text", [(np.int64(-1), "-1"), (np.float64(1.5), "1.5"), (np.bool_(True), "True"),
                                         ("a", "'a'"), (-1, "-1"), (None, "None")])
def test_a_quoted_value_reads_as_the_file_holds_it(value, text):
    assert shown(value) == text
