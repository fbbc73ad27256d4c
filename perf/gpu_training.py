"""Steps e to h of perf/gpu_check.sh: what training costs on the device.

e. the trainer's images/s with deterministic mode on and off; f. jobs sharing the device (perf.packing);
g. the paper grid projected from images/s at the check's batch (the paper's 128 on a GPU); h. kernel launches per
training step (torch.profiler: CUDA kernel events on a GPU, operator events on a CPU) and images/s with two
launch-bound levers tried here only, not in the product: augmentation drawn once per epoch for the whole labeled
set, and torch.optim.SGD(fused=True) in place of the trainer's step.

Every figure is the fastest of `rounds` repetitions after a warm-up, the variants of a step alternating.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import DeviceType, ProfilerActivity, profile

from bench.core import seeding
from bench.core.config import preset_protocol
from bench.data.datasets import load_dataset
from bench.data.images import ImageData
from bench.models.backbones import Backbone, create_model
from bench.training.optim import build_optimizer, set_learning_rate
from bench.training.trainer import DeviceData, Trainer, compile_works, crop_flip
from perf.check_log import Setting, StepLog
from perf.packing import measure_packing, random_cifar, use_deterministic
from perf.projection import paper_grid_images, precision_name, project_paper_grid
from perf.timing import timed

LEVER_PAYS = 1.03  # a lever is worth keeping from 3% more images/s: below that, the noise of a shared GPU


def check_data(s: Setting) -> ImageData:
    if s.cifar is not None:
        return load_dataset(f"npz:{s.cifar}")
    return random_cifar(max(s.sizes.train_images, s.sizes.infer_images, 2 * s.sizes.batch), 2 * s.sizes.batch)


def training_setup(s: Setting) -> tuple[Trainer, Backbone, torch.Tensor]:
    """The paper protocol's trainer at the check's batch and epochs, the model on the device (channels_last), and
    the labeled indices of one timed fit."""
    data = check_data(s)
    protocol = dataclasses.replace(preset_protocol("paper"), model=s.sizes.model, batch_size=s.sizes.batch,
                                   epochs=s.sizes.train_epochs)
    model = create_model(s.sizes.model, data.channels, data.n_classes, 0)
    return (Trainer(DeviceData.from_images(data, s.device), protocol, s.device),
            model.to(s.device, memory_format=torch.channels_last), torch.arange(s.sizes.train_images, device=s.device))


def fastest(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each variant once unrecorded (warm-up), then all in turn `rounds` times: each one's fastest seconds."""
    for run in variants.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            seconds[name].append(run())
    return {name: min(values) for name, values in seconds.items()}


def deterministic_switch(log: StepLog) -> Callable[[bool], bool]:
    """perf.packing.use_deterministic, after a line where bench.core.seeding.use_deterministic is missing."""
    if getattr(seeding, "use_deterministic", None) is None:
        log.not_available("bench.core.seeding.use_deterministic", "measured with torch's switches instead: cuDNN "
                          "deterministic, torch.use_deterministic_algorithms")
    return use_deterministic


# ---------------------------------------------------------------------------------------------- e. determinism


def step_determinism(log: StepLog, s: Setting) -> None:
    trainer, model, labeled = training_setup(s)
    switch = deterministic_switch(log)
    images = s.sizes.train_images * s.sizes.train_epochs

    def fit(enabled: bool) -> Callable[[], float]:
        def run() -> float:
            switch(enabled)
            return timed(lambda: trainer.fit(model, labeled, torch.Generator(device=s.device).manual_seed(0)),
                         s.device)
        return run

    best = fastest({"on": fit(True), "off": fit(False)}, s.sizes.rounds)
    switch(True)  # the harness's default
    rate = {mode: images / seconds for mode, seconds in best.items()}
    log.line(f"Trainer.fit, {s.sizes.model}, batch {s.sizes.batch}, {precision_name(trainer.dtype)}: deterministic "
             f"{rate['on']:,.0f} img/s, nondeterministic {rate['off']:,.0f} img/s", img_s=rate)
    log.headline(f"determinism costs {100 * (1 - rate['on'] / rate['off']):.1f}% of images/s "
                 f"({rate['on']:,.0f} vs {rate['off']:,.0f} img/s; negative: it ran faster)")


# ---------------------------------------------------------------------------------------------- f. packing


