"""How a run executes, which never changes a job's identity: --jobs-per-device auto (bench.packing's rule) and
--compile, with its fallback where torch.compile cannot work."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.packing import MAX_JOBS_PER_DEVICE, MEMORY_SHARE, pack
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
        "jobs_per_device": 1, "packing": {}, "compile": False}


def test_jobs_per_device_must_be_a_count_or_auto(cli, tmp_path):
    status, _, err = cli("--jobs-per-device", "many", "--dry-run", "--out", tmp_path / "x")
    assert status == 2 and "--jobs-per-device: expected a positive integer, got 'many'" in err


def test_compile_falls_back_with_one_warning_and_the_same_numbers(cli, tmp_path, tiny_npz, monkeypatch):
    from bench import run

    monkeypatch.setattr(run, "compile_works", lambda device: "InvalidCxxCompiler: no working C++ compiler found")
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
