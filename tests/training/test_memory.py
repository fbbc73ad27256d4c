"""bench.training.memory: the peak memory of a phase rises by what the phase allocates (a numpy array of known
size, on the CPU's resident set), the lifetime fallback says what it is, the CUDA path resets the device's peak
before and reads it after; one cycle of the loop records its selection's peak in the row; and a folder written
before these columns reports them as n/a and resumes with its rows' identity unchanged."""

from __future__ import annotations

import dataclasses
import math
import mmap
import resource
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import bench.training.memory as memory
from bench.core.config import Protocol
from bench.data.datasets import load_dataset
from bench.training.loop import JobSpec, next_cycle, start_state
from bench.training.memory import PeakMemory
from bench.training.trainer import DeviceData, Trainer
from conftest import TINY
from strategies import Strategy

SIZE_MB = 160  # what the phases below allocate and touch, MiB


def allocate(mb: int) -> float:
    """Fill a float64 numpy array of `mb` MiB on fresh pages, then free it; returns a value so nothing is optimised
    away. Fresh: an anonymous mmap, which no allocator held before (np.ones could reuse a freed heap that malloc
    kept resident after earlier tests, and the resident set would rightly not rise)."""
    buffer = mmap.mmap(-1, mb * 2**20)
    block = np.frombuffer(buffer, dtype=np.float64)
    block[:] = 1.0  # every page written
    value = float(block[-1])
    del block
    buffer.close()
    return value


@pytest.mark.skipif(not memory._reset_hwm(), reason="this kernel refuses to reset the high-water mark")
def test_the_resident_peak_rises_by_what_the_phase_allocates():
    meter = PeakMemory(torch.device("cpu")).start()
    allocate(SIZE_MB)
    peak = meter.stop()
    assert peak.source == "rss"
    assert SIZE_MB * 0.95 <= peak.rise_mb <= SIZE_MB * 1.1 + 8  # the array, and little else
    idle = PeakMemory(torch.device("cpu")).start().stop()  # the reset forgets the earlier peak
    assert idle.rise_mb < 8 and idle.peak_mb < peak.peak_mb - SIZE_MB * 0.9
    assert peak.columns() == {"select_peak_mb": peak.peak_mb, "select_rise_mb": peak.rise_mb,
                              "select_memory": "rss"}


def test_without_the_reset_it_is_the_lifetime_peak_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")  # the write is refused
    peak = PeakMemory(torch.device("cpu")).start().stop()
    assert peak.source == "rss-lifetime" and math.isnan(peak.rise_mb)
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    assert peak.peak_mb == pytest.approx(lifetime, abs=1)


def test_on_cuda_the_device_peak_is_reset_before_and_read_after(monkeypatch):
    events = []
    allocated = {"now": 300 * 2**20, "peak": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: events.append("reset") or allocated.update(peak=allocated["now"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated["now"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: events.append("read")
                        or allocated["peak"])
    meter = PeakMemory(torch.device("cuda", 0)).start()
    allocated["peak"] += 50 * 2**20  # the phase's tensors
    peak = meter.stop()
    assert events == ["sync", "reset", "sync", "read"]  # queued kernels counted on the right side of each read
    assert (peak.peak_mb, peak.rise_mb, peak.source) == (350, 50, "cuda")


class Hungry(Strategy):
    """Allocates SIZE_MB inside its selection, then picks the first candidates."""

    name = "hungry-memory-test"

    def score(self, inputs):
        allocate(SIZE_MB)
        return -np.arange(inputs.n, dtype=float)


@pytest.mark.skipif(not memory._reset_hwm(), reason="this kernel refuses to reset the high-water mark")
def test_a_cycle_records_the_peak_of_its_selection_alone():
    data = load_dataset("digits")
    p = dataclasses.replace(Protocol(), initial=20, budget=10, cycles=2, epochs=1, milestones=(), subset=60,
                            precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), p, torch.device("cpu"))
    rows = {}
    for name in ("random", Hungry.name):
        spec = JobSpec("t", "digits", name, 0, p)
        state = start_state(spec, trainer.data.n_train)
        result, state = next_cycle(spec, trainer, data.n_classes, state)
        rows[name] = result.record
        last, _ = next_cycle(spec, trainer, data.n_classes, state)  # the last cycle picks nothing
        assert math.isnan(last.record["select_peak_mb"]) and last.record["select_memory"] == ""
    hungry, plain = rows[Hungry.name], rows["random"]
    assert hungry["select_memory"] == plain["select_memory"] == "rss"
    assert hungry["select_rise_mb"] >= SIZE_MB * 0.95  # the array the selection held
    assert plain["select_rise_mb"] < SIZE_MB * 0.5  # random holds no such thing


def test_a_folder_written_before_the_columns_resumes_and_reports_them_as_n_a(cli, tmp_path):
    out, columns = tmp_path / "run", list(memory.NOT_MEASURED)
    run = ["--strategies", "random", "entropy", *TINY, "--jobs", "1", "--out", out]
    assert cli(*run)[0] == 0
    rows = pd.read_parquet(out / "cycles.parquet")
    assert set(columns) <= set(rows.columns)
    rows.drop(columns=columns).to_parquet(out / "cycles.parquet", index=False)  # as an older harness wrote it
    shutil.copytree(out, tmp_path / "old")
    status, stdout, err = cli("report", tmp_path / "old")
    assert status == 0, err
    table = (tmp_path / "old" / "report" / "report.md").read_text().split("### What a pick costs", 1)[1]
    shown = [line for line in table.splitlines() if line.startswith("| entropy ")]
    assert len(shown) == 1 and shown[0].endswith("| n/a | n/a | n/a |")
    assert TINY[-2:] == ["--seeds", "1"]
    status, _, err = cli("--strategies", "random", "entropy", *TINY[:-1], "2", "--jobs", "1", "--out", out)
    assert status == 0, err  # the old folder resumes, widened by a seed: its rows' identity is unchanged
    after = pd.read_parquet(out / "cycles.parquet")
    old = after[after["seed"] == 0].sort_values(["strategy", "cycle"]).reset_index(drop=True)
    kept = rows.drop(columns=columns).sort_values(["strategy", "cycle"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(old[kept.columns], kept)  # seed 0 was not rerun
    assert old[columns[:2]].isna().all().all()
    new = after[(after["seed"] == 1) & (after["cycle"] < 2)]
    assert len(new) == 4 and (new["select_peak_mb"] > 0).all()
    hashes = after.groupby("strategy")["config_hash"].nunique()
    assert (hashes == 1).all()  # one identity per strategy across the old and the new rows