def step_packing_eager(log: StepLog, s: Setting) -> int | None:
    return step_packing(log, s, compiled=False)


def step_packing_compiled(log: StepLog, s: Setting) -> int | None:
    return step_packing(log, s, compiled=True)


def step_packing(log: StepLog, s: Setting, compiled: bool) -> int | None:
    if compiled:
        why = compile_works(s.device)
        if s.device.type == "cpu" and why is None:
            why = "a cold compilation on the CPU does not fit a tiny run's time"
        if why is not None:
            return log.skip(f"torch.compile: {why}")
    cache = s.work / "inductor-cache"  # one cache for the step's workers: the first compiles, the rest reuse it
    cache.mkdir(parents=True, exist_ok=True)
    what = "compiled" if compiled else "eager"
    rounds: dict[int, dict[str, float]] = {}
    log.record["data"]["rounds"] = rounds

    def report(key: str | int, value: Any) -> None:
        if key == "first warm-up":
            log.line(f"warm-up ({what}), the first job alone: {value:.1f} s", first_warmup_seconds=value)
        elif key == "other warm-ups":
            if value:
                log.line(f"warm-up ({what}), the other jobs at once: {max(value):.1f} s at most"
                         + (" (from the first one's inductor cache)" if compiled else ""), other_warmup_seconds=value)
        else:
            rounds[key] = value
            memory = (f"peak reserved {value['peak_reserved_mib']:,.0f} MiB per job" if s.device.type == "cuda"
                      else "peak memory: CUDA only")
            log.line(f"{s.sizes.model} x{key} jobs on {s.device} ({what}): {value['aggregate_img_s']:,.0f} img/s in "
                     f"all, {value['per_job_img_s']:,.0f} per job, {memory}, recompiles while timed: "
                     f"{value['recompiles']}")

    measure_packing(str(s.device), s.sizes.model, s.sizes.batch, s.sizes.packing_images, s.sizes.packing_epochs,
                    s.sizes.packing_jobs, compiled, str(cache), report)
    best = max(rounds, key=lambda k: rounds[k]["aggregate_img_s"])
    log.headline(f"best: x{best} {what}, {rounds[best]['aggregate_img_s']:,.0f} img/s in all")
    return None


# ---------------------------------------------------------------------------------------------- g. the paper grid


def step_grid(log: StepLog, s: Setting) -> None:
    trainer, model, labeled = training_setup(s)
    deterministic_switch(log)(True)
    candidates = torch.arange(s.sizes.infer_images, device=s.device)
    best = fastest({"train": lambda: timed(lambda: trainer.fit(model, labeled, torch.Generator(
        device=s.device).manual_seed(0)), s.device),
        "infer": lambda: timed(lambda: trainer.infer(model, candidates), s.device)}, s.sizes.rounds)
    train = s.sizes.train_images * s.sizes.train_epochs / best["train"]
    infer = s.sizes.infer_images / best["infer"]
    grid = project_paper_grid(train, infer)
    log.line(f"measured: training {train:,.0f} img/s at batch {s.sizes.batch} ({s.sizes.model}, "
             f"{precision_name(trainer.dtype)}, deterministic), inference {infer:,.0f} img/s", train_img_s=train,
             infer_img_s=infer, grid=grid)
    if s.sizes.batch != 128:
        log.line("(not the paper's batch of 128: tiny sizes, the projection means nothing)")
    log.headline(f"paper grid ({grid['jobs']} jobs, one at a time): {grid['hours_total']:,.1f} h "
                 f"({grid['hours_per_job']:,.2f} h per job)")
    steps = (("eager", "f-packing"), ("compiled", "f-packing-compiled"))
    found = [(r["aggregate_img_s"], k, what) for what, name in steps if (s.out / f"{name}.json").exists()
             for k, r in json.loads((s.out / f"{name}.json").read_text())["data"].get("rounds", {}).items()]
    if not found:
        log.not_available("projection at the best packing", "no packing rounds from step f")
        return
    aggregate, k, what = max(found)
    hours = grid["jobs"] * paper_grid_images()["train"] / aggregate / 3600
    log.line(f"training alone at the best packing, x{k} jobs per device {what} ({aggregate:,.0f} img/s in all): "
             f"{hours:,.1f} h", packed_training_hours=hours)


# ---------------------------------------------------------------------------------------------- h. launches


