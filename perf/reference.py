"""The baselines of perf.perf: straightforward implementations that the harness's fast paths are measured
against. Bare forward and training passes on resident tensors (the floor any loop pays), the torchvision PIL
input pipeline through a DataLoader, and one AL cycle written as the reference LL4AL code and its tutorial write
it (fp32, NCHW, PIL transforms, argsort selection).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.data.images import ImageData
from bench.models.backbones import Backbone
from bench.training.jobs import JobSpec
from bench.training.loop import initial_model, pool_order, start_state
from perf.timing import sync

# ---------------------------------------------------------------------------------------------- bare passes


def bare_steps(model: Backbone, batches: list[tuple[torch.Tensor, torch.Tensor]],
               optimizer: torch.optim.Optimizer, autocast: Callable[[], Any]) -> None:
    """Forward, backward and step on pre-made tensors: the floor any trainer pays."""
    model.train()
    for x, y in batches:
        with autocast():
            loss = F.cross_entropy(model(x).logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def forward_passes(model: nn.Module, x: torch.Tensor, batch: int,
                   autocast: Callable[[], Any] = contextlib.nullcontext) -> None:
    """Forward passes over resident inputs in batches: what scoring and testing pay without a data path."""
    with torch.inference_mode(), autocast():
        for first in range(0, x.shape[0], batch):
            model(x[first:first + batch])


# ---------------------------------------------------------------------------------------------- input pipeline


class PILImages(torch.utils.data.Dataset):
    """Images served as torchvision's CIFAR10 serves them: one HWC uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images = images  # [N, H, W, C] uint8
        self.labels = labels  # [N] int64
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_transforms(data: ImageData, train: bool) -> Callable:
    """The reference code's transforms: flip and crop with zero padding for training, then ToTensor and
    Normalize. torchvision is imported here: it loads torch._dynamo, seconds that only the reference loop needs."""
    from torchvision import transforms

    augment = [transforms.RandomHorizontalFlip(), transforms.RandomCrop(32, padding=data.pad)] if train else []
    return transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])


def pil_images(data: ImageData, split: str, augment: bool) -> PILImages:
    """The train or test split as the reference code reads it, with or without training augmentation."""
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    hwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())  # [N, H, W, C], as PIL wants it
    return PILImages(hwc, y.numpy(), reference_transforms(data, train=augment))


def loader_batches(loader: torch.utils.data.DataLoader, n: int, device: torch.device) -> None:
    """Pull n images through a DataLoader, to the device as a training loop would."""
    seen = 0
    for x, _ in loader:
        x.to(device, non_blocking=True)
        seen += x.shape[0]
        if seen >= n:
            return


# ---------------------------------------------------------------------------------------------- one AL cycle


def reference_candidates(order: np.ndarray, labeled: np.ndarray, m: int) -> np.ndarray:
    """The reference code's candidates: the first m of its shuffled unlabeled list. Shuffled here in the
    harness's pool order for the cycle, so that both loops score the same candidates."""
    return order[~np.isin(order, labeled)][:m]


def reference_picks(logits: torch.Tensor, budget: int) -> np.ndarray:
    """The reference's entropy selection: positions of the `budget` most uncertain, by an argsort."""
    probs = F.softmax(logits, dim=1)  # [n, C]
    uncertainty = -(probs * torch.log(probs + 1e-12)).sum(dim=1)  # [n]
    return np.argsort(uncertainty.numpy())[-budget:]


def reference_cycle(spec: JobSpec, images: ImageData, device: torch.device, phases: list[dict[str, float]]) -> float:
    """The same cycle as the reference LL4AL code and its tutorial write it: PIL transforms through
    DataLoaders, fp32, NCHW, a fresh SGD + MultiStepLR stepped *before* each epoch, the test set at the end,
    the candidates scored through a DataLoader, the most uncertain picked."""
    p, pin = spec.protocol, device.type == "cuda"
    labeled = start_state(spec, images.x_train.shape[0]).labeled
    # the datasets exist before the clock starts, as torchvision's CIFAR10 holds its arrays from the start
    train_set, pool_set = pil_images(images, "train", augment=True), pil_images(images, "train", augment=False)
    test_set = pil_images(images, "test", augment=False)
    start = time.perf_counter()
    model = initial_model(spec, images.channels, images.n_classes).to(device)  # the harness's initial weights
    sampler = torch.utils.data.SubsetRandomSampler(labeled.tolist(), generator=torch.Generator().manual_seed(0))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=p.batch_size, sampler=sampler, pin_memory=pin)
    optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(p.milestones), gamma=p.gamma)
    model.train()
    with warnings.catch_warnings():  # PyTorch warns about the reference code's step order
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(p.epochs):
            scheduler.step()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x).logits, y, reduction="none")
                (loss.sum() / loss.size(0)).backward()
                optimizer.step()
    sync(device)
    trained = time.perf_counter()

    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test_set, batch_size=p.batch_size, pin_memory=pin):
            correct += (model(x.to(device)).logits.argmax(1).cpu() == y).sum().item()
    evaluated = time.perf_counter()

    cand = reference_candidates(pool_order(spec.seed, 0, images.x_train.shape[0]), labeled, p.subset)
    scoring = torch.utils.data.DataLoader(torch.utils.data.Subset(pool_set, cand.tolist()), batch_size=p.batch_size,
                                          pin_memory=pin)
    with torch.no_grad():
        logits = torch.cat([model(x.to(device)).logits.cpu() for x, _ in scoring])  # [M, C]
    scored = time.perf_counter()
    picks = cand[reference_picks(logits, p.budget)]
    done = time.perf_counter()
    phases.append({"train": trained - start, "evaluate": evaluated - trained, "score": scored - evaluated,
                   "select": done - scored, "score_select": done - evaluated, "rest": 0.0,
                   "test_acc": correct / images.x_test.shape[0], "picked": int(picks.size)})
    return done - start
