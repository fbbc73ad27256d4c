"""Performance benchmarks of the harness, each against a baseline measured in the same process.

    python -m bench.perf                      # every measurement, about 8-10 minutes on 2 CPU cores
    python -m bench.perf --quick              # a fast pass (smaller sizes, fewer repetitions)
    python -m bench.perf --only cycle         # one measurement (names: see MEASUREMENTS)
    python -m bench.perf --device cuda --only setup trainer cycle   # what benchmarks/gpu_check.sh runs

Every comparison runs its two variants alternately (A, B, A, B, ...) after a warm-up, on equal work, and
reports the median over pairs of time(B) / time(A): the throughput of A over that of B. Alternating in one
process keeps slow drifts of a shared machine (other jobs, thermal state) out of the ratio. Beside it, the
ratio of the fastest repetitions: on a busy machine short bursts of load can slow a single repetition
several times over, and the fastest repetitions are the least disturbed.

Writes results/perf/perf.json (the machine, the sizes, every repetition's timings) and prints one table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import provenance
from bench.config import Protocol
from bench.data import CIFAR_MEAN, CIFAR_STD, ImageData, from_arrays, load_dataset
from bench.models import Backbone, create_model
from bench.trainer import DeviceData, Trainer, cpu_has_bf16, crop_flip, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SLICE = ROOT.parent / "shared" / "data" / "cifar10-jpeg-10k.npz"
BATCH = 128  # the paper's batch size, used by every training measurement


# ---------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does. Pairs are measured (A, B) repetitions after the warm-up."""

    # Short repetitions, many pairs: on a shared machine a median over more pairs resists bursts of load.
    trainer_labeled: int = 128  # images per epoch (a multiple of BATCH: whole batches only)
    trainer_epochs: int = 1
    trainer_pairs: int = 8
    pipeline_images: int = 2048  # images augmented per repetition
    pipeline_pairs: int = 5
    # One cycle at a quarter of L=500, E=2, M=2000, test 1000: the same mix of training, testing and scoring
    # (so the same expected ratio), small enough that three alternating pairs fit in the time budget.
    cycle_labeled: int = 128  # L: the labeled set trained on
    cycle_epochs: int = 2  # E
    cycle_subset: int = 512  # M: candidates scored
    cycle_budget: int = 128  # labels selected
    cycle_test: int = 256  # test images evaluated at the end of the cycle
    cycle_pairs: int = 3
    pools: tuple[int, ...] = (10_000, 50_000)  # selection pool sizes
    picks: int = 1000
    centres: int = 10_000  # core-set's labeled centres
    dim: int = 512
    # One thread, as each of 2 workers gets on 2 cores: on a loaded machine 2 OpenMP threads make the
    # per-pick matrix-vector products several times slower (threads wait for each other at every barrier).
    selection_threads: int = 1
    # Images scored per variant, in score_pairs alternating chunks. Not the paper's 10k: images/s does not
    # depend on it, and 2 x 10k images through ResNet-18 take over 3 minutes on 2 busy cores.
    score_subset: int = 4096
    score_pairs: int = 4
    schedule_args: tuple[str, ...] = ("--epochs", "10", "--cycles", "4")  # shrinks the quick preset to fit
    schedule_pairs: int = 2


SIZES: dict[str, Sizes] = {
    "full": Sizes(),
    "quick": Sizes(trainer_pairs=3, pipeline_images=1024, pipeline_pairs=3, cycle_pairs=1, pools=(10_000,),
                   score_subset=1024, score_pairs=2, schedule_args=("--epochs", "1", "--cycles", "2"),
                   schedule_pairs=1),
    # Seconds per measurement; the numbers mean nothing. For tests and dry runs of gpu_check.sh on a CPU.
    "tiny": Sizes(trainer_pairs=1, pipeline_images=256, pipeline_pairs=1, cycle_epochs=1, cycle_subset=256,
                  cycle_budget=64, cycle_test=128, cycle_pairs=1, pools=(2_000,), picks=50, centres=500,
                  score_subset=256, score_pairs=1, schedule_args=("--epochs", "1", "--cycles", "2"),
                  schedule_pairs=1),
    # One GPU: enough work per repetition that launch latency and PIL decoding show at their real share.
    "gpu": Sizes(trainer_labeled=2560, trainer_epochs=2, trainer_pairs=3, pipeline_images=8192, pipeline_pairs=3,
                 cycle_labeled=2000, cycle_epochs=4, cycle_subset=8000, cycle_budget=1000, cycle_test=2000,
                 cycle_pairs=2, score_subset=10_000, selection_threads=0),
}


