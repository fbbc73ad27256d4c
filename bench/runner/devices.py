"""Which devices a run uses (`--devices`) and how many jobs share each CUDA device (`--jobs-per-device auto`).

A job of the presets trains at batch 128 on at most a few thousand labels: 8 to 80 optimizer steps per epoch,
each a few milliseconds of GPU work, so one job leaves a large GPU idle between kernel launches. Running several
jobs on a device fills those gaps. The rule packs as many as
  - memory allows: each job's peak (one training step as the jobs run it, measured once on the device: the
    trainer's step at the run's precision, channels_last, with the largest auxiliary head among the run's
    strategies, counted as the memory the caching allocator reserves; plus the dataset the job keeps there,
    counted to the byte) times the count stays under MEMORY_SHARE of the device's free memory;
  - the CPU can feed: each job's process needs a core of its own to launch kernels;
  - and at most MAX_JOBS_PER_DEVICE: without NVIDIA's MPS, processes on one GPU take turns in time slices, and
    past about four launch-bound jobs the turns stop adding throughput while each job's memory still counts.
The driver frees what it measured with (model, tensors, the allocator's cache) before the workers start.

`--devices auto` is the first CUDA device when torch can use one, else the CPU, with a one-line warning where a
CUDA build of torch sees NVIDIA's driver but cannot use it (a driver older than the build, most often).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.core.registry import unknown_name
from bench.data.images import ImageData
from bench.models.build import build_model
from bench.training.trainer import DeviceData, Trainer

MEMORY_SHARE = 0.8  # of the free device memory, the rest left for the allocator's fragmentation and other users
MAX_JOBS_PER_DEVICE = 4
CUDA_CONTEXT_MIB = 512  # each process's CUDA context and kernels, which the allocator's statistics do not count


def nvidia_driver_seen() -> bool:
    """NVIDIA's kernel driver is loaded, or its tools are installed (cheap: no CUDA call)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def resolve_devices(text: str) -> list[str]:
    if text == "auto":
        if torch.cuda.is_available():
            return ["cuda:0"]
        if torch.version.cuda is not None and nvidia_driver_seen():
            print(f"warning   --devices auto: this torch is built for CUDA {torch.version.cuda} and an NVIDIA "
                  "driver seems present, but CUDA is unavailable (a driver older than the build?); running on the "
                  "CPU", file=sys.stderr)
        return ["cpu"]
    devices = [("cuda:0" if d.strip() == "cuda" else d.strip()) for d in text.split(",") if d.strip()]
    if not devices:
        raise UserError(f"--devices {text!r} names no device: use auto, cpu or cuda:N[,cuda:M...].")
    for d in devices:
        if d == "cpu":
            continue
        if not d.startswith("cuda:") or not d[5:].isdigit():
            raise unknown_name("device", d, ["auto", "cpu", "cuda:N[,cuda:M...]"])
        if not torch.cuda.is_available() or int(d[5:]) >= torch.cuda.device_count():
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise UserError(f"Device {d} is not available ({have} CUDA devices here): use --devices cpu or auto.")
    return devices


@dataclass(frozen=True)
class Packing:
    jobs_per_device: int
    job_mib: float  # measured peak of one job (0 where not measured)
    free_mib: float  # free device memory when measured
    limit: str  # what bounded the count: memory, cores or the cap


