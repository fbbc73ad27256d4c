"""bench.core.provenance: what travels with results, the library versions, the device's name and the code's
commit (with +dirty for uncommitted changes to tracked files), checked against a git repository made here."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core import provenance


def test_versions_are_the_installed_ones_and_a_missing_package_is_said(monkeypatch):
    found = provenance.versions()
    assert found["python"] == platform.python_version()
    assert found["torch"] == torch.__version__.split("+")[0]  # the distribution's version, without the local tag
    assert found["numpy"] == np.__version__
    assert found["scikit-learn"] == version("scikit-learn")
    monkeypatch.setattr(provenance, "_PACKAGES", ("numpy", "no-such-package-here"))
    assert provenance.versions()["no-such-package-here"] == "not installed"


def test_a_cpu_is_named_with_its_threads():
    name = provenance.device_name("cpu")
    assert name.endswith(f" ({torch.get_num_threads()} threads)")
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []
    if models:
        assert provenance.cpu_name() == models[0]


def test_a_cuda_device_is_named_by_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Made-up GPU {device.index}")
    assert provenance.device_name("cuda:1") == "Made-up GPU 1"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_commit_is_heads_and_dirty_only_for_tracked_changes(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    head = (tmp_path / ".git" / "HEAD").read_text().split()[-1]  # ref: refs/heads/<branch>
    commit = (tmp_path / ".git" / head).read_text().strip()
    assert len(commit) == 40 and provenance.git_commit(tmp_path) == commit
    (tmp_path / "notes.txt").write_text("untracked")  # an untracked file changes no code that ran
    assert provenance.git_commit(tmp_path) == commit
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_commit(tmp_path) == commit + "+dirty"


def test_no_repository_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path is seen
    assert provenance.git_commit(tmp_path) == "unknown"
