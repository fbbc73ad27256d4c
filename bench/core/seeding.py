"""Every random stream derives from (seed, purpose), never from global state or job order."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit integer that depends only on the seed and the purpose words (stable across runs)."""
    text = "/".join([str(seed), *map(str, purpose)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def numpy_rng(seed: int, *purpose: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *purpose))


def torch_generator(seed: int, *purpose: object, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *purpose))
    return generator


def seeded_globals(seed: int, *purpose: object, device: torch.device | str = "cpu",
                   ) -> contextlib.AbstractContextManager:
    """Seed torch's CPU generator, the generator of `device` when it is a CUDA device, numpy's and Python's global
    generators from (seed, purpose) for the block, and restore them after it; no other CUDA device's generator is
    touched. Code we do not own draws from them: torchvision's dropout and stochastic depth, a user's model or
    strategy file. Seeded per phase, those draws depend on neither the jobs that ran before in the process nor
    on which other strategies run beside: a dropout model stays paired and reproducible."""
    return globals_seeded_with(derive_seed(seed, *purpose), device)


@contextlib.contextmanager
def globals_seeded_with(value: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """seeded_globals for a seed already derived (a model's initialisation seed)."""
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    # torch.manual_seed would seed every CUDA device's generator (and, before CUDA starts, queue that for its start),
    # where fork_rng restores only the devices listed: the CPU generator and this device's, seeded one by one.
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.random.default_generator.manual_seed(value)
        for index in cuda:  # fork_rng has started CUDA on it: its generator exists
            torch.cuda.default_generators[index].manual_seed(value)
        np.random.seed(value % 2**32)  # the legacy global stream, for code that uses it
        random.seed(value)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


# cuBLAS's matmuls are deterministic with this workspace (NVIDIA's cuBLAS docs, "Results reproducibility").
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def use_deterministic(enabled: bool) -> None:
    """CUDA's deterministic mode, on by default (--nondeterministic turns it off, for speed): cuDNN's deterministic
    convolutions without autotuning, torch's deterministic algorithms (an op that has none raises rather than
    unpairing the seeds), and the cuBLAS workspace that makes its matmuls deterministic. Global settings of this
    process. cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it starts, so the driver sets it before any worker starts
    (they inherit it) and each trainer before its first CUDA kernel; a value the user set is kept."""
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False  # torch's default either way: autotuning picks kernels by timing
    if torch.are_deterministic_algorithms_enabled() != enabled:  # it imports inductor (and dynamo): only to change
        torch.use_deterministic_algorithms(enabled)  # it, so that a CPU worker, off by default, never pays for that
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