def lever_fit(trainer: Trainer, model: Backbone, labeled: torch.Tensor, generator: torch.Generator,
              epoch_augment: bool, fused: bool, max_steps: int | None = None) -> None:
    """Trainer.fit's steps (gather, crop and flip, normalise, forward in autocast, backward, SGD step, the
    device-side loss sum) with the levers as asked: augmentation drawn for the whole labeled set once per epoch,
    torch's fused SGD in place of the trainer's."""
    p, data = trainer.protocol, trainer.data
    model.train()
    params = list(model.parameters())
    optimizer = (torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, fused=True)
                 if fused else build_optimizer(params, p))
    n, steps = labeled.numel(), 0
    for epoch in range(p.epochs):
        set_learning_rate(optimizer, p, epoch)
        order = labeled[torch.randperm(n, generator=generator, device=trainer.device)]
        augmented = crop_flip(data.x_train[order], data.pad, data.flip, generator) if epoch_augment else None
        epoch_loss = torch.zeros((), device=trainer.device)
        for first in range(0, n, p.batch_size):
            idx = order[first:first + p.batch_size]
            x = (augmented[first:first + p.batch_size] if augmented is not None
                 else crop_flip(data.x_train[idx], data.pad, data.flip, generator))
            with trainer.autocast():
                loss = F.cross_entropy(model(trainer.prepare(x)).logits.float(), data.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.detach() * idx.numel()
            steps += 1
            if max_steps is not None and steps == max_steps:
                return


def events_per_step(run: Callable[[], Any], steps: int, device: torch.device) -> float:
    """CUDA kernel events (on a GPU) or operator events, nested ones included (on a CPU) per training step."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if device.type == "cuda":
        count = sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)
    else:
        count = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    return count / steps


LEVERS = {"loop, as Trainer.fit": (False, False), "per-epoch augmentation": (True, False),
          "fused SGD": (False, True), "both": (True, True)}


def step_launches(log: StepLog, s: Setting) -> None:
    trainer, model, labeled = training_setup(s)
    deterministic_switch(log)(True)
    unit = "CUDA kernels" if s.device.type == "cuda" else "operator events"
    steps = s.sizes.profile_steps
    levers = dict(LEVERS)
    try:
        torch.optim.SGD([torch.zeros(1, device=s.device, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, ValueError) as err:
        log.not_available("torch.optim.SGD(fused=True)", f"{type(err).__name__}: {str(err)[:100]}")
        levers = {k: v for k, v in levers.items() if not v[1]}

    def fit(epoch_augment: bool, fused: bool, max_steps: int | None = None) -> Callable[[], None]:
        generator = torch.Generator(device=s.device).manual_seed(0)
        return lambda: lever_fit(trainer, model, labeled, generator, epoch_augment, fused, max_steps)

    launches = {}
    for name, (epoch_augment, fused) in levers.items():
        fit(epoch_augment, fused, steps)()  # warm-up: cuDNN's choices, the allocator, the fused kernels' set-up
        launches[name] = events_per_step(fit(epoch_augment, fused, steps), steps, s.device)
    def timer(run: Callable[[], Any]) -> Callable[[], float]:
        return lambda: timed(run, s.device)

    generator = torch.Generator(device=s.device).manual_seed(0)
    variants = {name: timer(fit(*lever)) for name, lever in levers.items()}
    variants["Trainer.fit"] = timer(lambda: trainer.fit(model, labeled, generator))
    best = fastest(variants, s.sizes.rounds)
    images = s.sizes.train_images * s.sizes.train_epochs
    rate = {name: images / seconds for name, seconds in best.items()}
    log.line(f"Trainer.fit ({s.sizes.model}, batch {s.sizes.batch}): {rate['Trainer.fit']:,.0f} img/s",
             img_s=rate, launches_per_step=launches)
    base = "loop, as Trainer.fit"
    for name in levers:
        log.line(f"{name}: {launches[name]:,.0f} {unit} per step, {rate[name]:,.0f} img/s "
                 f"({rate[name] / rate[base]:.2f}x the loop)")
    paying = [name for name in levers if name != base and rate[name] / rate[base] >= LEVER_PAYS]
    log.headline(f"{launches[base]:,.0f} {unit} per step; pays (>= {LEVER_PAYS:.2f}x): "
                 + (", ".join(paying) if paying else "neither lever"))
