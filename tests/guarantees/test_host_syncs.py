"""The host's side of a CUDA run, tested on the CPU: host syncs in the diversity strategies' selection loops,
and the host toolchain that compiled CUDA kernels need.

Indexing with a 0-d tensor (`x[pick]`, `x[pick] = v`) and `.item()` both lower to aten._local_scalar_dense,
which on CUDA waits for the device queue to drain. A dispatch mode counts those calls during select(): a
selection may make a constant number of them, never one or more per pick. (torch.cuda.set_sync_debug_mode
would report the same on a GPU; on the CPU there is no queue to wait for, so the op itself is counted.)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.models.backbones import create_model
from bench.training.trainer import compile_works
from strategies import PoolInputs, create_strategy


class SyncCounter(TorchDispatchMode):
    """Counts aten._local_scalar_dense: the op behind .item(), float(t) and indexing with a 0-d tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def pool_inputs(n: int, n_labeled: int) -> PoolInputs:
    g = torch.Generator().manual_seed(0)
    model = create_model("cnn", 1, 10, generator_seed=0).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = torch.randn(n, 10, generator=g) * 3
    return PoolInputs(n=n, rng=np.random.default_rng(0), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits.double(), 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())


def syncs_of_select(name: str, k: int, n_labeled: int = 5) -> int:
    inputs = pool_inputs(200, n_labeled)
    strategy = create_strategy(name)
    with SyncCounter() as counter:
        picks = strategy.select(inputs, k)
    assert len(np.unique(picks)) == k
    return counter.syncs


@pytest.mark.parametrize(("name", "n_labeled"), [("core-set", 5), ("core-set", 0), ("badge", 5)])
def test_a_selection_makes_a_constant_number_of_host_syncs(name, n_labeled):
    few, many = syncs_of_select(name, 10, n_labeled), syncs_of_select(name, 50, n_labeled)
    assert few == many  # nothing per pick
    assert many <= 2


# ------------------------------------------------------------------------- compiling for CUDA: the toolchain
# triton builds each kernel's launcher at its first launch, with a C compiler (CC, else gcc, else clang) and
# against Python.h: without either, every compiled job would fail at its first step.

CUDA = torch.device("cuda", 0)


@pytest.fixture
def toolchain(monkeypatch, tmp_path):
    """A host with triton, gcc that compiles, and Python.h; each test takes one of them away."""
    include = tmp_path / "include"
    include.mkdir()
    (include / "Python.h").write_text("")
    state = {"triton": True, "on_path": {"gcc": "/made-up/bin/gcc", "clang": None}, "exit": 0, "probes": []}
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if state["triton"] else None) if name == "triton"
                        else find_spec(name, *a))
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: state["on_path"].get(name))
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {"include": str(include)})

    def run(cmd, **kwargs):
        state["probes"].append(cmd)
        return subprocess.CompletedProcess(cmd, state["exit"], "", "error")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.delenv("CC", raising=False)
    state["include"] = include
    return state


def test_compiling_for_cuda_works_with_triton_a_c_compiler_and_python_headers(toolchain):
    assert compile_works(CUDA) is None
    assert toolchain["probes"][0][:3] == ["/made-up/bin/gcc", "-x", "c"]  # the C compiler triton would pick, run


def test_compiling_for_cuda_needs_triton(toolchain):
    toolchain["triton"] = False
    assert compile_works(CUDA) == "triton is not installed"


def test_compiling_for_cuda_needs_a_c_compiler(toolchain):
    toolchain["on_path"] = {"gcc": None, "clang": None}
    reason = compile_works(CUDA)
    assert reason is not None and "no C compiler" in reason and "CC" in reason
    toolchain["on_path"]["clang"] = "/made-up/bin/clang"  # triton's second choice will do
    assert compile_works(CUDA) is None and toolchain["probes"][-1][0] == "/made-up/bin/clang"


def test_compiling_for_cuda_takes_the_c_compiler_from_cc(toolchain, monkeypatch):
    monkeypatch.setenv("CC", "/made-up/cc")
    assert compile_works(CUDA) == "no C compiler '/made-up/cc' on PATH (triton builds its kernel launchers with one)"


def test_compiling_for_cuda_needs_a_c_compiler_that_works(toolchain):
    toolchain["exit"] = 1
    assert compile_works(CUDA) == "the C compiler '/made-up/bin/gcc' fails on a one-line program (exit 1)"


def test_compiling_for_cuda_needs_python_h(toolchain):
    os.remove(toolchain["include"] / "Python.h")
    reason = compile_works(CUDA)
    assert reason is not None and "Python.h" in reason and str(toolchain["include"]) in reason

