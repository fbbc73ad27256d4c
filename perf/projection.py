"""The paper grid's wall time projected from measured throughputs: the images one paper-preset job pushes
through the model, and the hours of 25 such jobs (5 strategies x 5 seeds) one at a time."""

from __future__ import annotations

import torch

from bench.core.config import Protocol, preset_protocol

PAPER = preset_protocol("paper")
CIFAR10_TEST = 10_000  # test images the paper evaluates each cycle
PAPER_GRID_JOBS = 25  # the paper's comparison: 5 strategies x 5 seeds


def precision_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def paper_grid_images(protocol: Protocol = PAPER, test: int = CIFAR10_TEST) -> dict[str, int]:
    """Images one paper-preset job pushes through the model: training (epochs x labeled, summed over the
    cycles), scoring (the subset at each acquiring cycle) and testing (the test set at each cycle)."""
    p = protocol
    labeled = sum(p.initial + p.budget * c for c in range(p.cycles))
    return {"train": p.epochs * labeled, "score": p.subset * (p.cycles - 1), "test": test * p.cycles}


def project_paper_grid(train_img_s: float, infer_img_s: float, jobs: int = PAPER_GRID_JOBS) -> dict[str, float]:
    """Wall hours of the paper grid run one job at a time at these throughputs."""
    images = paper_grid_images()
    job_seconds = images["train"] / train_img_s + (images["score"] + images["test"]) / infer_img_s
    return {"jobs": jobs, **{f"{k}_images_per_job": v for k, v in images.items()},
            "hours_per_job": job_seconds / 3600, "hours_total": jobs * job_seconds / 3600}