# ---------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of fn(), including the device work it queued."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


@dataclass
class Comparison:
    """Seconds of each measured repetition of two variants doing equal work."""

    a: list[float]
    b: list[float]

    @property
    def ratios(self) -> list[float]:
        """Per pair: time(B) / time(A), i.e. A's throughput over B's."""
        return [tb / ta for ta, tb in zip(self.a, self.b, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def best_ratio(self) -> float:
        """min time(B) / min time(A): each variant at its least disturbed repetition. On a busy machine a
        burst of load can slow one repetition several times over (2 OpenMP threads on 2 shared cores wait
        for each other at every barrier), so this is the cross-check to read beside the median."""
        return min(self.b) / min(self.a)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds_a": self.a, "seconds_b": self.b, "ratios": self.ratios, "median_ratio": self.ratio,
                "best_ratio": self.best_ratio}


def alternate(run_a: Callable[[], float], run_b: Callable[[], float], pairs: int,
              warm_a: Callable[[], Any] | None = None, warm_b: Callable[[], Any] | None = None) -> Comparison:
    """Warm both variants up (by default with one unrecorded run each), then run A, B, A, B ... `pairs`
    times. run_a / run_b return the seconds their work took."""
    (warm_a or run_a)()
    (warm_b or run_b)()
    a, b = [], []
    for _ in range(pairs):
        a.append(run_a())
        b.append(run_b())
    return Comparison(a, b)


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table."""

    name: str  # the measurement
    what: str  # what is compared, in words
    a: str  # variant A's figure, formatted
    b: str  # variant B's figure (or a second figure)
    ratio: float | None = None  # median time(B) / time(A)
    aim: float | None = None  # the ratio to reach
    best_ratio: float | None = None  # min time(B) / min time(A)
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None  # the verdict of a check that has no ratio

    @property
    def status(self) -> str:
        if self.passed is not None:
            return "ok" if self.passed else "FAILED"
        if self.ratio is None or self.aim is None:
            return "-"
        return "met" if self.ratio >= self.aim else "missed"


def rate(images: float, seconds: list[float]) -> str:
    """Throughput of the fastest repetition: the one least disturbed by other processes on the machine."""
    return f"{images / min(seconds):,.0f} img/s"


def failed_row(name: str, err: BaseException) -> Row:
    return Row(name, "failed", "-", "-", note=f"{type(err).__name__}: {err}"[:160],
               details={"traceback": traceback.format_exc()})


# ---------------------------------------------------------------------------------------------- data and models


def cifar_slice(n_test: int | None = None) -> ImageData:
    """The shared 10k CIFAR-10 slice when present, else random uint8 images of the same shape (timings only
    depend on the shape). n_test: keep that many test images, evenly spaced (the file is sorted by class)."""
    if CIFAR_SLICE.is_file():
        data = load_dataset(f"npz:{CIFAR_SLICE}")
    else:
        rng = np.random.default_rng(0)
        data = from_arrays("synthetic", rng.integers(0, 256, (10_000, 3, 32, 32), dtype=np.uint8),
                           np.arange(10_000) % 10, rng.integers(0, 256, (2000, 3, 32, 32), dtype=np.uint8),
                           np.arange(2000) % 10, mean=CIFAR_MEAN, std=CIFAR_STD, pad=4, flip=True)
    if n_test is not None:
        keep = torch.from_numpy(np.linspace(0, data.x_test.shape[0] - 1, n_test).round().astype(np.int64))
        data = dataclasses.replace(data, x_test=data.x_test[keep], y_test=data.y_test[keep])
    return data


def paper_protocol(**changes: Any) -> Protocol:
    """The paper's optimiser settings with precision auto (bf16 autocast where native)."""
    base = Protocol(dataset="cifar10", model="resnet18", batch_size=BATCH, lr=0.1, momentum=0.9,
                    weight_decay=5e-4, milestones=(160,), precision="auto", eval_batch_size=512)
    return dataclasses.replace(base, **changes)


def harness_model(seed: int, device: torch.device) -> Backbone:
    """ResNet-18 as the loop holds it: on the device, channels_last."""
    return create_model("resnet18", 3, 10, seed).to(device, memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------- 0. setup check


def measure_setup(device: torch.device, sizes: Sizes) -> list[Row]:
    """Does the trainer really run the convolutions on `device`, in the resolved precision, channels_last?
    A forward hook on the first convolution records what one Trainer.fit step feeds it."""
    data = DeviceData.from_images(cifar_slice(n_test=BATCH), device)
    trainer = Trainer(data, paper_protocol(epochs=1), device)
    model = harness_model(0, device)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen: dict[str, Any] = {}

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.update(device=str(output.device), output_dtype=str(output.dtype).removeprefix("torch."),
                    channels_last=inputs[0].is_contiguous(memory_format=torch.channels_last))

    handle = conv.register_forward_hook(hook)
    trainer.fit(model, torch.arange(BATCH, device=device), torch.Generator(device=device).manual_seed(0))
    handle.remove()
    expected = str(resolve_precision("auto", device)).removeprefix("torch.")
    ok = seen["device"].startswith(device.type) and seen["output_dtype"] == expected and seen["channels_last"]
    return [Row("setup", "first conv during Trainer.fit: device, dtype, memory format",
                f"{seen['device']}, {seen['output_dtype']}", "channels_last" if seen["channels_last"] else "NCHW",
                note=f"expected: {device.type}, {expected} (precision auto), channels_last",
                details={**seen, "expected_dtype": expected, "ok": ok}, passed=ok)]


# ---------------------------------------------------------------------------------------------- 1. trainer overhead


def bare_steps(model: Backbone, batches: list[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer,
               autocast: Callable[[], Any]) -> None:
    """Forward, backward and step on pre-made tensors: the floor any trainer pays."""
    model.train()
    for x, y in batches:
        with autocast():
            loss = F.cross_entropy(model(x).logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def measure_trainer(device: torch.device, sizes: Sizes) -> list[Row]:
    """Trainer.fit (gather, augment, normalise, whole epochs, schedule) against bare steps, same model and
    precision, equal images."""
    n, epochs = sizes.trainer_labeled, sizes.trainer_epochs
    data = DeviceData.from_images(cifar_slice(), device)
    trainer = Trainer(data, paper_protocol(epochs=epochs), device)
    model = harness_model(0, device)
    labeled = torch.arange(n, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    # Pre-made inputs for the bare loop: the same images, normalised and channels_last once, up front.
    x = data.normalise(data.train_images(labeled))
    batches = [(x[i:i + BATCH], data.y_train[i:i + BATCH]) for i in range(0, n, BATCH)] * epochs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    comparison = alternate(lambda: timed(lambda: trainer.fit(model, labeled, generator), device),
                           lambda: timed(lambda: bare_steps(model, batches, optimizer, trainer.autocast), device),
                           sizes.trainer_pairs,  # warm-up: one batch each
                           warm_a=lambda: trainer.fit(model, labeled[:BATCH], generator),
                           warm_b=lambda: bare_steps(model, batches[:1], optimizer, trainer.autocast))
    images = n * epochs
    precision = str(trainer.dtype).removeprefix("torch.")
    return [Row("trainer", f"Trainer.fit vs bare fwd/bwd/step (resnet18, batch {BATCH}, {precision})",
                rate(images, comparison.a), rate(images, comparison.b), comparison.ratio, 0.9, comparison.best_ratio,
                note=f"{n} images x {epochs} epoch(s) per repetition",
                details={"images": images, "precision": precision, **comparison.as_dict()})]


# ---------------------------------------------------------------------------------------------- 2. input pipeline


class PILImages(torch.utils.data.Dataset):
    """Images served as torchvision's CIFAR10 serves them: one HWC uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images = images  # [N, H, W, C] uint8
        self.labels = labels  # [N] int64
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_transforms(data: ImageData, train: bool) -> Callable:
    """The reference code's transforms: crop with 4-pixel zero padding and flip for training, then
    ToTensor and Normalize."""
    from torchvision import transforms as T

    normalise = [T.ToTensor(), T.Normalize(data.mean, data.std)]
    augment = [T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4)] if train else []
    return T.Compose(augment + normalise)


def hwc(x: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, H, W] tensor -> [N, H, W, C] array, as PIL wants it."""
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def harness_batches(data: DeviceData, n: int, generator: torch.Generator) -> None:
    """Gather n random training images in batches of BATCH, crop, flip and normalise them."""
    order = torch.randperm(data.n_train, generator=generator, device=data.x_train.device)[:n]
    for first in range(0, n, BATCH):
        x = crop_flip(data.x_train[order[first:first + BATCH]], data.pad, data.flip, generator)
        data.normalise(x)


def loader_batches(loader: torch.utils.data.DataLoader, n: int, device: torch.device) -> None:
    """Pull n images through a DataLoader (to the device, as a training loop would)."""
    seen = 0
    for x, _ in loader:
        x.to(device, non_blocking=True)
        seen += x.shape[0]
        if seen >= n:
            return


def measure_pipeline(device: torch.device, sizes: Sizes) -> list[Row]:
    """Batched crop/flip/normalise on uint8 tensors against the torchvision PIL pipeline through a
    DataLoader (num_workers=0), on one CPU thread."""
    images = cifar_slice()
    data = DeviceData.from_images(images, device)
    loader = torch.utils.data.DataLoader(
        PILImages(hwc(images.x_train), images.y_train.numpy(), reference_transforms(images, train=True)),
        batch_size=BATCH, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator(device=device).manual_seed(0)
    n = sizes.pipeline_images
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core each: the reference loads on the training process's one thread
    try:
        comparison = alternate(lambda: timed(lambda: harness_batches(data, n, generator), device),
                               lambda: timed(lambda: loader_batches(loader, n, device), device),
                               sizes.pipeline_pairs)
    finally:
        torch.set_num_threads(threads)
    return [Row("pipeline", "crop_flip + normalise vs torchvision PIL DataLoader (1 thread)",
                rate(n, comparison.a), rate(n, comparison.b), comparison.ratio, 5.0, comparison.best_ratio,
                note=f"{n} images per repetition, batch {BATCH}", details={"images": n, **comparison.as_dict()})]


# ---------------------------------------------------------------------------------------------- 3. one AL cycle


@dataclass(frozen=True)
class CycleSetup:
    """What both cycles share: the data, the labeled set, the candidates' order."""

    images: ImageData
    labeled: np.ndarray  # [L] pool indices
    order: np.ndarray  # [N] the seed's permutation of the pool: candidates are its first unlabeled indices
    epochs: int
    subset: int
    budget: int
    seed: int = 0

    @property
    def n_candidates(self) -> int:
        return min(self.subset, len(self.order) - len(self.labeled))


def make_cycle_setup(sizes: Sizes, seed: int = 0) -> CycleSetup:
    from bench.loop import initial_set, pool_order

    images = cifar_slice(n_test=sizes.cycle_test)
    n = images.x_train.shape[0]
    return CycleSetup(images, initial_set(seed, n, sizes.cycle_labeled), pool_order(seed, 0, n), sizes.cycle_epochs,
                      sizes.cycle_subset, sizes.cycle_budget, seed)


def harness_cycle(setup: CycleSetup, trainer: Trainer, phases: list[dict[str, float]]) -> float:
    """Train, evaluate, score the candidates and select with entropy, as bench.loop runs a cycle.
    Appends the phase timings to `phases`; returns the total seconds."""
    from bench.loop import candidates, gather_inputs
    from bench.seeding import numpy_rng, torch_generator
    from strategies import create_strategy

    device = trainer.device
    model = harness_model(setup.seed, device)  # created before the clock starts, as in the reference cycle
    strategy = create_strategy("entropy")
    labeled = torch.from_numpy(setup.labeled).to(device)
    t0 = time.perf_counter()
    trainer.fit(model, labeled, torch_generator(setup.seed, "train", 0, device=device))
    sync(device)
    t1 = time.perf_counter()
    test_acc, _ = trainer.evaluate(model)
    t2 = time.perf_counter()
    cand = candidates(setup.order, setup.labeled, setup.subset)
    inputs = gather_inputs(strategy, trainer, model, None, torch.from_numpy(cand).to(device), labeled,
                           numpy_rng(setup.seed, "select", strategy.name, 0))
    picks = cand[strategy.select(inputs, setup.budget)]
    t3 = time.perf_counter()
    phases.append({"train": t1 - t0, "evaluate": t2 - t1, "score_select": t3 - t2, "picked": picks.size,
                   "test_acc": test_acc})
    return t3 - t0


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    probs = F.softmax(logits, dim=1)  # [B, C]
    return -(probs * torch.log(probs + 1e-12)).sum(dim=1)  # [B]


def unlabeled_head(order: np.ndarray, labeled: np.ndarray, m: int) -> np.ndarray:
    """The reference's candidates: its shuffled unlabeled list, first m. Shuffled here in the seed's pool
    order, so that both cycles score the same candidates."""
    return order[~np.isin(order, labeled)][:m]


def reference_cycle(setup: CycleSetup, device: torch.device, phases: list[dict[str, float]]) -> float:
    """The same cycle written as the reference LL4AL code and its tutorial do it: PIL transforms through
    DataLoaders, fp32, NCHW, a fresh SGD + MultiStepLR stepped *before* each epoch, test at the end of the
    cycle, a random subset of the unlabeled set scored through a DataLoader, the top uncertainties picked."""
    images = setup.images
    x_train, y_train = hwc(images.x_train), images.y_train.numpy()
    train_set = PILImages(x_train, y_train, reference_transforms(images, train=True))
    pool_set = PILImages(x_train, y_train, reference_transforms(images, train=False))
    test_set = PILImages(hwc(images.x_test), images.y_test.numpy(), reference_transforms(images, train=False))
    pin = device.type == "cuda"
    model = create_model("resnet18", 3, 10, setup.seed).to(device)
    t0 = time.perf_counter()

    sampler = torch.utils.data.SubsetRandomSampler(setup.labeled.tolist(),
                                                   generator=torch.Generator().manual_seed(setup.seed))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, sampler=sampler, pin_memory=pin)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[160])
    model.train()
    with warnings.catch_warnings():  # PyTorch warns about the reference code's step order
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(setup.epochs):
            scheduler.step()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x).logits, y, reduction="none")
                (loss.sum() / loss.size(0)).backward()
                optimizer.step()
    sync(device)
    t1 = time.perf_counter()

    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test_set, batch_size=BATCH, pin_memory=pin):
            correct += (model(x.to(device)).logits.argmax(1).cpu() == y).sum().item()
    t2 = time.perf_counter()

    subset = unlabeled_head(setup.order, setup.labeled, setup.subset)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(pool_set, subset.tolist()), batch_size=BATCH,
                                         pin_memory=pin)
    uncertainty = []
    with torch.no_grad():
        for x, _ in loader:
            uncertainty.append(entropy_of(model(x.to(device)).logits).cpu())
    picks = subset[np.argsort(torch.cat(uncertainty).numpy())[-setup.budget:]]
    t3 = time.perf_counter()
    phases.append({"train": t1 - t0, "evaluate": t2 - t1, "score_select": t3 - t2, "picked": picks.size,
                   "test_acc": correct / len(test_set)})
    return t3 - t0


