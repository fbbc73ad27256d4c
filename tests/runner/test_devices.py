"""How a run executes, which never changes a job's identity: --jobs-per-device auto (bench.runner.devices's rule) and
--compile, with its fallback where torch.compile cannot work."""

from __future__ import annotations

import dataclasses
import json
import os

import pandas as pd
import pytest
import torch

from bench.runner.devices import MAX_JOBS_PER_DEVICE, MEMORY_SHARE, pack
from bench.training.trainer import compile_works
from conftest import TINY


@pytest.mark.parametrize(("job_mib", "free_mib", "cores", "devices", "expected", "limit"), [
    (3000.0, 10000.0, 16, 1, int(MEMORY_SHARE * 10000 // 3000), "memory"),  # 2 jobs of 3 GiB in 8 GiB
    (900.0, 140000.0, 16, 1, MAX_JOBS_PER_DEVICE, "cap"),  # a small model on a large GPU: the cap
    (900.0, 140000.0, 2, 2, 1, "cores"),  # 2 cores feeding 2 GPUs: one job each
    (9000.0, 4000.0, 16, 1, 1, "memory"),  # not even one fits: still one (the run itself reports OOM)
])
def test_packing_rule(job_mib, free_mib, cores, devices, expected, limit):
    packing = pack(job_mib, free_mib, cores, devices)
    assert (packing.jobs_per_device, packing.limit) == (expected, limit)


def test_auto_on_a_cpu_is_one_job_and_recorded(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    status, _, err = cli("--strategies", "random", "--dataset", f"npz:{tiny_npz}", *TINY, "--devices", "cpu",
                         "--jobs-per-device", "auto", "--out", out)
    assert status == 0, err
    assert json.loads((out / "config.json").read_text())["execution"] == {
        "jobs_per_device": 1, "packing": {}, "compile": False, "threads_per_worker": 1}


def test_jobs_per_device_must_be_a_count_or_auto(cli, tmp_path):
    status, _, err = cli("--jobs-per-device", "many", "--dry-run", "--out", tmp_path / "x")
    assert status == 2 and "--jobs-per-device: expected a positive integer, got 'many'" in err


def test_compile_falls_back_with_one_warning_and_the_same_numbers(cli, tmp_path, tiny_npz, monkeypatch):
    from bench.runner import resolve
    monkeypatch.setattr(resolve, "compile_works", lambda device: "InvalidCxxCompiler: no working C++ compiler found")
    args = ["--strategies", "entropy", "--dataset", f"npz:{tiny_npz}", *TINY]
    status, _, err = cli(*args, "--compile", "--out", tmp_path / "compiled")
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning")]
    assert warnings == ["warning   --compile: torch.compile does not work here (InvalidCxxCompiler: no working C++ "
                        "compiler found); running uncompiled"]
    config = json.loads((tmp_path / "compiled" / "config.json").read_text())
    assert config["execution"]["compile"] is False
    assert cli(*args, "--out", tmp_path / "plain")[0] == 0
    rows = [pd.read_parquet(tmp_path / d / "cycles.parquet") for d in ("compiled", "plain")]
    pd.testing.assert_series_equal(rows[0]["test_acc"], rows[1]["test_acc"])
    # --compile is how a run executes, not what it computes: the job identity is the same
    assert set(rows[0]["config_hash"]) == set(rows[1]["config_hash"])


# The CUDA side of --jobs-per-device auto, run on the CPU: the glue between the run and the measurement (the
# measurement itself, with torch.cuda's statistics faked: tests/runner/test_scheduler_devices.py; perf/gpu_check.sh
# runs it).
MIB = 2**20


def test_auto_on_a_cuda_device_measures_the_runs_model_at_its_batch_and_records_the_choice(monkeypatch):
    from bench.data.datasets import load_dataset
    from bench.runner import devices as packing
    from bench.runner import resolve
    from bench.runner.devices import Packing

    seen = {}

    def measured(device, protocol, data, strategies, devices):
        seen.update(device=device, protocol=protocol, n_train=int(data.x_train.shape[0]),
                    strategies=[s.name for s in strategies], devices=devices)
        return Packing(3, 824.0, 3000.0, "memory")

    monkeypatch.setattr(packing, "auto_packing", measured)
    config = resolve.build_config("quick", ["random", "ll"], seeds=1, devices="cpu", protocol={"image_size": 16})
    data = load_dataset("digits")
    done = resolve.execution(resolve.RunOptions(jobs_per_device="auto"), config, data, ["cuda:0", "cuda:1"])
    assert done == {"jobs_per_device": 3, "compile": False,
                    "packing": {"jobs_per_device": 3, "job_mib": 824.0, "free_mib": 3000.0, "limit": "memory"}}
    assert seen == {"device": "cuda:0", "protocol": config.protocol, "n_train": int(data.x_train.shape[0]),
                    "strategies": ["random", "learning-loss"], "devices": 2}


@pytest.mark.parametrize("augment", [True, False])
def test_the_data_a_job_keeps_on_its_device_is_counted_to_the_byte(tiny_npz, augment):
    """The packing rule's dataset term against the tensors the trainer really puts on the device: the training
    images padded for random crops (when augmenting), the test images as stored, labels and normalisation."""
    from bench.core.config import preset_protocol
    from bench.data.datasets import load_dataset
    from bench.runner.devices import device_data_bytes
    from bench.training.trainer import DeviceData

    data = load_dataset(f"npz:{tiny_npz}")
    protocol = preset_protocol("quick", augment=augment)
    held = DeviceData.from_images(data, torch.device("cpu"), protocol.augment)
    assert (held.pad > 0) == augment  # the padded case is exercised: padding changes the count
    tensors = [getattr(held, f.name) for f in dataclasses.fields(held)]
    on_device = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    assert device_data_bytes(data, protocol) == on_device


def test_a_broken_cxx_compiler_on_path_is_found_before_any_work(tmp_path, monkeypatch):
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\necho 'cc1plus: fatal error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert compile_works(torch.device("cpu")) == "the C++ compiler 'g++' fails on a one-line program (exit 1)"
    monkeypatch.setenv("CXX", str(tmp_path / "absent-compiler"))
    assert compile_works(torch.device("cpu")) == f"no C++ compiler {str(tmp_path / 'absent-compiler')!r} on PATH"
