"""bench.core.files: a file is written whole or not at all (a failed write leaves the previous file and says why in
one line), a missing folder is made, and the file gets the permissions open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bench.core import files
from bench.core.errors import UserError


def _write_text(text: str):
    return lambda tmp: Path(tmp).write_text(text)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "config.json"
    files.atomic_write(target, _write_text("old"))
    files.atomic_write(target, _write_text("new"))
    assert target.read_text() == "new" and _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_previous_file_and_says_so_in_one_line(tmp_path):
    target = tmp_path / "cycles.parquet"
    target.write_text("finished cycles")

    def full_disk(tmp: Path) -> None:
        tmp.write_text("half a tab")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError) as caught:
        files.atomic_write(target, full_disk)
    assert str(caught.value) == (f"Cannot write {target} (No space left on device): free disk space or fix the "
                                 "folder's permissions, then run the same command again to resume (finished cycles "
                                 "are kept).")
    assert target.read_text() == "finished cycles" and _leftovers(tmp_path) == []


def test_a_bug_in_the_writer_keeps_its_traceback_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "x.json"

    def bug(tmp: Path) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        files.atomic_write(target, bug)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_a_write_into_a_missing_folder_makes_it(tmp_path):
    target = tmp_path / "results" / "run" / "config.json"
    files.atomic_write(target, _write_text("{}"))
    assert target.read_text() == "{}"


def test_a_name_in_the_way_is_said(tmp_path):
    (tmp_path / "run").write_text("a file where the folder goes")
    with pytest.raises(UserError, match="a file or folder of that name is in the way: move it away, then retry."):
        files.atomic_write(tmp_path / "run" / "config.json", _write_text("{}"), then="retry")


def test_the_file_gets_the_permissions_open_gives(tmp_path):
    target = tmp_path / "written.json"
    files.atomic_write(target, _write_text("{}"))
    with open(tmp_path / "opened.json", "w"):  # the same process, the same umask
        pass
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "opened.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600, which would hide results from colleagues


def test_remove_path_removes_a_file_or_a_tree_and_never_raises(tmp_path):
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "f").write_text("x")
    (tmp_path / "f").write_text("x")
    for path in (tmp_path / "tree", tmp_path / "f", tmp_path / "absent"):
        files.remove_path(path)
        assert not path.exists()
