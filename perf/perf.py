"""Performance of the harness, each figure against a baseline measured in the same run.

    python -m perf.perf                        # every measurement: minutes on 2 CPU cores
    python -m perf.perf --quick                # a short pass (smaller sizes, fewer repetitions)
    python -m perf.perf --only cycle selection # some measurements (names: MEASUREMENTS)
    python -m perf.perf --cifar PATH           # CIFAR-shaped rows on a real npz slice
    python -m perf.perf --device cuda --only setup trainer cycle   # what gpu_check.sh runs

A comparison runs its two variants alternately (harness, baseline, harness, ...) after a warm-up, on equal
work, and reports the median over pairs of time(baseline) / time(harness): the harness's throughput over
the baseline's. Alternating keeps slow drifts of a shared machine out of the ratio. Beside it, `best`: the
fastest baseline repetition over the fastest harness one, the least disturbed by bursts of load.

Memory has one measure: VmHWM (peak resident memory, /proc/self/status) after the work minus VmHWM
before it, in a fresh process per measurement, so that no earlier row's peak hides this one's.

Without --cifar the CIFAR-shaped rows run on random uint8 images of CIFAR-10's shape: every figure here
depends on the shape only; each row's note says which data it ran on. Every row records the load average
(/proc/loadavg) before and after it: figures are comparable only between rows measured under similar load.
Writes results/perf/perf.json (the machine, the sizes, every repetition) and prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core import provenance
from bench.core.config import Protocol, preset_protocol
from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.data.images import ImageData
from bench.models.backbones import Backbone, create_model
from bench.runner.benchmark import run_benchmark
from bench.runner.resolve import RunOptions, build_config
from bench.training.jobs import JobSpec
from bench.training.loop import gather_inputs, make_aux, next_cycle, pool_order, start_state
from bench.training.trainer import DeviceData, Trainer, compile_works, cpu_has_bf16, crop_flip, resolve_precision
from perf import packing
from perf.projection import (
    PAPER_GRID_JOBS,  # noqa: F401 (tests read the grid's size here, beside its projection)
    paper_grid_images,
    precision_name,
    project_paper_grid,
)
from perf.reference import bare_steps, forward_passes, loader_batches, pil_images, reference_cycle
from perf.timing import (
    Row,
    alternate,
    compared,
    in_fresh_process,
    load_average,
    print_table,
    run_measurements,
    timed,
    vm_hwm_mib,
    write_results,
)
from strategies import PoolInputs, create_strategy

ROOT = Path(__file__).resolve().parents[1]
PAPER = preset_protocol("paper")  # every training measurement uses its optimiser, batch and precision


# ---------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does. Pairs: measured (harness, baseline) repetitions after the warm-up."""

    model: str = "resnet18"  # the network of every training and scoring measurement
    # Short repetitions, many pairs: on a shared machine a median over more pairs resists bursts of load.
    trainer_labeled: int = 128  # images per epoch (a multiple of the batch: whole batches only)
    trainer_epochs: int = 1
    trainer_pairs: int = 8
    pipeline_images: int = 2048  # images augmented per repetition
    pipeline_pairs: int = 5
    # One cycle at a quarter of L=500, E=2, M=2000, test 1000: the same mix of training, testing and scoring
    # (so the same expected ratio), small enough that three alternating pairs fit in the time budget.
    cycle_labeled: int = 128  # L: labeled images trained on
    cycle_epochs: int = 2  # E
    cycle_subset: int = 512  # M: candidates scored
    cycle_budget: int = 128  # labels selected
    cycle_test: int = 256  # test images evaluated
    cycle_pairs: int = 3
    selection_methods: tuple[str, ...] = ("core-set", "badge", "bald")
    pools: tuple[int, ...] = (10_000, 50_000)  # candidates per selection
    picks: int = 1000
    centres: int = 10_000  # core-set's labeled centres
    dim: int = 512  # embedding width (ResNet-18's)
    classes: int = 10
    # One thread, as each of 2 workers gets on 2 cores; on a loaded machine 2 OpenMP threads make the per-pick
    # matrix-vector products several times slower (threads wait for each other at every barrier). 0: torch's.
    selection_threads: int = 1
    # Images scored per variant, in score_pairs equal alternating chunks. Not the paper's 10k: images/s does
    # not depend on it, and 2 x 10k images through ResNet-18 take over 3 minutes on 2 busy cores.
    score_subset: int = 4096
    score_pairs: int = 4
    schedule_epochs: int = 10  # the quick preset shrunk to fit: epochs and cycles of each of the 4 jobs
    schedule_cycles: int = 4
    schedule_pairs: int = 2
    kernels_images: int = 512  # images per repetition of the bare forward and training passes
    kernels_pairs: int = 3
    kernels_compiled: bool = True  # also the compiled forward's steady state (where torch.compile works)


