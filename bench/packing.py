"""Which devices a run uses (`--devices`) and how many jobs share each CUDA device (`--jobs-per-device auto`).

A job of the presets trains at batch 128 on at most a few thousand labels: 8 to 80 optimizer steps per epoch,
each a few milliseconds of GPU work, so one job leaves a large GPU idle between kernel launches. Running several
jobs on a device fills those gaps. The rule packs as many as
  - memory allows: each job's peak (one training step of the run's model at its batch size, measured once on
    the device, plus the dataset the job keeps there, counted to the byte) times the count stays under
    MEMORY_SHARE of the device's free memory;
  - the CPU can feed: each job's process needs a core of its own to launch kernels;
  - and at most MAX_JOBS_PER_DEVICE: without NVIDIA's MPS, processes on one GPU take turns in time slices, and
    past about four launch-bound jobs the turns stop adding throughput while each job's memory still counts.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench.config import Protocol
from bench.data import ImageData
from bench.errors import UserError
from bench.registry import unknown_name
from bench.trainer import SGD
from bench.zoo import build_model

MEMORY_SHARE = 0.8  # of the free device memory, the rest left for the allocator's fragmentation and other users
MAX_JOBS_PER_DEVICE = 4
CUDA_CONTEXT_MIB = 512  # each process's CUDA context and kernels, which the allocator's statistics do not count


def resolve_devices(text: str) -> list[str]:
    if text == "auto":
        return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]
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


def job_peak_mib(model: torch.nn.Module, batch: torch.Tensor, n_classes: int, data_mib: float) -> float:
    """Peak device memory of one training step (forward, backward, SGD with momentum) of `model` on `batch`,
    plus the job's resident dataset and its process's CUDA context. The model is moved to the batch's device."""
    device = batch.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    model = model.to(device).train()
    opt = SGD(list(model.parameters()), Protocol())  # the trainer's update: a momentum buffer per parameter
    labels = torch.zeros(batch.shape[0], dtype=torch.long, device=device) % n_classes
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported()):
        loss = F.cross_entropy(model(batch).logits.float(), labels)
    loss.backward()
    opt.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return peak / 2**20 + data_mib + CUDA_CONTEXT_MIB


def auto_packing(device: str, model: torch.nn.Module, batch_shape: tuple[int, ...], n_classes: int,
                 data_mib: float, devices: int) -> Packing:
    """Measure one job on `device` (CUDA) and apply the rule."""
    dev = torch.device(device)
    batch = torch.randn(batch_shape, device=dev).contiguous(memory_format=torch.channels_last)
    job = job_peak_mib(model, batch, n_classes, data_mib)
    free, _ = torch.cuda.mem_get_info(dev)
    return pack(job, free / 2**20, os.cpu_count() or 1, devices)


def device_data_bytes(data: ImageData, protocol: Protocol) -> int:
    """The bytes of the dataset a job keeps on its device (bench.trainer.DeviceData.from_images): the training
    images uint8, zero-padded once by data.pad pixels on each side when the protocol augments (random crops are
    cut from the padded image); the test images uint8 as stored (evaluation never crops); int64 labels; and the
    per-channel normalisation, scale and shift in float32."""
    n, c, h, w = (int(v) for v in data.x_train.shape)
    pad = data.pad if protocol.augment else 0
    train = n * c * (h + 2 * pad) * (w + 2 * pad)  # [N, C, H + 2 pad, W + 2 pad] uint8
    test = data.x_test.numel()  # [M, C, H, W] uint8
    labels = 8 * (n + int(data.x_test.shape[0]))  # int64
    return train + test + labels + 2 * 4 * c  # scale and shift: [1, C, 1, 1] float32 each


def jobs_per_device(asked: int | str, protocol: Protocol, data: ImageData,
                    devices: list[str]) -> tuple[int, dict[str, Any]]:
    """The jobs sharing each device: `asked`, or for "auto" the rule's count on CUDA (one job on the CPU), with
    what was measured (empty where nothing was). The measure: one training step of the run's model at its batch
    size and input size on the first device, plus the dataset each job keeps there."""
    if asked != "auto":
        return int(asked), {}
    if not devices[0].startswith("cuda"):
        return 1, {}
    c, h, w = (int(v) for v in data.x_train.shape[1:])
    side = (protocol.image_size, protocol.image_size) if protocol.image_size else (h, w)
    model = build_model(protocol.model, c, data.n_classes, 0, side)
    found = auto_packing(devices[0], model, (protocol.batch_size, c, *side), data.n_classes,
                         device_data_bytes(data, protocol) / 2**20, len(devices))
    return found.jobs_per_device, dataclasses.asdict(found)
