"""The device a job runs on, on CUDA machines, tested on this CPU with torch.cuda patched: the device asked for is
the device used (inline, loky and dask), a replacement worker takes its predecessor's slot, each CUDA worker gets a
share of the cores, a poisoned CUDA context leaves with its worker, a job's process dying never ends the run, a
CUDA build without a usable driver says so, and --jobs-per-device auto measures the step the jobs run and frees
what it measured with."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref

import pandas as pd
import pytest
import torch
from launch import run_cli

from bench.core.config import preset_protocol
from bench.data.datasets import load_dataset
from bench.runner import devices as packing
from bench.runner import scheduler
from conftest import TINY

MIB = 2**20


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda reporting two devices (nothing that would touch one is expected to be called)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _device_here() -> str:
    """In a worker process: the device execute() would hand the trainer, with CUDA reported present there too."""
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 2
    return scheduler._worker_device()


# ---------------------------------------------------------------------------------------------- the device asked for


def test_one_cpu_worker_runs_on_the_cpu_where_cuda_is_available(cli, tmp_path, tiny_npz, two_gpus, monkeypatch):
    seen = []
    trainer = scheduler._trainer
    monkeypatch.setattr(scheduler, "_trainer", lambda source, protocol, device: seen.append(device) or
                        trainer(source, protocol, device))
    status, _, err = cli("--strategies", "random", "entropy", "--dataset", f"npz:{tiny_npz}", *TINY, "--cycles", "2",
                         "--epochs", "1", "--devices", "cpu", "--jobs", "1", "--out", tmp_path / "run")
    assert status == 0, err
    assert not (tmp_path / "run" / "failures.json").exists()
    assert seen and set(seen) == {"cpu"}


def test_one_cuda_slot_runs_on_the_device_named(two_gpus):
    pool, _ = scheduler.make_pool("loky", ["cuda:1"], 1, 1, None)
    try:
        assert pool.submit(_device_here).result() == "cuda:1"
    finally:
        pool.close()


def test_loky_cpu_workers_run_on_the_cpu_where_cuda_is_available(two_gpus):
    pool, _ = scheduler.make_pool("loky", ["cpu"], 2, 1, None)
    try:
        assert {pool.submit(_device_here).result() for _ in range(4)} == {"cpu"}
    finally:
        pool.close()


def test_a_local_dask_cluster_has_one_worker_per_slot_on_its_device(two_gpus):
    pytest.importorskip("dask.distributed")
    pool, _ = scheduler.make_pool("dask", ["cuda:0", "cuda:1"], 8, 1, None)  # slots, not --jobs
    try:
        assert pool.capacity == 2
        assert sorted(pool._client.run(_device_here).values()) == ["cuda:0", "cuda:1"]
    finally:
        pool.close()


# ---------------------------------------------------------------------------------------------- slots and threads


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_replacement_worker_takes_the_slot_of_the_worker_it_replaces():
    import threading

    slots = ["cuda:0", "cuda:1"]
    holders: dict[int, int] = {}
    lock = threading.Lock()
    assert scheduler.claim_slot(slots, holders, lock, pid=os.getpid()) == "cuda:0"
    gone = _dead_pid()
    assert scheduler.claim_slot(slots, holders, lock, pid=gone) == "cuda:1"
    # the cuda:1 worker exits (idle, or loky's memory-leak restart); its replacement must not pile onto cuda:0
    assert scheduler.claim_slot(slots, holders, lock, pid=os.getpid() + 10**6) == "cuda:1"


def test_cuda_workers_share_the_cores_and_record_it(two_gpus, monkeypatch):
    made = {}
    monkeypatch.setattr(scheduler, "LokyPool", lambda slots, threads: made.update(slots=slots, threads=threads))
    monkeypatch.setattr(scheduler.os, "cpu_count", lambda: 16)
    _, threads = scheduler.make_pool("loky", ["cuda:0", "cuda:1"], 1, 2, None)
    assert made == {"slots": ["cuda:0", "cuda:0", "cuda:1", "cuda:1"], "threads": 4} and threads == 4
    _, threads = scheduler.make_pool("loky", ["cpu"], 2, 1, None)
    assert threads == scheduler.CPU_THREADS_PER_WORKER == 1  # CPU numbers must not depend on --jobs


# ---------------------------------------------------------------------------------------------- processes that die

POISON = '''
import os, time
from pathlib import Path
from strategies import Strategy

LOG = Path({log!r})

def note(event):
    with LOG.open("a") as f:
        f.write(f"{{time.time()!r}} {{os.getpid()}} {{event}}\\n")

class Poisoned(Strategy):
    """Fails as a device-side assert does, poisoning its process's CUDA context (test only)."""
    name = "test-poisoned"

    def select(self, inputs, k):
        note("poisoned")
        raise RuntimeError("CUDA error: device-side assert triggered")

class Recorded(Strategy):
    """The first k candidates, noting the process that picked them, slowly: the other worker is free first
    (test only)."""
    name = "test-recorded"

    def select(self, inputs, k):
        note("picked")
        time.sleep(0.3)
        return list(range(k))

class RecordedToo(Recorded):
    """The same, a job of its own (test only)."""
    name = "test-recorded-too"