SIZES: dict[str, Sizes] = {
    "full": Sizes(),
    "quick": Sizes(trainer_pairs=3, pipeline_images=1024, pipeline_pairs=3, cycle_pairs=1, pools=(10_000,),
                   score_subset=1024, score_pairs=2, schedule_epochs=1, schedule_cycles=2, schedule_pairs=1,
                   kernels_images=256, kernels_pairs=2),
    # Seconds per measurement, for tests and dry runs of gpu_check.sh on a CPU: the numbers mean nothing.
    "tiny": Sizes(model="cnn", trainer_labeled=16, trainer_pairs=1, pipeline_images=128, pipeline_pairs=1,
                  cycle_labeled=16, cycle_epochs=1, cycle_subset=32, cycle_budget=8, cycle_test=16, cycle_pairs=1,
                  pools=(2_000,), picks=50, centres=500, score_subset=32, score_pairs=2, schedule_epochs=1,
                  schedule_cycles=2, schedule_pairs=1, kernels_images=32, kernels_pairs=1, kernels_compiled=False),
    # One GPU: enough work per repetition that launch latency and PIL decoding show at their real share.
    "gpu": Sizes(trainer_labeled=2560, trainer_epochs=2, trainer_pairs=3, pipeline_images=8192, pipeline_pairs=3,
                 cycle_labeled=2000, cycle_epochs=4, cycle_subset=8000, cycle_budget=1000, cycle_test=2000,
                 cycle_pairs=2, score_subset=10_000, score_pairs=4, selection_threads=0),
}


@dataclass(frozen=True)
class Context:
    """What every measurement gets."""

    device: torch.device
    sizes: Sizes
    images: ImageData  # CIFAR-10-shaped: the --cifar slice, or random pixels of its shape


# ---------------------------------------------------------------------------------------------- data and models


def cifar_images(path: Path | None) -> ImageData:
    """The npz CIFAR slice at `path`, or (None) random uint8 images of CIFAR-10's shape and statistics."""
    if path is not None:
        return load_dataset(f"npz:{path}")
    return packing.random_cifar()


def with_test(images: ImageData, n_test: int) -> ImageData:
    """Keep n_test test images, evenly spaced (the slice is sorted by class)."""
    keep = torch.from_numpy(np.linspace(0, images.x_test.shape[0] - 1, n_test).round().astype(np.int64))
    return dataclasses.replace(images, x_test=images.x_test[keep], y_test=images.y_test[keep])


def paper_protocol(sizes: Sizes, **changes: Any) -> Protocol:
    """The paper preset on `sizes.model`, with the milestones kept as its proportion of the epochs."""
    return preset_protocol("paper", model=sizes.model, **changes)


def harness_model(ctx: Context, seed: int = 0) -> Backbone:
    """The model as the loop holds it: on the device, channels_last."""
    model = create_model(ctx.sizes.model, ctx.images.channels, ctx.images.n_classes, seed)
    return model.to(ctx.device, memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------- setup check


def measure_setup(ctx: Context) -> list[Row]:
    """Does the trainer run the convolutions on the device, in the resolved precision, channels_last?
    A forward hook on the first convolution records what one Trainer.fit step feeds it."""
    device, batch = ctx.device, PAPER.batch_size
    trainer = Trainer(DeviceData.from_images(with_test(ctx.images, batch), device),
                      paper_protocol(ctx.sizes, epochs=1), device)
    model = harness_model(ctx)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen: dict[str, Any] = {}

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.update(device=str(output.device), output_dtype=precision_name(output.dtype),
                    channels_last=inputs[0].is_contiguous(memory_format=torch.channels_last))

    handle = conv.register_forward_hook(hook)
    trainer.fit(model, torch.arange(batch, device=device), torch.Generator(device=device).manual_seed(0))
    handle.remove()
    expected = precision_name(resolve_precision("auto", device))
    ok = seen["device"].startswith(device.type) and seen["output_dtype"] == expected and seen["channels_last"]
    layout = "channels_last" if seen["channels_last"] else "NCHW"
    return [Row("setup", "first conv during Trainer.fit: device, dtype, memory format",
                f"{seen['device']}, {seen['output_dtype']}, {layout}", f"{device.type}, {expected}, channels_last",
                passed=ok, note="baseline column: what precision auto should give here",
                details={**seen, "expected_dtype": expected})]


# ---------------------------------------------------------------------------------------------- trainer overhead


def measure_trainer(ctx: Context) -> list[Row]:
    """Trainer.fit (gather, augment, normalise, whole epochs, schedule) against bare steps on pre-made
    batches: same model, precision and optimiser, equal images."""
    device, sizes = ctx.device, ctx.sizes
    n, epochs = sizes.trainer_labeled, sizes.trainer_epochs
    protocol = paper_protocol(sizes, epochs=epochs)
    data = DeviceData.from_images(ctx.images, device)
    trainer = Trainer(data, protocol, device)
    model = harness_model(ctx)
    labeled = torch.arange(n, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    bs = protocol.batch_size
    x, y = data.normalise(data.train_images(labeled)), data.y_train[labeled]  # normalised, channels_last once
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)] * epochs
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                weight_decay=protocol.weight_decay)
    comparison = alternate(lambda: timed(lambda: trainer.fit(model, labeled, generator), device),
                           lambda: timed(lambda: bare_steps(model, batches, optimizer, trainer.autocast), device),
                           sizes.trainer_pairs, n * epochs, "img",  # warm-up: one batch each
                           warm_harness=lambda: trainer.fit(model, labeled[:bs], generator),
                           warm_baseline=lambda: bare_steps(model, batches[:1], optimizer, trainer.autocast))
    precision = precision_name(trainer.dtype)
    return [compared("trainer", f"Trainer.fit vs bare fwd/bwd/step ({sizes.model}, batch {bs}, {precision})",
                     comparison, 0.9, f"{n} images x {epochs} epoch(s) per repetition; data {ctx.images.name}",
                     precision=precision)]


