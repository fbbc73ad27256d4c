"""Test-only fault injection for tests/reliability, loaded into the CLI with --strategy-file.

Importing it changes nothing unless the environment asks. REL_FAULT=POINT:N pauses the run the N-th time
it reaches POINT, after writing the file named by REL_MARK, so that the test can send a signal right there:

    train:N          inside the N-th training call (Trainer.fit), at its second batch
    select:N         inside the N-th selection (the pool's inference done, the picks not yet made)
    store-tmp:N      the N-th parquet write of the store: its temporary file written, not yet renamed
    store-between:N  just after the N-th parquet write of the store was renamed, before the next one

REL_FAIL=1 makes the strategies below fail; without it they are ordinary strategies, so a re-run completes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch

import bench.results.store
import bench.training.loop
import bench.training.trainer
from bench.models.backbones import AuxHead
from strategies import PoolInputs, Strategy

_POINT, _, _NTH = os.environ.get("REL_FAULT", "").partition(":")
_visits: dict[str, int] = {}


def _reached(point: str) -> bool:
    """Count a visit to `point`; True at the visit that REL_FAULT names."""
    if point != _POINT:
        return False
    _visits[point] = _visits.get(point, 0) + 1
    return _visits[point] == int(_NTH)


def _pause() -> None:
    """Tell the test where the run stands, then wait for its signal."""
    Path(os.environ["REL_MARK"]).write_text(_POINT)
    time.sleep(600)
    raise RuntimeError("fault injection: no signal came")


if _POINT:
    _fit, _crop_flip = bench.training.trainer.Trainer.fit, bench.training.trainer.crop_flip
    _gather_inputs, _atomic_write = bench.training.loop.gather_inputs, bench.results.store.atomic_write
    _batches: dict[str, int | None] = {"seen": None}  # batches of the fit being watched (None: not watching)

    def _watched_fit(self, *args, **kwargs):
        _batches["seen"] = 0 if _reached("train") else None
        try:
            return _fit(self, *args, **kwargs)
        finally:
            _batches["seen"] = None

    def _watched_crop_flip(*args, **kwargs):
        if _batches["seen"] is not None:
            _batches["seen"] += 1
            if _batches["seen"] == 2:
                _pause()
        return _crop_flip(*args, **kwargs)

    def _watched_gather_inputs(*args, **kwargs):
        inputs = _gather_inputs(*args, **kwargs)
        if _reached("select"):
            _pause()
        return inputs

    def _watched_atomic_write(path: Path, write) -> None:
        if path.suffix != ".parquet":
            return _atomic_write(path, write)
        if _reached("store-tmp"):
            def write_then_pause(tmp: Path) -> None:
                write(tmp)
                _pause()

            return _atomic_write(path, write_then_pause)
        _atomic_write(path, write)
        if _reached("store-between"):
            _pause()

    bench.training.trainer.Trainer.fit = _watched_fit
    bench.training.trainer.crop_flip = _watched_crop_flip
    bench.training.loop.gather_inputs = _watched_gather_inputs
    bench.results.store.atomic_write = _watched_atomic_write


def _failing() -> bool:
    return bool(os.environ.get("REL_FAIL"))


class OutOfMemoryAtSecondSelection(Strategy):
    """Least confidence that runs out of memory at its second selection under REL_FAIL (test only)."""

    name = "test-oom"
    needs = frozenset({"probs"})
    selections = 0

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        type(self).selections += 1
        if _failing() and type(self).selections >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return 1 - inputs.probs.max(dim=1).values  # [n]


class _NaNLossHead(AuxHead):
    """An auxiliary head whose training loss is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_loss(self, out, per_sample_loss, labels, epoch, generator) -> torch.Tensor:
        return self.weight.sum() * float("nan")

    def forward(self, out) -> torch.Tensor:
        return out.logits[:, 0] * 0  # [B]


class NaNLoss(Strategy):
    """Random picks; under REL_FAIL its auxiliary loss is NaN, so training diverges (test only)."""

    name = "test-nan"

    def score(self, inputs: PoolInputs):
        return inputs.rng.random(inputs.n)  # [n]

    def aux_head(self, model, protocol) -> AuxHead | None:
        return _NaNLossHead() if _failing() else None


class KilledWorker(Strategy):
    """Random picks; under REL_FAIL its process dies at selection, as under the kernel's OOM killer (test only;
    run it with --jobs 2 or more, where it kills a worker, never the driver)."""

    name = "test-killed"

    def score(self, inputs: PoolInputs):
        if _failing():
            os.kill(os.getpid(), signal.SIGKILL)
        return inputs.rng.random(inputs.n)  # [n]