def pack(job_mib: float, free_mib: float, cores: int, devices: int) -> Packing:
    """The rule, on measured numbers."""
    by_memory = int(MEMORY_SHARE * free_mib // job_mib) if job_mib > 0 else MAX_JOBS_PER_DEVICE
    by_cores = max(1, cores // max(1, devices))
    bounds = {"memory": by_memory, "cores": by_cores, "cap": MAX_JOBS_PER_DEVICE}
    limit = min(bounds, key=lambda k: (bounds[k], list(bounds).index(k)))
    return Packing(max(1, bounds[limit]), job_mib, free_mib, limit)


def job_peak_mib(device: torch.device, protocol: Protocol, data: ImageData, strategies: Sequence[Any] = ()) -> float:
    """Peak device memory of one training step as a job runs it: the shared trainer's fit over one batch of the
    run's images (its precision, its channels_last input, its SGD), the model moved as the loop moves it, with the
    largest auxiliary head among `strategies` (bench.strategies instances). Counted as the allocator reserves it,
    which is what the other jobs cannot have; plus the job's resident dataset and its process's CUDA context."""
    c, h, w = (int(v) for v in data.x_train.shape[1:])
    side = (protocol.image_size, protocol.image_size) if protocol.image_size else (h, w)
    n = min(protocol.batch_size, int(data.x_train.shape[0]))
    batch = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n], x_test=data.x_test[:1],
                                y_test=data.y_test[:1])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_reserved(device)
    model = build_model(protocol.model, c, data.n_classes, 0, side, dict(protocol.model_params))
    heads = [head for head in (s.aux_head(model, protocol) for s in strategies) if head is not None]
    aux = max(heads, key=lambda head: sum(p.numel() for p in head.parameters()), default=None)
    model = model.to(device, memory_format=torch.channels_last)
    trainer = Trainer(DeviceData.from_images(batch, device, protocol.augment), dataclasses.replace(protocol, epochs=1),
                      device)
    trainer.fit(model, torch.arange(n, device=device), torch.Generator(device), None if aux is None else aux.to(device),
                torch.Generator(device))
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_reserved(device) - before
    return peak / 2**20 + device_data_bytes(data, protocol) / 2**20 + CUDA_CONTEXT_MIB


def auto_packing(device: str, protocol: Protocol, data: ImageData, strategies: Sequence[Any], devices: int) -> Packing:
    """Measure one job on `device` (CUDA) and apply the rule. The probe's model and tensors are gone when
    job_peak_mib returns; the allocator's cache of them goes back to the device, for the workers."""
    dev = torch.device(device)
    job = job_peak_mib(dev, protocol, data, strategies)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(dev)
    return pack(job, free / 2**20, os.cpu_count() or 1, devices)


def device_data_bytes(data: ImageData, protocol: Protocol) -> int:
    """The bytes of the dataset a job keeps on its device (bench.training.trainer.DeviceData.from_images): the training
    images uint8, zero-padded once by data.pad pixels on each side when the protocol augments (random crops are
    cut from the padded image); the test images uint8 as stored (evaluation never crops); int64 labels; and the
    per-channel normalisation, scale and shift in float32."""
    n, c, h, w = (int(v) for v in data.x_train.shape)
    pad = data.pad if protocol.augment else 0
    train = n * c * (h + 2 * pad) * (w + 2 * pad)  # [N, C, H + 2 pad, W + 2 pad] uint8
    test = data.x_test.numel()  # [M, C, H, W] uint8
    labels = 8 * (n + int(data.x_test.shape[0]))  # int64
    return train + test + labels + 2 * 4 * c  # scale and shift: [1, C, 1, 1] float32 each


def jobs_per_device(asked: int | str, protocol: Protocol, data: ImageData, devices: list[str],
                    strategies: Sequence[Any] = ()) -> tuple[int, dict[str, Any]]:
    """The jobs sharing each device: `asked`, or for "auto" the rule's count on CUDA (one job on the CPU), with
    what was measured (empty where nothing was). The measure: one training step of the run's model as the jobs
    run it (job_peak_mib; `strategies`: the run's, for their auxiliary heads) on the first device, plus the
    dataset each job keeps there."""
    if asked != "auto":
        return int(asked), {}
    if not devices[0].startswith("cuda"):
        return 1, {}
    if data.x_train.dim() == 2:  # the measure trains an image model's step: vectors get one job a device, said so
        return 1, {"note": "vectors: one job per device (give --jobs-per-device N to share it)"}
    found = auto_packing(devices[0], protocol, data, strategies, len(devices))
    return found.jobs_per_device, dataclasses.asdict(found)
