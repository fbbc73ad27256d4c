"""perf/gpu_check.sh: on a CPU at tiny sizes every step runs (or says why not) within its own time budget (no
bound on the whole: these machines' speed varies 2x from day to day, and each step's budget is 3x or more what it
takes on a quiet 2-core machine), a step that fails or runs out of time is reported and the next one still runs,
and the pieces that only a GPU machine exercises read nvidia-smi's output, the process tree and the two runs' rows
as they should."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from perf import check_log, gpu_runs, gpu_selection, packing, perf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "perf" / "gpu_check.sh"
STEPS = ["a-env", "b-repeat", "c-devices", "d-selection", "e-determinism", "f-packing", "f-packing-compiled",
         "g-grid", "h-launches"]


def check(out: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DEVICE": "cpu", "SIZE": "tiny", "OUT": str(out), **env})
    return done, time.perf_counter() - start


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, float, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    done, seconds = check(out)
    return done, seconds, out


def test_the_tiny_cpu_check_runs_every_step_within_its_budget(tiny_check):
    done, _, out = tiny_check
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for name in STEPS:
        status = [line for line in lines if line.startswith(f"step {name}: ")]
        assert len(status) == 1, (name, done.stdout[-3000:])
        assert "FAILED" not in status[0] and "TIMED OUT" not in status[0]
    assert "step c-devices: skipped" in done.stdout  # it needs CUDA, and says so
    assert "skipped: --devices cuda:1 needs CUDA" in done.stdout
    result = json.loads((out / "gpu_check.json").read_text())
    assert [s["step"] for s in result["steps"]] == STEPS and result["failed"] == []
    assert all(s["seconds"] <= s["budget_s"] for s in result["steps"])


def test_the_tiny_check_answers_each_question(tiny_check):
    _, _, out = tiny_check
    steps = {s["step"]: s for s in json.loads((out / "gpu_check.json").read_text())["steps"]}
    assert steps["a-env"]["data"]["torch"] == torch.__version__
    assert "nvidia-smi: skipped (DEVICE=cpu)" in steps["a-env"]["lines"]
    # one CPU job run twice: bit-exact, rows and picks
    assert steps["b-repeat"]["data"]["differences"] == {"test_acc": None, "test_loss": None, "index": None}
    selections = steps["d-selection"]["data"]["selections"]
    assert set(selections) == {"core-set", "badge", "bald"}
    assert all(r["seconds"] > 0 and r["scalar_reads"] >= 0 for r in selections.values())
    assert set(steps["e-determinism"]["data"]["img_s"]) == {"on", "off"}
    assert set(steps["f-packing"]["data"]["rounds"]) == {"1", "2"}
    assert all(r["recompiles"] == 0 for r in steps["f-packing"]["data"]["rounds"].values())
    grid = steps["g-grid"]["data"]["grid"]
    assert grid["jobs"] == 25 and grid["hours_total"] == pytest.approx(25 * grid["hours_per_job"])
    launches = steps["h-launches"]["data"]["launches_per_step"]
    assert launches["loop, as Trainer.fit"] > 0
    # drawing augmentation once per epoch leaves out the per-batch crop and flip: fewer operator events per step
    assert launches["per-epoch augmentation"] < launches["loop, as Trainer.fit"]


def test_a_failed_or_timed_out_step_is_reported_and_the_others_still_run(tmp_path):
    fake = tmp_path / "python"  # stands in for the interpreter: one step hangs, one fails, the summary is real
    fake.write_text(f"""#!/bin/sh
case "$3" in
    a-env) sleep 60 ;;
    b-repeat) exit 3 ;;
    c-devices) exit 10 ;;
    summary) exec {sys.executable} "$@" ;;
esac
""")
    fake.chmod(0o755)
    out = tmp_path / "out"
    done, seconds = check(out, PY=str(fake), BUDGET_a_env="1")
    assert seconds < 30  # the hung step was stopped at its budget
    assert done.returncode == 1
    assert "step a-env: TIMED OUT after 1 s" in done.stdout
    assert "step b-repeat: FAILED (exit 3)" in done.stdout
    assert "step c-devices: skipped" in done.stdout
    for name in STEPS[3:]:
        assert f"step {name}: ok" in done.stdout
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["failed"] == ["a-env", "b-repeat"]
    assert [s["status"] for s in result["steps"][:3]] == ["TIMED OUT after 1 s", "FAILED (exit 3)", "skipped"]


def test_compute_apps_are_mapped_to_gpu_indices():
    indices = gpu_runs.gpu_indices("0, GPU-aaaa\n1, GPU-bbbb\n")
    assert indices == {"GPU-aaaa": 0, "GPU-bbbb": 1}
    apps = gpu_runs.compute_apps("4242, GPU-bbbb, 812 MiB\n99, GPU-aaaa, 500 MiB\n[N/A], GPU-aaaa, 1 MiB\n", indices)
    assert apps == [(4242, 1, "812 MiB"), (99, 0, "500 MiB")]


def test_the_process_tree_holds_a_grandchild():
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(shell.stdout.readline())
        assert {shell.pid, grandchild} <= gpu_runs.process_tree(os.getpid())
        assert os.getpid() not in gpu_runs.process_tree(shell.pid)
    finally:
        os.kill(grandchild, 9)
        shell.wait()


def test_two_runs_rows_are_compared_exactly():
    rows = pd.DataFrame({"strategy": ["entropy"] * 2, "seed": [0, 0], "cycle": [1, 0], "test_acc": [0.5, 0.25],
                         "test_loss": [1.0, 2.0]})
    other = rows.iloc[::-1].copy()  # the same rows in another order
    assert gpu_runs.compare_rows(rows, other, ("test_acc", "test_loss")) == {"test_acc": None, "test_loss": None}
    other.loc[other["cycle"] == 1, "test_acc"] = 0.5 + 2**-40  # one ulp-sized difference is a difference
    found = gpu_runs.compare_rows(rows, other, ("test_acc", "test_loss"))
    assert found["test_loss"] is None and found["test_acc"] == (pytest.approx(2**-40), 1)
    with pytest.raises(RuntimeError, match="different rows"):
        gpu_runs.compare_rows(rows, other.iloc[:1], ("test_acc",))


def test_host_syncs_counts_scalar_reads():
    x = torch.arange(5.0)

    def three_reads() -> None:
        x[torch.tensor(2)] = 1.0  # indexing with a 0-d tensor reads it on the host
        x.sum().item()
        float(x.max())

    assert gpu_selection.host_syncs(three_reads, torch.device("cpu")) == {"scalar_reads": 3}


def test_packing_times_whole_batches_only(tmp_path):
    # a last batch of another shape makes a compiled model recompile inside the timed epochs
    for size in check_log.SIZES.values():
        assert size.packing_images % size.batch == 0
    assert all(labeled % batch == 0 for _, batch, labeled, _ in perf.PACKING.values())
    with pytest.raises(ValueError, match="whole batches of 128"):
        packing.measure_packing("cpu", "cnn", 128, 10_000, 1, (1,), True, str(tmp_path), lambda *_: None)
