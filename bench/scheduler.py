"""Runs the job list. Jobs run one after another on the first device."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.data import ImageData
from bench.loop import CycleResult, JobSpec, run_job
from bench.trainer import DeviceData, Trainer

OnCycle = Callable[[JobSpec, CycleResult], None]


def run_sequential(specs: list[JobSpec], data: ImageData, device: torch.device, on_cycle: OnCycle) -> None:
    """Run every job on one device, sharing the dataset already moved there."""
    if not specs:
        return
    protocol = specs[0].protocol
    trainer = Trainer(DeviceData.from_images(data, device, augment=protocol.augment), protocol, device)
    for spec in specs:
        for result in run_job(spec, trainer, data.n_classes):
            on_cycle(spec, result)
