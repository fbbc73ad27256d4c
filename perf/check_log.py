"""What every step of perf/gpu_check.sh shares: its sizes (the GPU's, and tiny ones for a dry run on a
CPU) and its log, the lines it prints kept with their figures in one JSON per step, rewritten after every line so
that a step killed by its time budget still leaves what it had measured."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from perf.timing import load_average

SKIPPED = 10  # a step's exit status when it does not apply here (no CUDA, one GPU): the driver says "skipped"


@dataclass(frozen=True)
class CheckSizes:
    """How much work each step does. The GPU's sizes keep the paper's shapes where a figure depends on them."""

    model: str = "resnet18"  # every training measurement's network
    batch: int = 128  # the paper preset's training batch: images/s at another batch would project another grid
    train_images: int = 2560  # labeled images per timed fit: whole batches only
    train_epochs: int = 2
    rounds: int = 3  # alternating repetitions of each variant; the fastest is kept
    infer_images: int = 10_000  # scored per projection (the paper's subset)
    npz_train: int = 10_000  # the synthetic CIFAR-shaped npz of the runs (b, c)
    npz_test: int = 2000
    # run_bench.py's protocol for b and c: two cycles, so that a selection lies between the compared rows
    run_args: tuple[str, ...] = ("--preset", "paper", "--model", "resnet18", "--initial", "1000", "--budget", "1000",
                                 "--cycles", "2", "--epochs", "2", "--subset", "5000")
    pool: int = 10_000  # candidates per selection (d)
    dim: int = 512  # embedding width (ResNet-18's)
    classes: int = 10
    picks: int = 1000
    centres: int = 1000  # core-set's labeled centres: the paper's initial set
    packing_jobs: tuple[int, ...] = (1, 2, 4)
    packing_images: int = 10_240  # per job and epoch: a multiple of the batch, so no last batch of another shape
    packing_epochs: int = 2
    profile_steps: int = 5  # training steps under torch.profiler


SIZES: dict[str, CheckSizes] = {
    "gpu": CheckSizes(),
    # Seconds per step on 2 CPU cores, for the test and dry runs: the numbers mean nothing.
    "tiny": CheckSizes(model="cnn", batch=16, train_images=64, train_epochs=1, rounds=1, infer_images=128,
                       npz_train=512, npz_test=64,
                       run_args=("--preset", "paper", "--model", "cnn", "--initial", "32", "--budget", "16",
                                 "--cycles", "2", "--epochs", "1", "--subset", "64", "--batch-size", "16"),
                       pool=512, dim=32, picks=50, centres=50, packing_jobs=(1, 2), packing_images=64,
                       packing_epochs=1, profile_steps=2),
}


@dataclass
class StepLog:
    """One step's printed lines and figures, in OUT/steps/STEP.json."""

    step: str
    folder: Path
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = {"step": self.step, "headline": "", "lines": [], "data": {}, "not_available": [],
                       "load_before": load_average()}
        self.save()

    @property
    def path(self) -> Path:
        return self.folder / f"{self.step}.json"

    def save(self) -> None:
        self.record["load_after"] = load_average()  # /proc/loadavg: figures compare only under similar load
        self.path.write_text(json.dumps(self.record, indent=2, default=str))

    def line(self, text: str, **data: Any) -> None:
        """Print one line and keep it, with its figures."""
        print(text, flush=True)
        self.record["lines"].append(text)
        self.record["data"].update(data)
        self.save()

    def headline(self, text: str) -> None:
        """The step's answer in a few words, for the summary table."""
        self.record["headline"] = text
        self.line(text)

    def not_available(self, what: str, why: str) -> None:
        self.record["not_available"].append(what)
        self.line(f"{what}: not available ({why})")

    def skip(self, why: str) -> int:
        self.record["skipped"] = why
        self.record["headline"] = f"skipped: {why}"
        self.line(f"skipped: {why}")
        return SKIPPED


@dataclass
class Setting:
    """What every step gets from the driver."""

    device: torch.device
    sizes: CheckSizes
    cifar: Path | None
    out: Path  # the steps' JSON folder
    work: Path  # scratch (the shared inductor cache)


def device_of(name: str) -> torch.device:
    """DEVICE as the driver gives it: cpu, cuda (its first GPU) or cuda:N."""
    return torch.device("cuda:0" if name == "cuda" else name)
