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


def _output_folder(stdout: str) -> Path:
    """The folder a dry run names on its 'output' line."""
    line = next(line for line in stdout.splitlines() if line.startswith("output "))
    return Path(line.split(maxsplit=1)[1]).resolve()


def test_a_run_given_no_out_writes_outside_the_checkouts_results(cli):
    # `make bench` fills results/quick-digits; a test's run without --out must neither read nor write it
    from launch import run_cli

    status, stdout, _ = cli("--strategies", "random", "entropy", "--dry-run")
    assert status == 0
    in_process = _output_folder(stdout)
    done = run_cli("--strategies", "random", "entropy", "--dry-run")
    assert done.returncode == 0, done.stderr
    for folder in (in_process, _output_folder(done.stdout)):
        assert folder.name == "quick-digits" and not folder.is_relative_to(ROOT), folder