# ---------------------------------------------------------------------------------------------- input pipeline


def harness_batches(data: DeviceData, n: int, batch: int, generator: torch.Generator) -> None:
    """Gather n random training images in batches, crop, flip and normalise them, as Trainer.fit does."""
    order = torch.randperm(data.n_train, generator=generator, device=data.x_train.device)[:n]
    for first in range(0, n, batch):
        data.normalise(crop_flip(data.x_train[order[first:first + batch]], data.pad, data.flip, generator))


def measure_pipeline(ctx: Context) -> list[Row]:
    """Batched crop/flip/normalise on uint8 tensors against the torchvision PIL pipeline through a
    DataLoader (num_workers=0), both on one CPU thread."""
    device, n, batch = ctx.device, ctx.sizes.pipeline_images, PAPER.batch_size
    data = DeviceData.from_images(ctx.images, device)
    loader = torch.utils.data.DataLoader(pil_images(ctx.images, "train", augment=True), batch_size=batch, shuffle=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator(device=device).manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core each: the reference decodes on the training process's one thread
    try:
        comparison = alternate(lambda: timed(lambda: harness_batches(data, n, batch, generator), device),
                               lambda: timed(lambda: loader_batches(loader, n, device), device),
                               ctx.sizes.pipeline_pairs, n, "img")
    finally:
        torch.set_num_threads(threads)
    return [compared("pipeline", "crop_flip + normalise vs torchvision PIL DataLoader (1 thread)", comparison, 5.0,
                     f"{n} images per repetition, batch {batch}; data {ctx.images.name}")]


# ---------------------------------------------------------------------------------------------- one AL cycle


def cycle_spec(ctx: Context, labeled: int, epochs: int, subset: int, budget: int) -> JobSpec:
    """One entropy job of the paper protocol at these sizes; its cycle 0 trains, evaluates and acquires."""
    protocol = paper_protocol(ctx.sizes, initial=labeled, budget=budget, cycles=2, subset=subset, epochs=epochs)
    return JobSpec(run="perf", dataset=ctx.images.name, strategy="entropy", seed=0, protocol=protocol)


def harness_cycle(spec: JobSpec, trainer: Trainer, n_classes: int, phases: list[dict[str, float]]) -> float:
    """bench.training.loop.next_cycle at cycle 0; appends its phase timings to `phases` and returns its seconds."""
    start = time.perf_counter()
    result, _ = next_cycle(spec, trainer, n_classes, start_state(spec, trainer.data.n_train))
    seconds = time.perf_counter() - start
    r = result.record
    phases.append({"train": r["train_seconds"], "evaluate": r["eval_seconds"], "score": r["score_seconds"],
                   "select": r["select_seconds"] - r["score_seconds"], "score_select": r["select_seconds"],
                   "rest": seconds - r["train_seconds"] - r["eval_seconds"] - r["select_seconds"],
                   "test_acc": r["test_acc"]})
    return seconds


def phase_rates(spec: JobSpec, images: ImageData, phases: list[dict[str, float]]) -> dict[str, float]:
    """Images/s of training and of scoring + selection, at each phase's fastest repetition."""
    p = spec.protocol
    n_candidates = min(p.subset, images.x_train.shape[0] - p.initial)
    return {"train_img_s": p.initial * p.epochs / min(ph["train"] for ph in phases),
            "score_img_s": n_candidates / min(ph["score_select"] for ph in phases)}


def measure_cycle(ctx: Context) -> list[Row]:
    """One AL cycle end to end: bench.training.loop.next_cycle against the reference-style loop on the same data,
    initial weights, labeled set and candidates."""
    sizes, device = ctx.sizes, ctx.device
    images = with_test(ctx.images, sizes.cycle_test)
    spec = cycle_spec(ctx, sizes.cycle_labeled, sizes.cycle_epochs, sizes.cycle_subset, sizes.cycle_budget)
    batch = spec.protocol.batch_size  # the warm-up: one batch at most (kernels, allocator, thread pools)
    warm_subset = min(sizes.cycle_subset, batch)
    warm = cycle_spec(ctx, min(sizes.cycle_labeled, batch), 1, warm_subset, warm_subset // 2)
    data = DeviceData.from_images(images, device)
    trainer, warm_trainer = Trainer(data, spec.protocol, device), Trainer(data, warm.protocol, device)
    ours: list[dict[str, float]] = []
    ref: list[dict[str, float]] = []
    comparison = alternate(lambda: harness_cycle(spec, trainer, images.n_classes, ours),
                           lambda: reference_cycle(spec, images, device, ref), sizes.cycle_pairs, 1, "cycle",
                           warm_harness=lambda: harness_cycle(warm, warm_trainer, images.n_classes, []),
                           warm_baseline=lambda: reference_cycle(warm, images, device, []))
    rates = {"harness": phase_rates(spec, images, ours), "reference": phase_rates(spec, images, ref)}
    speedup = {k: rates["harness"][k] / rates["reference"][k] for k in ("train_img_s", "score_img_s")}
    p, precision = spec.protocol, precision_name(trainer.dtype)
    return [compared("cycle", f"AL cycle (L={p.initial}, E={p.epochs}, M={p.subset}, entropy): next_cycle "
                     f"({precision}) vs reference loop (fp32, PIL)", comparison, 2.0,
                     f"train {speedup['train_img_s']:.2f}x, score {speedup['score_img_s']:.2f}x; "
                     f"test {images.x_test.shape[0]}; data {images.name}",
                     precision=precision, phases_harness=ours, phases_reference=ref, rates=rates),
            phases_row(ours, ref)]


PHASES = ("train", "evaluate", "score", "select", "rest")


def phases_row(ours: list[dict[str, float]], ref: list[dict[str, float]]) -> Row:
    """The cycle's phases, each at its fastest repetition: where the time goes, and each phase's ratio.
    Scoring's ratio is the issue's aim (2.5x): the forward pass over the candidates."""
    fastest = {side: {k: min(ph[k] for ph in phases) for k in PHASES} for side, phases in (("h", ours), ("r", ref))}

    def text(side: str) -> str:
        return ", ".join(f"{k} {fastest[side][k]:.2f} s" for k in PHASES)

    ratios = {k: fastest["r"][k] / fastest["h"][k] for k in PHASES if fastest["h"][k] > 0 and fastest["r"][k] > 0}
    return Row("phases", "cycle phases, fastest repetition each: harness vs reference loop", text("h"), text("r"),
               ratios.get("score"), ratios.get("score"), 2.5,
               note="ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + "; ratio column: score",
               details={"harness": fastest["h"], "reference": fastest["r"], "ratios": ratios})


# ---------------------------------------------------------------------------------------------- kernels


def measure_kernels(ctx: Context) -> list[Row]:
    """The ceilings of the cycle's phases: the network as the harness runs it (channels_last, the resolved
    precision; the protocol's eval batch for inference) against the reference's fp32 NCHW at batch 128, same
    weights, same resident float tensors, no data path on either side. A phase's ratio in the cycle row can
    exceed its kernel ratio only by what the reference's PIL path costs; beyond that it needs cheaper
    arithmetic, not a better loop. Where torch.compile works, the compiled forward's steady state too (its
    compilation is not timed here: the compile row pays it)."""
    device, sizes = ctx.device, ctx.sizes
    n, bs, eval_bs = sizes.kernels_images, PAPER.batch_size, PAPER.eval_batch_size
    data = DeviceData.from_images(ctx.images, device, augment=False)
    trainer = Trainer(data, paper_protocol(sizes), device)
    precision = precision_name(trainer.dtype)
    labeled = torch.arange(n, device=device)
    x_cl, y = data.normalise(data.train_images(labeled)), data.y_train[labeled]  # [n, C, H, W] channels_last
    ours, ref = harness_model(ctx), harness_model(ctx).to(memory_format=torch.contiguous_format)
    ours.eval()
    ref.eval()

    def forward(model: nn.Module, x: torch.Tensor, batch: int, autocast: Callable[[], Any]) -> Callable[[], float]:
        return lambda: timed(lambda: forward_passes(model, x, batch, autocast), device)

    def train(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer,
              autocast: Callable[[], Any]) -> Callable[[], float]:
        return lambda: timed(lambda: bare_steps(model, batches, optimizer, autocast), device)

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=PAPER.lr, momentum=PAPER.momentum,
                               weight_decay=PAPER.weight_decay)

    compiled = torch.compile(ours) if sizes.kernels_compiled and compile_works(device) is None else None
    steps = [(x_cl[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]
    nchw_steps = [(x.contiguous(), t) for x, t in steps]
    opt_ours, opt_ref = sgd(ours), sgd(ref)
    rows = [compared("kernels", f"forward, {sizes.model}: channels_last, batch {eval_bs} ({precision}) vs NCHW, "
                     f"batch {bs} (fp32)", alternate(forward(ours, x_cl, eval_bs, trainer.autocast),
                                                      forward(ref, x_cl.contiguous(), bs, contextlib.nullcontext),
                                                      sizes.kernels_pairs, n, "img"), None,
                     "resident tensors: the score and evaluate phases' ceiling", precision=precision)]
    if compiled is not None:
        forward_passes(compiled, x_cl, eval_bs, trainer.autocast)  # compiles (a last partial batch recompiles)
        rows.append(compared("kernels", f"forward, {sizes.model}, channels_last, batch {eval_bs} ({precision}): "
                             "compiled vs eager", alternate(forward(compiled, x_cl, eval_bs, trainer.autocast),
                                                            forward(ours, x_cl, eval_bs, trainer.autocast),
                                                            sizes.kernels_pairs, n, "img"), None,
                             "steady state, compilation not timed", precision=precision))
    rows.append(compared("kernels", f"forward/backward/step, {sizes.model}, batch {bs}: channels_last "
                         f"({precision}) vs NCHW (fp32)",
                         alternate(train(ours, steps, opt_ours, trainer.autocast),
                                   train(ref, nchw_steps, opt_ref, contextlib.nullcontext), sizes.kernels_pairs, n,
                                   "img"), None, "resident tensors: the train phase's ceiling", precision=precision))
    if compiled is not None:
        bare_steps(compiled, steps, opt_ours, trainer.autocast)  # compiles the training graphs
        rows.append(compared("kernels", f"forward/backward/step, {sizes.model}, batch {bs}, channels_last "
                             f"({precision}): compiled vs eager",
                             alternate(train(compiled, steps, opt_ours, trainer.autocast),
                                       train(ours, steps, opt_ours, trainer.autocast), sizes.kernels_pairs, n, "img"),
                             None, "steady state, compilation not timed", precision=precision))
    return rows


# ---------------------------------------------------------------------------------------------- selection at scale


def selection_inputs(method: str, n: int, sizes: Sizes, n_centres: int, seed: int = 0,
                     device: torch.device | str = "cpu") -> PoolInputs:
    """What the loop hands the strategy for n candidates: random post-ReLU embeddings ([n, dim]), plus the
    labeled centres (core-set), float64 class probabilities as gather_inputs makes them (BADGE) or a
    dropout head (BALD). Drawn on the CPU, then moved: the same numbers on every device."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    inputs = PoolInputs(n=n, rng=np.random.default_rng(seed), model=None, device=device,
                        embeddings=torch.randn(n, sizes.dim, generator=g).relu_().to(device))
    strategy = create_strategy(method)
    if "labeled_embeddings" in strategy.needs:
        inputs.labeled_embeddings = torch.randn(n_centres, sizes.dim, generator=g).relu_().to(device)  # [L, d]
    if "probs" in strategy.needs:
        probs = torch.softmax(3.0 * torch.randn(n, sizes.classes, generator=g, dtype=torch.float64), dim=1)
        inputs.probs = probs.to(device)
    # the strategy's head (BALD's), built for a stand-in model that has only what aux_head reads
    stand_in = SimpleNamespace(embedding_dim=sizes.dim, classifier=SimpleNamespace(out_features=sizes.classes))
    inputs.aux_head = make_aux(strategy, stand_in, seed, PAPER, inputs.device)
    return inputs


def tensor_mib(inputs: PoolInputs) -> float:
    tensors = (inputs.embeddings, inputs.labeled_embeddings, inputs.probs)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None) / 2**20


def selection_child(method: str, n: int, sizes: Sizes) -> dict[str, float]:
    """Run in a fresh process: build the inputs, then select; the selection's seconds and its peak memory
    beyond the inputs (VmHWM after it minus VmHWM before it)."""
    if sizes.selection_threads:
        torch.set_num_threads(sizes.selection_threads)
    strategy = create_strategy(method)
    # one selection on a small pool first: one-off library set-up (thread pools, BLAS buffers) is not the
    # selection's memory
    strategy.select(selection_inputs(method, 200, sizes, n_centres=50, seed=1), 10)
    inputs = selection_inputs(method, n, sizes, sizes.centres)
    before = vm_hwm_mib()
    start = time.perf_counter()
    picks = strategy.select(inputs, sizes.picks)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "extra_mib": vm_hwm_mib() - before, "input_mib": tensor_mib(inputs),
            "distinct_picks": int(np.unique(picks).size), "threads": torch.get_num_threads()}


def selection_setting(method: str, sizes: Sizes) -> str:
    if method == "core-set":
        return f"{sizes.centres:,} labeled centres"
    samples = getattr(create_strategy(method), "samples", None)  # BALD's T
    return f"{sizes.classes} classes" + (f", T = {samples}" if samples else "")


def measure_selection(ctx: Context) -> list[Row]:
    """Diversity and MC-dropout selection at pool scale on the CPU: seconds and peak memory beyond the
    inputs, one fresh process per measurement."""
    sizes, rows = ctx.sizes, []
    for method in sizes.selection_methods:
        for n in sizes.pools:
            load_before = load_average()
            result = in_fresh_process(selection_child, method, n, sizes)
            rows.append(Row("selection", f"{method} picks {sizes.picks:,} of {n:,} x {sizes.dim}-d "
                            f"({selection_setting(method, sizes)})",
                            f"{result['seconds']:.1f} s, +{result['extra_mib']:.0f} MiB peak",
                            f"inputs {result['input_mib']:.0f} MiB",
                            note=f"{result['threads']} thread(s), {result['distinct_picks']} distinct picks; "
                            "memory: VmHWM beyond the inputs, fresh process",
                            details={"method": method, "pool": n, **result}, load_before=load_before,
                            load_after=load_average()))
    return rows


# ---------------------------------------------------------------------------------------------- scoring


def measure_scoring(ctx: Context) -> list[Row]:
    """Scoring throughput: learning loss (Trainer.infer with its aux head) against entropy (none), through
    gather_inputs + select as the loop runs them, alternating over equal chunks of the candidates."""
    sizes, device = ctx.sizes, ctx.device
    protocol = paper_protocol(sizes)
    trainer = Trainer(DeviceData.from_images(with_test(ctx.images, PAPER.batch_size), device), protocol, device)
    model = harness_model(ctx)
    chunk = sizes.score_subset // sizes.score_pairs
    chunks = torch.arange(chunk * sizes.score_pairs, device=device).view(sizes.score_pairs, chunk)
    no_labels = torch.arange(0, device=device)

    def score(name: str, cand: torch.Tensor) -> float:
        strategy = create_strategy(name)
        aux = make_aux(strategy, model, 0, protocol, device)

        def run() -> None:
            inputs = gather_inputs(strategy, trainer, model, aux, cand, no_labels, np.random.default_rng(0))
            strategy.select(inputs, max(1, cand.numel() // 10))

        return timed(run, device)

    # both variants score chunk 0, then chunk 1, ...: equal work in each pair
    next_ll, next_entropy = iter(chunks), iter(chunks)
    warm = chunks[0][:PAPER.batch_size]
    comparison = alternate(lambda: score("learning-loss", next(next_ll)), lambda: score("entropy", next(next_entropy)),
                           sizes.score_pairs, chunk, "img", warm_harness=lambda: score("learning-loss", warm),
                           warm_baseline=lambda: score("entropy", warm))
    return [compared("scoring", f"scoring {chunk * sizes.score_pairs:,} images ({sizes.model}): learning-loss "
                     "(aux head) vs entropy", comparison, None,
                     f"{sizes.score_pairs} alternating chunks, eval batch {protocol.eval_batch_size}; "
                     f"data {ctx.images.name}")]


# ---------------------------------------------------------------------------------------------- scheduling


def scheduled_run(jobs: int, parent: Path, sizes: Sizes) -> float:
    """Wall seconds of run_benchmark on the quick preset (random and entropy x 2 seeds) with `jobs` CPU
    workers, into a fresh folder."""
    config = build_config("quick", ["random", "entropy"], seeds=2, devices="cpu",
                          protocol={"epochs": sizes.schedule_epochs, "cycles": sizes.schedule_cycles},
                          out=Path(tempfile.mkdtemp(prefix=f"jobs{jobs}-", dir=parent)))
    with contextlib.redirect_stdout(io.StringIO()):  # its description and progress lines, not the table's
        start = time.perf_counter()
        result = run_benchmark(config, RunOptions(jobs=jobs))
        seconds = time.perf_counter() - start
    if result.failed:
        raise RuntimeError(f"--jobs {jobs}: jobs failed: {', '.join(result.failed)} (see {result.folder})")
    return seconds


def measure_scheduling(ctx: Context) -> list[Row]:
    """Jobs per second with 2 CPU workers against 1: 4 jobs, each through run_benchmark as a user runs it."""
    sizes = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="perf-sched-") as tmp:
        # --jobs 2 starts fresh worker processes every run, as a user's run does; the one warm-up run (jobs 1)
        # pays this process's one-off imports (the report's plotting) before anything is timed
        comparison = alternate(lambda: scheduled_run(2, Path(tmp), sizes), lambda: scheduled_run(1, Path(tmp), sizes),
                               sizes.schedule_pairs, 4, "jobs", warm_harness=lambda: None,
                               warm_baseline=lambda: scheduled_run(1, Path(tmp), sizes))
    return [compared("scheduling", "run_benchmark quick preset, 4 jobs: --jobs 2 vs --jobs 1", comparison, 1.5,
                     f"epochs {sizes.schedule_epochs}, cycles {sizes.schedule_cycles}")]


# ---------------------------------------------------------------------------------------------- fixed costs


FIXED_SNIPPETS = {  # what a command pays before and around its first training step, each in a fresh interpreter
    "import bench.cli (every command)": "import bench.cli",
    "run_bench.py --help": "import sys; sys.argv = ['run_bench.py', '--help']; import runpy; "
                           "runpy.run_path('run_bench.py', run_name='__main__')",
    "import bench.report.layout (a report's stack)": "import bench.report.layout",
}


def python_seconds(code: str) -> float:
    """Wall seconds of a fresh interpreter running `code` from the repository root."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True)
    return time.perf_counter() - start


def worker_start_seconds(workers: int) -> float:
    """A loky pool of `workers` CPU workers until each has imported the loop (torch, the strategies) once."""
    from bench.runner.scheduler import LokyPool

    start = time.perf_counter()
    pool = LokyPool(["cpu"] * workers, threads=1)
    try:
        for future in [pool.submit(pool_order, seed, 0, 10) for seed in range(workers)]:
            future.result()
        return time.perf_counter() - start
    finally:
        pool.close()


def synthetic_results(folder: Path, strategies: int = 4, seeds: int = 3, cycles: int = 6) -> None:
    """A cycles.parquet of the quick preset's shape, for timing the report."""
    rng = np.random.default_rng(0)
    rows = [{"run": "perf", "dataset": "digits", "model": "cnn", "strategy": f"s{k}", "seed": seed, "cycle": c,
             "n_labeled": 30.0 * (c + 1), "test_acc": float(min(1.0, 0.6 + 0.06 * c + rng.normal(0, 0.01)))}
            for k in range(strategies) for seed in range(seeds) for c in range(cycles)]
    import pandas as pd

    pd.DataFrame(rows).assign(strategy=lambda d: d["strategy"].replace({"s0": "random"})).to_parquet(
        folder / "cycles.parquet", index=False)


def measure_fixed(ctx: Context) -> list[Row]:
    """The fixed costs of a run, beside its training: imports (fresh interpreters, median of 3), starting two
    CPU workers, loading the default dataset, writing a report of 4 strategies x 3 seeds x 6 cycles."""
    rows = []
    for what, code in FIXED_SNIPPETS.items():
        seconds = statistics.median(python_seconds(code) for _ in range(3))
        rows.append(Row("fixed", what, f"{seconds:.2f} s", "-", note="fresh interpreter, median of 3",
                        details={"seconds": seconds}))
    seconds = worker_start_seconds(2)
    rows.append(Row("fixed", "start 2 CPU workers (loky) until each imported the loop", f"{seconds:.2f} s", "-",
                    note="once per run", details={"seconds": seconds}))
    start = time.perf_counter()
    load_dataset("digits")
    seconds = time.perf_counter() - start
    rows.append(Row("fixed", "load the digits dataset (in a worker, once per run)", f"{seconds:.2f} s", "-",
                    details={"seconds": seconds}))
    from bench.report.layout import write_report

    with tempfile.TemporaryDirectory(prefix="perf-report-") as tmp:
        synthetic_results(Path(tmp))
        start = time.perf_counter()
        write_report(Path(tmp))
        seconds = time.perf_counter() - start
    rows.append(Row("fixed", "write the report (4 strategies x 3 seeds x 6 cycles), imports done", f"{seconds:.2f} s",
                    "-", note="tables, plots, statistics", details={"seconds": seconds}))
    return rows


# ---------------------------------------------------------------------------------------------- compilation


def compile_child(model: str, labeled: list[int], epochs: int, compiled: bool, device: str, threads: int) -> dict:
    """In a fresh process with an empty inductor cache (so the compilation is paid, as a run's first job pays
    it): the cycles' training + evaluation seconds on random CIFAR-shaped images (digits for the cnn)."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    torch.set_num_threads(threads)
    data = load_dataset("digits") if model == "cnn" else cifar_images(None)
    protocol = dataclasses.replace(preset_protocol("quick"), model=model, epochs=epochs)
    dev = torch.device(device)
    trainer = Trainer(DeviceData.from_images(data, dev), protocol, dev, compile=compiled)
    def cycle(n: int) -> None:
        net = create_model(model, data.channels, data.n_classes, 0).to(dev, memory_format=torch.channels_last)
        trainer.fit(net, torch.arange(n, device=dev), torch.Generator(device=dev).manual_seed(0))
        trainer.evaluate(net)

    return {"cycle_seconds": [timed(lambda n=n: cycle(n), dev) for n in labeled]}


COMPILE_CASES = {  # model -> (labeled per cycle, epochs): a job's cycles as its preset runs them, shortened
    "cnn": ([30, 60, 90], 200),  # the quick preset's first three cycles
    "resnet18": ([128, 256], 2),
}


def measure_compile(ctx: Context) -> list[Row]:
    """torch.compile on and off for a job's first cycles, compilation included (a fresh process and an empty
    cache each), one thread as each of two CPU workers gets. The verdict --compile's default follows."""
    rows = []
    cases = {"cnn": ([30, 60], 20)} if ctx.sizes.model == "cnn" else COMPILE_CASES  # tiny: seconds, not meaning
    for model, (labeled, epochs) in cases.items():
        load_before = load_average()
        off = in_fresh_process(compile_child, model, labeled, epochs, False, str(ctx.device), 1)["cycle_seconds"]
        on = in_fresh_process(compile_child, model, labeled, epochs, True, str(ctx.device), 1)["cycle_seconds"]
        rows.append(Row("compile", f"{model}: {len(labeled)} cycles (labels {labeled}, {epochs} epochs), "
                        "--compile vs not, compilation included", f"{sum(on):.1f} s", f"{sum(off):.1f} s",
                        sum(off) / sum(on), sum(off) / sum(on), 1.0,
                        note="per cycle on: " + ", ".join(f"{v:.1f}" for v in on) + " s; off: "
                        + ", ".join(f"{v:.1f}" for v in off) + " s",
                        details={"on": on, "off": off, "labeled": labeled, "epochs": epochs},
                        load_before=load_before, load_after=load_average()))
    return rows


# ---------------------------------------------------------------------------------------------- packing


PACKING = {  # size -> (jobs per device, batch, labeled images, epochs): whole batches, seconds of training per job
    "gpu": ((1, 2, 4), PAPER.batch_size, 10_240, 5),
    "tiny": ((1, 2), 32, 64, 1),
}


def measure_packing(ctx: Context) -> list[Row]:
    """ResNet-18 training at the paper protocol's batch with 1, 2 and 4 jobs per device, eager, then compiled
    where torch.compile works on a GPU (perf.packing: one cold compilation, the other jobs from its cache):
    aggregate and per-job images/s, peak reserved memory per job, and the paper comparison's projected wall time
    (`--preset paper --strategies ll entropy core-set random --seeds 5`, 20 jobs) at the best packing."""
    size = "tiny" if ctx.sizes.model == "cnn" else "gpu"
    jobs, batch, labeled, epochs = PACKING[size]
    compile_too = ctx.device.type == "cuda" and compile_works(ctx.device) is None
    rows, best = [], None
    for compiled in (False, True) if compile_too else (False,):
        found: dict[Any, Any] = {}
        load_before = load_average()
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            packing.measure_packing(str(ctx.device), ctx.sizes.model, batch, labeled, epochs, jobs, compiled, cache,
                                    found.__setitem__)
        for k in jobs:
            r = found[k]
            rows.append(Row("packing", f"{ctx.sizes.model} x{k} jobs on {ctx.device}"
                            + (", compiled" if compiled else ""), f"{r['aggregate_img_s']:,.0f} img/s",
                            "-", note=f"per job {r['per_job_img_s']:,.0f} img/s, peak reserved "
                            f"{r['peak_reserved_mib']:,.0f} MiB per job, {r['recompiles']} recompiles timed",
                            details={"k": k, "compile": compiled, **r, "first_warmup_seconds": found["first warm-up"]},
                            load_before=load_before, load_after=load_average()))
            if best is None or r["aggregate_img_s"] > best[0]["aggregate_img_s"]:
                best = (r, k, compiled)
    found, k, compiled = best
    images = paper_grid_images()
    jobs = 20
    hours = jobs * images["train"] / found["aggregate_img_s"] / 3600
    rows.append(Row("packing", f"projected: paper preset, ll entropy core-set random x 5 seeds ({jobs} jobs), "
                    f"training only, at x{k}{' compiled' if compiled else ''}", f"{hours:,.1f} h", "-",
                    note=f"{images['train']:,} training images per job; scoring and testing add "
                    f"{images['score'] + images['test']:,} inference images per job",
                    details={"hours": hours, "k": k, "compile": compiled}))
    return rows


# ---------------------------------------------------------------------------------------------- projection


def projection(rows: list[Row]) -> dict[str, float] | None:
    """The paper grid's wall time at the cycle measurement's harness throughputs (None without that row)."""
    cycle = next((r for r in rows if r.name == "cycle" and "rates" in r.details), None)
    if cycle is None:
        return None
    rates = cycle.details["rates"]["harness"]
    return project_paper_grid(rates["train_img_s"], rates["score_img_s"])


# ---------------------------------------------------------------------------------------------- driver


MEASUREMENTS: dict[str, Callable[[Context], list[Row]]] = {
    "setup": measure_setup,
    "trainer": measure_trainer,
    "pipeline": measure_pipeline,
    "cycle": measure_cycle,
    "kernels": measure_kernels,
    "selection": measure_selection,
    "scoring": measure_scoring,
    "scheduling": measure_scheduling,
    "fixed": measure_fixed,
    "compile": measure_compile,
    "packing": measure_packing,
}


def machine(device: torch.device) -> dict[str, Any]:
    return {"cpu": provenance.cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": str(device),
            "device_name": provenance.device_name(str(device)), "cpu_bf16": cpu_has_bf16(),
            "precision_auto": precision_name(resolve_precision("auto", device)),
            "git_commit": provenance.git_commit(ROOT)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_const", dest="size", const="quick", help="a short pass")
    parser.add_argument("--size", choices=list(SIZES), help="full (default on cpu), quick, tiny (tests: the "
                        "numbers mean nothing), gpu (default on cuda)")
    parser.add_argument("--only", nargs="+", choices=list(MEASUREMENTS), metavar="NAME",
                        help=f"run only these measurements ({', '.join(MEASUREMENTS)})")
    parser.add_argument("--cifar", type=Path, metavar="PATH", help="npz CIFAR slice for the CIFAR-shaped rows "
                        "(default: random pixels of its shape; the figures depend on the shape only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf" / "perf.json",
                        help="the JSON to write (default results/perf/perf.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    size = args.size or ("gpu" if device.type == "cuda" else "full")
    try:
        images = cifar_images(args.cifar)
    except UserError as err:
        print(f"error: --cifar: {err}", file=sys.stderr)
        return 2
    start, info = time.perf_counter(), machine(device)
    rows = run_measurements(MEASUREMENTS, args.only or list(MEASUREMENTS), Context(device, SIZES[size], images))
    wall = time.perf_counter() - start
    print_table(rows, f"perf.perf ({size}) on {info['device_name']}, torch {info['torch']}, {wall:.0f} s. "
                "harness, baseline: fastest repetition; ratio: median over alternating pairs of "
                "time(baseline) / time(harness); best: fastest baseline / fastest harness")
    grid = projection(rows)
    if grid is not None:
        print(f"paper grid ({grid['jobs']} jobs, one at a time on {device}): {grid['hours_total']:,.1f} h "
              f"({grid['hours_per_job']:,.2f} h per job)")
    write_results(args.out, rows, machine=info, size=size, sizes=dataclasses.asdict(SIZES[size]), data=images.name,
                  wall_seconds=wall, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  paper_grid_projection=grid)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
