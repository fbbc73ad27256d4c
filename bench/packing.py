"""How many jobs share one CUDA device (`--jobs-per-device auto`).

A job of the presets trains at batch 128 on at most a few thousand labels: 8 to 80 optimizer steps per epoch,
each a few milliseconds of GPU work, so one job leaves a large GPU idle between kernel launches. Running several
jobs on a device fills those gaps. The rule packs as many as
  - memory allows: each job's peak (one training step of the run's model at its batch size, measured once on
    the device, plus the dataset the job keeps there) times the count stays under MEMORY_SHARE of the device's
    free memory;
  - the CPU can feed: each job's process needs a core of its own to launch kernels;
  - and at most MAX_JOBS_PER_DEVICE: without NVIDIA's MPS, processes on one GPU take turns in time slices, and
    past about four launch-bound jobs the turns stop adding throughput while each job's memory still counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MEMORY_SHARE = 0.8  # of the free device memory, the rest left for the allocator's fragmentation and other users
MAX_JOBS_PER_DEVICE = 4
CUDA_CONTEXT_MIB = 512  # each process's CUDA context and kernels, which the allocator's statistics do not count


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
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
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
