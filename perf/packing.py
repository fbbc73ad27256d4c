"""K training jobs sharing one device, each in its own process as --jobs-per-device K runs them.

The worker processes start once, for every K measured: worker 0 warms up first, alone, and where the model is
compiled that warm-up fills the inductor cache (TORCHINDUCTOR_CACHE_DIR) with the one cold compilation; the other
workers then warm up from that cache. Warm-ups train on whole batches of the timed batch size, and the timed epochs
hold whole batches only, so no timed step meets a new shape (a compiled model would recompile for it); each timed
round counts the graphs dynamo compiled during it, which must be 0. Round K sends "go" to the first K workers at
once: aggregate images/s is their images over the slowest one's seconds.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from bench.core import seeding
from bench.core.config import preset_protocol
from bench.data.images import CIFAR_MEAN, CIFAR_STD, ImageData, from_arrays
from bench.models.backbones import create_model
from bench.training.trainer import DeviceData, Trainer


def random_cifar(n_train: int = 10_000, n_test: int = 2000) -> ImageData:
    """Random uint8 images of CIFAR-10's shape, augmentation and normalisation: throughput depends on the shape only."""
    rng = np.random.default_rng(0)
    return from_arrays("random pixels", rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8),
                       np.arange(n_train) % 10, rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8),
                       np.arange(n_test) % 10, mean=CIFAR_MEAN, std=CIFAR_STD, pad=4, flip=True)


def use_deterministic(enabled: bool) -> bool:
    """bench.core.seeding.use_deterministic where it exists (True); else torch's own switches (False)."""
    use = getattr(seeding, "use_deterministic", None)
    if use is not None:
        use(enabled)
        return True
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)
    return False


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(conn: Connection, device: str, model: str, batch: int, labeled: int, epochs: int, compiled: bool,
           cache_dir: str, threads: int) -> None:
    """One job: warm up, say so, then train `epochs` epochs of `labeled` images at each "go" until told to stop."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    torch.set_num_threads(threads)
    use_deterministic(True)  # as a run's jobs train by default
    dev = torch.device(device)
    data = DeviceData.from_images(random_cifar(max(labeled, 2 * batch)), dev)
    protocol = dataclasses.replace(preset_protocol("paper"), model=model, batch_size=batch, epochs=1)
    net = create_model(model, 3, 10, 0).to(dev, memory_format=torch.channels_last)
    idx = torch.arange(labeled, device=dev)
    start = time.perf_counter()
    Trainer(data, protocol, dev, compile=compiled).fit(net, torch.arange(2 * batch, device=dev),
                                                       torch.Generator(device=dev).manual_seed(0))
    sync(dev)
    conn.send({"warmup_seconds": time.perf_counter() - start, "pid": os.getpid()})
    trainer = Trainer(data, dataclasses.replace(protocol, epochs=epochs), dev, compile=compiled)
    graphs_now = compiled_graphs if compiled else lambda: 0  # counting imports dynamo: only where it runs
    while conn.recv() == "go":
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        graphs = graphs_now()
        sync(dev)
        start = time.perf_counter()
        trainer.fit(net, idx, torch.Generator(device=dev).manual_seed(1))
        sync(dev)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_reserved(dev) / 2**20 if dev.type == "cuda" else float("nan")
        conn.send({"seconds": seconds, "images": labeled * epochs, "peak_reserved_mib": peak,
                   "recompiles": graphs_now() - graphs})
    conn.close()


def start_worker(ctx: Any, args: tuple) -> tuple[Any, Connection]:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=worker, args=(child, *args), daemon=True)
    process.start()
    child.close()
    return process, parent


def measure_packing(device: str, model: str, batch: int, labeled: int, epochs: int, jobs: tuple[int, ...],
                    compiled: bool, cache_dir: str, report: Callable[[str, Any], None]) -> None:
    """Warm-up seconds of each worker (the first one's: the cold compilation where compiled) and, per K in
    `jobs`, aggregate and per-job images/s, the peak reserved memory of a job and the recompiles while timed.
    Each figure goes to report(what, value) as soon as it is measured: report("first warm-up", seconds),
    report("other warm-ups", [seconds]), report(K, round)."""
    if labeled % batch:
        raise ValueError(f"labeled images ({labeled}) must be whole batches of {batch}: a last batch of another "
                         "shape would be timed with its recompilation")
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // max(jobs))  # the CPU cores split between the jobs, as a run splits them
    args = (device, model, batch, labeled, epochs, compiled, cache_dir, threads)
    workers = [start_worker(ctx, args)]
    report("first warm-up", workers[0][1].recv()["warmup_seconds"])  # alone: its cold compilation fills the cache
    workers += [start_worker(ctx, args) for _ in range(max(jobs) - 1)]
    report("other warm-ups", [conn.recv()["warmup_seconds"] for _, conn in workers[1:]])
    try:
        for k in jobs:
            for _, conn in workers[:k]:
                conn.send("go")
            results = [conn.recv() for _, conn in workers[:k]]
            wall = max(r["seconds"] for r in results)
            report(k, {"aggregate_img_s": sum(r["images"] for r in results) / wall,
                         "per_job_img_s": statistics.mean(r["images"] / r["seconds"] for r in results),
                         "peak_reserved_mib": max(r["peak_reserved_mib"] for r in results),
                         "recompiles": sum(r["recompiles"] for r in results)})
    finally:
        for process, conn in workers:
            try:
                conn.send("stop")
            except OSError:  # it died: its error reached the caller through recv
                pass
            process.join(timeout=30)
