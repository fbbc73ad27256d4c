"""The tests read nothing outside the checkout and ../shared: no test names an absolute path on this machine
but the operating system's interfaces (/proc, /dev); temporary files go under pytest's tmp_path."""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

from conftest import ROOT

OS_INTERFACES = ("/proc", "/dev")


def absolute_paths(source: str) -> list[str]:
    """The string constants of a Python source that are absolute paths whose first folder exists here."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/"):
            first = Path("/", *Path(node.value).parts[1:2])
            if first != Path("/") and first.exists() and not node.value.startswith(OS_INTERFACES):
                found.append(node.value)
    return found


def test_no_test_names_a_path_of_this_machine_outside_the_checkout():
    named = {str(p.relative_to(ROOT)): paths for p in sorted((ROOT / "tests").rglob("*.py"))
             if (paths := absolute_paths(p.read_text()))}
    assert not named, named


def test_the_check_sees_a_machine_path_and_lets_a_made_up_one_pass():
    machine = str(Path(tempfile.gettempdir(), "data.npz"))
    assert absolute_paths(f'SLICE = "{machine}"\nLABEL = "/a/made/up/path"\nPID = "/proc/1/stat"\n') == [machine]