def tiny_setup(setup: CycleSetup) -> CycleSetup:
    """A one-batch cycle: warms both variants up (kernels, allocator, thread pools) in seconds."""
    return dataclasses.replace(setup, labeled=setup.labeled[:BATCH], epochs=1, subset=BATCH,
                               budget=min(setup.budget, BATCH // 2))


def phase_rates(setup: CycleSetup, phases: list[dict[str, float]]) -> dict[str, float]:
    """Images/s of each phase at its fastest repetition."""
    def fastest(key: str) -> float:
        return min(p[key] for p in phases)

    return {"train_img_s": len(setup.labeled) * setup.epochs / fastest("train"),
            "evaluate_img_s": setup.images.x_test.shape[0] / fastest("evaluate"),
            "score_img_s": setup.n_candidates / fastest("score_select")}


def measure_cycle(device: torch.device, sizes: Sizes) -> list[Row]:
    """One AL cycle end to end: the harness against the reference-style loop, same data, model, epochs."""
    setup = make_cycle_setup(sizes)
    trainer = Trainer(DeviceData.from_images(setup.images, device), paper_protocol(epochs=setup.epochs), device)
    ours: list[dict[str, float]] = []
    ref: list[dict[str, float]] = []
    warm = tiny_setup(setup)
    comparison = alternate(lambda: harness_cycle(setup, trainer, ours), lambda: reference_cycle(setup, device, ref),
                           sizes.cycle_pairs, warm_a=lambda: harness_cycle(warm, trainer, []),
                           warm_b=lambda: reference_cycle(warm, device, []))
    rates = {"harness": phase_rates(setup, ours), "reference": phase_rates(setup, ref)}
    precision = str(trainer.dtype).removeprefix("torch.")
    train_speedup = rates["harness"]["train_img_s"] / rates["reference"]["train_img_s"]
    score_speedup = rates["harness"]["score_img_s"] / rates["reference"]["score_img_s"]
    return [Row("cycle", f"AL cycle (L={len(setup.labeled)}, E={setup.epochs}, M={setup.n_candidates}, entropy): "
                f"harness ({precision}) vs reference loop (fp32, PIL)",
                f"{min(comparison.a):.1f} s", f"{min(comparison.b):.1f} s", comparison.ratio, 2.0,
                comparison.best_ratio,
                note=f"train {train_speedup:.2f}x, score {score_speedup:.2f}x; test {setup.images.x_test.shape[0]}; "
                f"data {setup.images.name}",
                details={"precision": precision, "phases_harness": ours, "phases_reference": ref, "rates": rates,
                         **comparison.as_dict()})]


# ---------------------------------------------------------------------------------------------- 4. selection at scale


def selection_inputs(method: str, n: int, sizes: Sizes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random 512-d post-ReLU embeddings for the pool, plus the labeled centres (core-set) or 10-class
    probabilities (BADGE)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {"embeddings": torch.randn(n, sizes.dim, generator=g).relu_()}  # [n, d]
    if method == "core-set":
        inputs["centres"] = torch.randn(sizes.centres, sizes.dim, generator=g).relu_()  # [L, d]
    else:
        inputs["probs"] = torch.softmax(3.0 * torch.randn(n, 10, generator=g), dim=1)  # [n, C]
    return inputs


def inputs_mib(method: str, n: int, sizes: Sizes) -> float:
    """Size of selection_inputs' float32 tensors."""
    floats = n * sizes.dim + (sizes.centres * sizes.dim if method == "core-set" else n * 10)
    return 4 * floats / 2**20


def run_selection(method: str, inputs: dict[str, torch.Tensor], k: int) -> np.ndarray:
    if method == "core-set":
        from strategies.core_set import k_center_greedy

        return k_center_greedy(inputs["embeddings"], inputs["centres"], k)
    from strategies import PoolInputs, create_strategy

    pool = PoolInputs(n=inputs["embeddings"].shape[0], rng=np.random.default_rng(0), model=None,
                      device=torch.device("cpu"), probs=inputs["probs"], embeddings=inputs["embeddings"])
    return create_strategy("badge").select(pool, k)


def selection_child(method: str, n: int, mode: str, sizes: Sizes) -> dict[str, float]:
    """In a fresh process: warm up on a small pool, build the inputs, then (mode 'measure') select.
    The baseline process does the same without the last step; its peak RSS is subtracted."""
    if sizes.selection_threads:
        torch.set_num_threads(sizes.selection_threads)
    small = dataclasses.replace(sizes, centres=min(sizes.centres, 100))
    run_selection(method, selection_inputs(method, 200, small, seed=1), 10)  # library set-up in both modes
    inputs = selection_inputs(method, n, sizes)
    result = {}
    if mode == "measure":
        start = time.perf_counter()
        picks = run_selection(method, inputs, sizes.picks)
        result["seconds"] = time.perf_counter() - start
        result["distinct"] = int(np.unique(picks).size)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own address space, unlike
    getrusage's ru_maxrss, which Linux carries across exec: a child of a large parent would report the
    parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def spawn_selection(method: str, n: int, mode: str, size: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.perf", "--size", size, "--child", method, str(n), mode]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def strategy_available(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # missing, or mid-edit by someone else: report it, do not stop the suite
        return False


def measure_selection(device: torch.device, sizes: Sizes, size: str) -> list[Row]:
    """Core-set and BADGE selection time and peak extra memory at pool scale (CPU, fresh processes)."""
    rows = []
    threads = sizes.selection_threads or torch.get_num_threads()
    for method, module in (("core-set", "strategies.core_set"), ("badge", "strategies.badge")):
        for n in sizes.pools:
            label = f"{method} select {sizes.picks} of {n:,} x {sizes.dim}-d" + (
                f" ({sizes.centres:,} centres)" if method == "core-set" else " (10 classes)")
            if not strategy_available(module):
                rows.append(Row("selection", label, "not available", "-", note=f"{module} does not import"))
                continue
            baseline = spawn_selection(method, n, "baseline", size)
            measured = spawn_selection(method, n, "measure", size)
            extra = measured["peak_rss_mib"] - baseline["peak_rss_mib"]
            rows.append(Row("selection", label, f"{measured['seconds']:.1f} s", f"+{extra:.0f} MiB peak",
                            note=f"{threads} thread(s), {measured['distinct']} distinct picks; extra over an "
                            f"inputs-only process (inputs {inputs_mib(method, n, sizes):.0f} MiB)",
                            details={"pool": n, "baseline": baseline, "measure": measured, "extra_mib": extra}))
    return rows


def measure_scoring(device: torch.device, sizes: Sizes) -> list[Row]:
    """Scoring throughput over a subset: learning loss (Trainer.infer with its aux head) against entropy
    (no aux head), gather_inputs + select as the loop runs them, alternating over chunks of the subset."""
    label = f"scoring {sizes.score_subset:,} images: learning-loss (aux head) vs entropy"
    if not strategy_available("strategies.learning_loss"):
        return [Row("scoring", label, "not available", "-", note="strategies.learning_loss does not import")]
    from bench.loop import gather_inputs, make_aux
    from strategies import create_strategy

    data = DeviceData.from_images(cifar_slice(n_test=BATCH), device)
    trainer = Trainer(data, paper_protocol(), device)
    model = harness_model(0, device)
    chunks = torch.arange(sizes.score_subset, device=device).chunk(sizes.score_pairs)
    labeled = torch.arange(0, device=device)

    def score(name: str, chunk: torch.Tensor) -> float:
        strategy = create_strategy(name)
        aux = make_aux(strategy, model, 0, device)

        def run() -> None:
            inputs = gather_inputs(strategy, trainer, model, aux, chunk, labeled, np.random.default_rng(0))
            strategy.select(inputs, max(1, chunk.numel() // 10))

        return timed(run, device)

    chunks_a, chunks_b = iter(chunks), iter(chunks)  # A and B score the same chunk, then move to the next one
    warm = chunks[0][:BATCH]
    comparison = alternate(lambda: score("learning-loss", next(chunks_a)), lambda: score("entropy", next(chunks_b)),
                           sizes.score_pairs, warm_a=lambda: score("learning-loss", warm),
                           warm_b=lambda: score("entropy", warm))
    total_a, total_b = sum(comparison.a), sum(comparison.b)  # each variant scored the whole subset
    n = sizes.score_subset
    return [Row("scoring", label, f"{n / total_a:,.0f} img/s", f"{n / total_b:,.0f} img/s", comparison.ratio,
                best_ratio=comparison.best_ratio,
                note=f"over all {sizes.score_pairs} alternating chunks, eval batch {trainer.protocol.eval_batch_size}",
                details=comparison.as_dict())]


# ---------------------------------------------------------------------------------------------- 5. scheduling


def run_bench_has_jobs() -> bool:
    out = subprocess.run([sys.executable, "run_bench.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    return "--jobs" in out.stdout


def bench_run(jobs: int, out: Path, extra: tuple[str, ...]) -> float:
    """Wall seconds of run_bench.py on the quick preset with `jobs` workers, into a fresh folder."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "run_bench.py", "--strategies", "random", "entropy", "--seeds", "2",
           "--jobs", str(jobs), "--devices", "cpu", "--out", str(out), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def measure_scheduling(device: torch.device, sizes: Sizes) -> list[Row]:
    """Jobs per second with 2 workers against 1 (4 jobs: random and entropy x 2 seeds)."""
    label = "run_bench.py quick preset, 4 jobs: --jobs 2 vs --jobs 1"
    if not run_bench_has_jobs():
        return [Row("scheduling", label, "not available yet", "-", note="run_bench.py --help lists no --jobs")]
    with tempfile.TemporaryDirectory(prefix="perf-sched-") as tmp:
        comparison = alternate(lambda: bench_run(2, Path(tmp) / "jobs2", sizes.schedule_args),
                               lambda: bench_run(1, Path(tmp) / "jobs1", sizes.schedule_args),
                               sizes.schedule_pairs, warm_a=lambda: None, warm_b=lambda: None)  # fresh processes
    return [Row("scheduling", label, f"{4 / min(comparison.a):.3f} jobs/s", f"{4 / min(comparison.b):.3f} jobs/s",
                comparison.ratio, 1.0, comparison.best_ratio,
                note="extra flags: " + " ".join(sizes.schedule_args), details=comparison.as_dict())]


# ---------------------------------------------------------------------------------------------- projection


def paper_grid_images(initial: int = 1000, budget: int = 1000, cycles: int = 10, epochs: int = 200,
                      subset: int = 10_000, test: int = 10_000) -> dict[str, int]:
    """Images one paper-preset job pushes through the model: training (epochs x labeled, summed over cycles),
    scoring (subset per acquiring cycle) and testing (test per cycle)."""
    labeled = sum(initial + budget * c for c in range(cycles))
    return {"train": epochs * labeled, "score": subset * (cycles - 1), "test": test * cycles}


def project_paper_grid(train_img_s: float, infer_img_s: float, jobs: int = 25) -> dict[str, float]:
    """Wall hours of the paper grid (5 strategies x 5 seeds) run one job at a time at these throughputs."""
    images = paper_grid_images()
    job_seconds = images["train"] / train_img_s + (images["score"] + images["test"]) / infer_img_s
    return {"jobs": jobs, **{f"{k}_images_per_job": v for k, v in images.items()},
            "hours_per_job": job_seconds / 3600, "hours_total": jobs * job_seconds / 3600}


# ---------------------------------------------------------------------------------------------- driver


MEASUREMENTS: dict[str, Callable[..., list[Row]]] = {
    "setup": measure_setup,
    "trainer": measure_trainer,
    "pipeline": measure_pipeline,
    "cycle": measure_cycle,
    "selection": measure_selection,
    "scoring": measure_scoring,
    "scheduling": measure_scheduling,
}


def machine(device: torch.device) -> dict[str, Any]:
    return {
        "cpu": provenance.cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "device_name": provenance.device_name(str(device)), "cpu_bf16": cpu_has_bf16(),
        "precision_auto": str(resolve_precision("auto", device)).removeprefix("torch."),
        "git_commit": provenance.git_commit(ROOT), "load_average_start": os.getloadavg(),
    }


def times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (("measurement", "left"), ("what", "left"), ("A", "right"), ("B", "right"),
                            ("A/B", "right"), ("aim", "right"), ("", "left"), ("best", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    for r in rows:
        table.add_row(r.name, r.what, r.a, r.b, times(r.ratio), "-" if r.aim is None else f">= {r.aim:g}x",
                      r.status, times(r.best_ratio), r.note)
    Console(width=200).print(table)


def run_all(names: list[str], device: torch.device, size: str) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        start = time.perf_counter()
        try:
            fn = MEASUREMENTS[name]
            args = (device, SIZES[size], size) if name == "selection" else (device, SIZES[size])
            new = fn(*args)
        except Exception as err:  # one broken measurement (or a file mid-edit) must not hide the others
            new = [failed_row(name, err)]
        for row in new:
            row.details["measurement_seconds"] = time.perf_counter() - start
        rows += new
        print(f"done {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def projection(rows: list[Row]) -> dict[str, float] | None:
    """The paper grid's wall time from the cycle measurement's harness throughputs."""
    cycle = next((r for r in rows if r.name == "cycle" and "rates" in r.details), None)
    if cycle is None:
        return None
    rates = cycle.details["rates"]["harness"]
    return project_paper_grid(rates["train_img_s"], rates["score_img_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_const", dest="size", const="quick", help="a fast pass")
    parser.add_argument("--size", choices=list(SIZES), default=None,
                        help="full (default on cpu), quick, tiny (smoke test: the numbers mean nothing), "
                        "gpu (default on cuda)")
    parser.add_argument("--only", nargs="+", choices=list(MEASUREMENTS), metavar="NAME",
                        help=f"run only these measurements ({', '.join(MEASUREMENTS)})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf" / "perf.json")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "POOL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size = args.size or ("gpu" if device.type == "cuda" else "full")
    if args.child:
        print(json.dumps(selection_child(args.child[0], int(args.child[1]), args.child[2], SIZES[size])))
        return 0

    start = time.perf_counter()
    info = machine(device)
    names = args.only or list(MEASUREMENTS)
    rows = run_all(names, device, size)
    info["load_average_end"] = os.getloadavg()
    wall = time.perf_counter() - start
    print_table(rows, f"bench.perf ({size}) on {info['device_name']}, torch {info['torch']}, {wall:.0f} s. "
                      "A, B: fastest repetition; A/B: median over alternating pairs of time(B) / time(A); "
                      "best: fastest B / fastest A")
    grid = projection(rows)
    if grid is not None:
        print(f"paper grid (25 jobs, one at a time on {device}): {grid['hours_total']:,.1f} h "
              f"({grid['hours_per_job']:,.2f} h per job)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": info, "size": size, "sizes": dataclasses.asdict(SIZES[size]), "wall_seconds": wall,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "paper_grid_projection": grid,
        "rows": [{**dataclasses.asdict(r), "status": r.status} for r in rows],
    }, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
