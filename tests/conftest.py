from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from launch import ROOT  # one definition of the checkout's root for every test module

if TYPE_CHECKING:
    import pandas as pd

SHARED_DATA = ROOT.parent / "shared" / "data"  # beside the checkout: the CIFAR-10 slice (tests skip without it)

# A protocol small enough that a job takes about a second on one CPU core.
TINY = ["--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "3", "--seeds", "1"]
# One cycle of 8 labels and one epoch: enough for a run through a torchvision model to say what it did.
ONE_CYCLE = ["--initial", "8", "--budget", "8", "--cycles", "2", "--subset", "16", "--epochs", "1", "--seeds", "1",
             "--batch-size", "8"]


def train_with_torch_sgd(params: Iterable, protocol: Any, epoch_losses: Callable[[], Iterator[Any]],
                         optimizer: Callable[[Iterable], Any] | None = None) -> None:
    """protocol.epochs epochs of plain torch.optim.SGD (or optimizer(params), an optimizer built by hand) and
    MultiStepLR, the schedule stepped in the protocol's convention (reference: before each epoch); epoch_losses()
    yields one epoch's batch losses, each made after the previous batch's step. The independent side of the tests
    that check the harness's training."""
    import torch

    p = protocol
    opt = (optimizer(params) if optimizer is not None
           else torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(p.milestones), gamma=p.gamma)
    for _ in range(p.epochs):
        if p.convention == "reference":
            schedule.step()
        for loss in epoch_losses():
            opt.zero_grad()
            loss.backward()
            opt.step()
        if p.convention != "reference":
            schedule.step()


@contextlib.contextmanager
def registries_scoped() -> Iterator[None]:
    """Strategies and models registered inside the block, and the record of user files imported, are forgotten
    when it ends: no test sees another's registrations, whatever order they run in."""
    import strategies  # the built-ins register before the scope opens, so they outlive it
    from bench.core.registry import IMPORTED_CODE
    from bench.models.backbones import MODELS

    imported = dict(IMPORTED_CODE)
    try:
        with strategies.STRATEGIES.scoped(), MODELS.scoped():
            yield
    finally:
        IMPORTED_CODE.clear()
        IMPORTED_CODE.update(imported)


@pytest.fixture(autouse=True)
def _scoped_registries() -> Iterator[None]:
    with registries_scoped():
        yield


@pytest.fixture(autouse=True)
def _own_working_folder(tmp_path_factory, monkeypatch) -> None:
    """Every test runs in an empty folder of its own (and so do the runs launch.py starts): a run given no --out
    writes results/NAME there, never into the checkout's results/, which `make bench` fills."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process (launch.in_process): returns (exit status, stdout, stderr)."""
    from launch import in_process

    def run(*args: object) -> tuple[int, str, str]:
        status = in_process(*args)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def models() -> Iterator[None]:
    """Model files register names globally: each test gets the registry it started with."""
    from bench.models.backbones import MODELS

    with MODELS.scoped():
        yield


def one_line(err: str) -> str:
    """The CLI's stderr, which must be one line starting 'error: '."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def torchvision_module():
    """torchvision, imported by the tests that build its models rather than at collection (with torch._dynamo,
    which it loads, it costs seconds in every test process)."""
    import torchvision

    return torchvision

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


def cycles_frame(curves: dict[tuple[str, int], list[float]], labels: list[int], dataset: str = "d") -> pd.DataFrame:
    """Rows of cycles.parquet from {(strategy, seed): accuracy per cycle}: the input of the analysis tests."""
    import pandas as pd

    rows = [
        {"run": "r", "dataset": dataset, "model": "m", "strategy": strategy, "seed": seed, "cycle": cycle,
         "n_labeled": labels[cycle], "test_acc": acc, "ll_spearman": math.nan}
        for (strategy, seed), accs in curves.items()
        for cycle, acc in enumerate(accs)
    ]
    return pd.DataFrame(rows)


# The budgets of cycles_of's settings: the input of the suite's tests and of the statistics across settings.
LABELS = [100, 200, 300, 400]


def cycles_of(setting: str, effects: dict[str, float], seeds: int = 5, noise: float = 0.004,
              seed: int = 0) -> pd.DataFrame:
    """A setting's rows: every strategy is random's curve plus its effect (accuracy) and noise after cycle 0."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        base = 0.5 + 0.05 * np.arange(len(LABELS)) + rng.normal(0, 0.01, len(LABELS))  # [n_cycles]
        for strategy, effect in {"random": 0.0, **effects}.items():
            shift = np.r_[0.0, np.full(len(LABELS) - 1, effect)] + np.r_[0.0, rng.normal(0, noise, len(LABELS) - 1)]
            if strategy == "random":
                shift[:] = 0.0
            for cycle, acc in enumerate(base + shift):
                rows.append({"run": setting, "dataset": "digits", "model": "cnn", "strategy": strategy, "seed": s,
                             "cycle": cycle, "n_labeled": float(LABELS[cycle]), "test_acc": float(acc)})
    return pd.DataFrame(rows)


# One strategy of each verdict against random, as the report pages' tests need them: entropy 5 points ahead, margin
# 5 behind, bald identical to it (equivalent), badge noisy around +1 (undecided, with seeds needed).
FOUR_WORDS = {"entropy": "better", "margin": "worse", "bald": "equivalent", "badge": "undecided"}


def four_verdicts(setting: str = "s", seed: int = 0) -> pd.DataFrame:
    """A setting's rows (cycles_of) whose primary verdicts are FOUR_WORDS."""
    import pandas as pd

    clear = cycles_of(setting, {"entropy": 0.05, "margin": -0.05, "bald": 0.0}, seeds=6, noise=0.002, seed=seed)
    noisy = cycles_of(setting, {"badge": 0.01}, seeds=6, noise=0.05, seed=seed + 3)
    return pd.concat([clear, noisy[noisy["strategy"] == "badge"]], ignore_index=True)


# A model file whose factory's parameter has no default (model 'test-wide-net', --model-param width=N): the
# --model-param tests of the models and of frozen mode.
WIDE = '''
from torch import nn
from bench.models.backbones import register_model


class Wide(nn.Module):
    def __init__(self, in_channels, n_classes, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


@register_model("test-wide-net")
def make(in_channels, n_classes, width):
    return Wide(in_channels, n_classes, int(width))
'''


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
