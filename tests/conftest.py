from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# A protocol small enough that a job takes about a second on one CPU core.
TINY = ["--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "3", "--seeds", "1"]


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process (one worker, in this process, unless --jobs says otherwise): returns (exit status,
    stdout, stderr)."""
    from bench.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        argv = [str(a) for a in args]
        if argv[:1] != ["report"] and "--jobs" not in argv:  # in this process, where a test's monkeypatches hold
            argv += ["--jobs", "1"]
        status = main(argv)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    """A small, learnable 3-channel 12x12 npz dataset: 4 classes with distinct colour patterns."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4
        x = rng.integers(0, 60, size=(n, 12, 12, 3))
        for c in range(4):
            x[y == c, (c * 3):(c * 3 + 3), :, c % 3] += 150
        return x.astype(np.uint8), y.astype(np.int64)

    x_tr, y_tr = make(200)
    x_te, y_te = make(80)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, classes=np.array(["a", "b", "c", "d"]))
    return path


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