'''


def test_a_poisoned_cuda_context_leaves_with_its_worker(tmp_path, tiny_npz):
    log = tmp_path / "events"
    path = tmp_path / "poison.py"
    path.write_text(POISON.format(log=str(log)))
    result = run_cli("--jobs", "2", "--strategy-file", path, "--strategies", "test-poisoned", "test-recorded",
                     "test-recorded-too", "--dataset", f"npz:{tiny_npz}", *TINY, "--epochs", "1", "--cycles", "4",
                     "--out", tmp_path / "run")
    assert result.returncode == 1, result.stderr
    failures = json.loads((tmp_path / "run" / "failures.json").read_text())
    assert [f["job"] for f in failures] == ["test-poisoned/seed0"] and "device-side assert" in failures[0]["error"]
    rows = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    assert len(rows[rows.strategy.str.startswith("test-recorded")]) == 2 * 4  # the other jobs finished
    events = [line.split() for line in log.read_text().splitlines()]
    for t, pid, event in events:
        if event == "poisoned":  # nothing ran in that process afterwards
            assert not [e for e in events if e[1] == pid and float(e[0]) > float(t)], events


EXITS = '''
import os
from strategies import Strategy

class Exits(Strategy):
    """Ends its process at selection, as a C library's exit() would (test only)."""
    name = "test-os-exit"

    def select(self, inputs, k):
        os._exit(0)
'''


def test_a_job_that_ends_its_process_never_ends_a_one_worker_run(tmp_path, tiny_npz):
    path = tmp_path / "exits.py"
    path.write_text(EXITS)
    folder = tmp_path / "run"
    result = run_cli("--jobs", "1", "--strategy-file", path, "--strategies", "test-os-exit", "random",
                     "--dataset", f"npz:{tiny_npz}", *TINY, "--epochs", "1", "--out", folder)
    assert result.returncode == 1, result.stderr
    failures = json.loads((folder / "failures.json").read_text())
    assert [f["job"] for f in failures] == ["test-os-exit/seed0"]
    rows = pd.read_parquet(folder / "cycles.parquet")
    assert sorted(rows.loc[rows.strategy == "random", "cycle"]) == [0, 1, 2]
    assert (folder / "report").is_dir()


# ---------------------------------------------------------------------------------------------- --devices auto


def test_a_cuda_build_that_cannot_reach_its_driver_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    smi = "/made-up/bin/nvidia-smi"
    monkeypatch.setattr(packing.shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    assert packing.resolve_devices("auto") == ["cpu"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning   --devices auto:") and "CUDA 12.8" in lines[0]
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU build: nothing to say
    assert packing.resolve_devices("auto") == ["cpu"]
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------- --jobs-per-device auto


@pytest.fixture
def fake_cuda_memory(monkeypatch):
    """torch.cuda's statistics: 100 MiB reserved and allocated before the step; a peak of 300 MiB allocated, 900
    reserved (the caching allocator holds more than tensors use); 3000 MiB free. empty_cache calls are counted."""
    emptied = []
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 100 * MIB)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 100 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 400 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 1000 * MIB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3000 * MIB, 8000 * MIB))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setattr(packing.os, "cpu_count", lambda: 16)
    return emptied


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def test_auto_packing_measures_the_step_the_jobs_run_and_frees_it(fake_cuda_memory, monkeypatch, tiny_npz):
    from strategies import create_strategy

    data = load_dataset(f"npz:{tiny_npz}")  # 3 channels: channels_last differs from NCHW
    protocol = preset_protocol("quick", dataset=f"npz:{tiny_npz}", precision="bf16", batch_size=16)
    seen: dict[str, object] = {}
    models = []
    build = packing.build_model

    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        models.append(weakref.ref(model))
        weight = next(p for p in model.parameters() if p.dim() == 4)
        model.register_forward_pre_hook(lambda m, inputs: seen.update(
            channels_last=_channels_last(inputs[0]) and _channels_last(weight),
            autocast=torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")))
        return model

    monkeypatch.setattr(packing, "build_model", built)
    ll = create_strategy("learning-loss")
    make_head = type(ll).aux_head

    def head(self, model, protocol):
        made = make_head(self, model, protocol)
        loss = made.training_loss
        made.training_loss = lambda *a: seen.update(aux_head=True) or loss(*a)
        return made

    monkeypatch.setattr(type(ll), "aux_head", head)
    found = packing.auto_packing("cpu", protocol, data, [create_strategy("random"), ll], devices=1)
    assert seen == {"channels_last": True, "autocast": torch.bfloat16, "aux_head": True}
    data_mib = packing.device_data_bytes(data, protocol) / MIB
    # the reserved peak beyond what was reserved before (900 MiB), not the allocated one (300)
    assert found.job_mib == pytest.approx(900 + data_mib + packing.CUDA_CONTEXT_MIB)
    assert (found.jobs_per_device, found.limit) == (int(0.8 * 3000 // found.job_mib), "memory") == (1, "memory")
    assert models and all(ref() is None for ref in models)  # the probe's model is gone...
    assert fake_cuda_memory  # ... and the allocator's cache handed back to the device


def test_the_frozen_embeddings_leave_no_cache_behind(monkeypatch, tiny_npz, tmp_path):
    from bench.runner.resolve import build_config
    from bench.training import linear_probe as frozen

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    models = []
    backbone = frozen.frozen_backbone
    monkeypatch.setattr(frozen, "frozen_backbone", lambda *a, **k: models.append(weakref.ref(m := backbone(*a, **k)))
                        or m)
    config = build_config("quick", ["random"], seeds=1, out=tmp_path / "run",
                          protocol={"dataset": f"npz:{tiny_npz}", "train_mode": "frozen"})
    data = load_dataset(f"npz:{tiny_npz}")
    assert frozen.prepare_embeddings(config, data, "cpu") is not None
    gc.collect()
    assert models and all(ref() is None for ref in models) and emptied
