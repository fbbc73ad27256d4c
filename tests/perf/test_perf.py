"""perf.perf: its quickest rows run at tiny sizes and write a JSON whose figures hang together, and the
reference-style loop that is the cycle's baseline computes what the harness computes where it should (the
same candidates, the same entropy picks, the same un-augmented pixels)."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch

from bench.data.images import from_arrays
from bench.training.loop import candidates, initial_set, pool_order
from bench.training.trainer import DeviceData
from perf import packing, perf
from perf.reference import pil_images, reference_candidates, reference_picks
from strategies import PoolInputs, create_strategy

FAST_ROWS = ["setup", "trainer", "pipeline", "cycle", "kernels", "scoring"]  # seconds each at the tiny size
TINY = perf.SIZES["tiny"]


def run_perf(tmp_path, *args: str) -> dict:
    out = tmp_path / "perf.json"
    assert perf.main(["--size", "tiny", "--out", str(out), *args]) == 0
    return json.loads(out.read_text())


def assert_no_failures(rows: list[dict]) -> None:
    failed = [(r["name"], r["note"], r["details"].get("traceback")) for r in rows if r["status"] == "FAILED"]
    assert not failed, failed


def assert_consistent_comparison(row: dict) -> None:
    """Finite positive rates, and the ratios recomputed from the row's own seconds."""
    d = row["details"]
    assert math.isfinite(d["harness_rate"]) and d["harness_rate"] > 0
    assert math.isfinite(d["baseline_rate"]) and d["baseline_rate"] > 0
    pairs = list(zip(d["seconds_harness"], d["seconds_baseline"], strict=True))
    assert pairs and all(h > 0 and b > 0 for h, b in pairs)
    assert row["ratio"] == pytest.approx(statistics.median(b / h for h, b in pairs))
    assert row["best_ratio"] == pytest.approx(d["harness_rate"] / d["baseline_rate"])  # equal work per repetition


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    return run_perf(tmp_path_factory.mktemp("perf"), "--only", *FAST_ROWS)


def test_the_quick_rows_run_and_every_comparison_is_harness_over_its_baseline(tiny_run):
    rows = tiny_run["rows"]
    assert [r["name"] for r in rows] == ["setup", "trainer", "pipeline", "cycle", "phases", "kernels", "kernels",
                                               "scoring"]
    assert_no_failures(rows)
    for row in rows:
        assert len(row["load_before"]) == 3 and len(row["load_after"]) == 3
        assert all(math.isfinite(v) and v >= 0 for v in row["load_before"] + row["load_after"])
        if row["name"] not in ("setup", "phases"):
            assert_consistent_comparison(row)
    setup = rows[0]
    assert setup["status"] == "ok" and setup["details"]["channels_last"]


def test_the_cycle_row_times_both_loops_and_projects_the_paper_grid(tiny_run):
    cycle = next(r for r in tiny_run["rows"] if r["name"] == "cycle")
    details = cycle["details"]
    assert len(details["phases_harness"]) == len(details["phases_reference"]) == TINY.cycle_pairs
    assert all(p["picked"] == TINY.cycle_budget for p in details["phases_reference"])
    for side in ("harness", "reference"):
        assert all(math.isfinite(v) and v > 0 for v in details["rates"][side].values())
    grid = tiny_run["paper_grid_projection"]
    assert grid["hours_total"] == pytest.approx(perf.PAPER_GRID_JOBS * grid["hours_per_job"])


def test_the_phases_row_is_each_phase_at_its_fastest_and_the_score_ratio():
    ours = [{"train": 2.0, "evaluate": 0.5, "score": 0.4, "select": 0.1, "rest": 0.2},
            {"train": 1.0, "evaluate": 0.6, "score": 0.5, "select": 0.2, "rest": 0.1}]
    ref = [{"train": 3.0, "evaluate": 1.0, "score": 1.2, "select": 0.05, "rest": 0.0}]
    row = perf.phases_row(ours, ref)
    assert row.details["harness"] == {"train": 1.0, "evaluate": 0.5, "score": 0.4, "select": 0.1, "rest": 0.1}
    assert row.ratio == pytest.approx(1.2 / 0.4) and row.details["ratios"]["train"] == pytest.approx(3.0)
    assert "rest" not in row.details["ratios"]  # the reference has no separate rest: no ratio is made up


def test_the_cycle_record_splits_scoring_from_selection(tiny_run):
    for phases in tiny_run["rows"][3]["details"]["phases_harness"]:
        assert phases["score"] > 0 and phases["select"] >= 0 and phases["evaluate"] > 0
        assert phases["score"] + phases["select"] == pytest.approx(phases["score_select"])


def test_packed_jobs_report_aggregate_and_per_job_rates(tmp_path):
    rounds: dict = {}
    packing.measure_packing("cpu", "cnn", 32, 64, 1, (2,), False, str(tmp_path), rounds.__setitem__)
    found = rounds[2]
    assert found["aggregate_img_s"] > 0 and found["per_job_img_s"] > 0 and found["recompiles"] == 0
    # two jobs of equal work: the aggregate is at least one job's rate and at most twice the faster one's
    assert found["per_job_img_s"] * 0.9 <= found["aggregate_img_s"] <= 2.2 * found["per_job_img_s"]


def test_the_reference_loop_scores_the_loops_candidates():
    order = pool_order(3, 2, 500)
    labeled = np.concatenate([initial_set(3, 500, 40), order[[5, 17, 200]]])
    assert np.array_equal(reference_candidates(order, labeled, 100), candidates(order, labeled, 100))


def test_the_reference_loop_picks_what_the_entropy_strategy_picks():
    logits = 3.0 * torch.randn(300, 10, generator=torch.Generator().manual_seed(0))  # [n, C], no near ties
    inputs = PoolInputs(n=300, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                        logits=logits, probs=torch.softmax(logits.double(), dim=1))
    ours = create_strategy("entropy").select(inputs, 30)
    assert set(reference_picks(logits, 30).tolist()) == set(ours.tolist())


def test_the_reference_pipeline_yields_the_harness_pixels_without_augmentation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    y = np.arange(6) % 2
    images = from_arrays("t", x, y, x[:2], y[:2], mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), pad=2, flip=True)
    dataset = pil_images(images, "train", augment=False)
    reference = torch.stack([dataset[i][0] for i in range(6)])
    ours = DeviceData.from_images(images, torch.device("cpu")).normalise(images.x_train)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_the_paper_grid_counts_the_papers_images():
    # 200 epochs over 1k + 2k + ... + 10k labels; 10k candidates at 9 acquisitions; 10k test images at 10 cycles
    assert perf.paper_grid_images() == {"train": 200 * 55_000, "score": 9 * 10_000, "test": 10 * 10_000}
    grid = perf.project_paper_grid(train_img_s=1000.0, infer_img_s=5000.0)
    assert grid["hours_per_job"] == pytest.approx((11_000_000 / 1000 + 190_000 / 5000) / 3600)


@pytest.mark.parametrize("method", TINY.selection_methods)
def test_a_selection_measurement_counts_its_picks_and_inputs(method):
    threads = torch.get_num_threads()
    try:  # in this process for speed; the suite runs it in a fresh one
        result = perf.selection_child(method, 2000, TINY)
    finally:
        torch.set_num_threads(threads)
    assert result["distinct_picks"] == TINY.picks
    assert result["seconds"] > 0 and result["extra_mib"] >= 0
    floats = {"core-set": 2000 * 512 + TINY.centres * 512, "badge": 2000 * 512, "bald": 2000 * 512}[method]
    probs = 2000 * 10 * 8 if method == "badge" else 0  # float64 probabilities, as gather_inputs makes them
    assert result["input_mib"] == pytest.approx((4 * floats + probs) / 2**20)


def test_a_cifar_path_feeds_the_rows_and_a_missing_one_is_a_one_line_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "slice.npz"
    np.savez(path, x_train=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), y_train=np.arange(300) % 10,
             x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_test=np.arange(20) % 10)
    (row,) = run_perf(tmp_path, "--only", "pipeline", "--cifar", str(path))["rows"]
    assert row["status"] != "FAILED" and "data npz:slice.npz" in row["note"]

    capsys.readouterr()
    assert perf.main(["--only", "pipeline", "--cifar", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cifar") and err.count("\n") == 1


@pytest.mark.benchmark
def test_the_selection_and_scheduling_rows_run_in_fresh_processes(tmp_path):
    rows = run_perf(tmp_path, "--only", "selection", "scheduling")["rows"]
    assert_no_failures(rows)
    selection = [r for r in rows if r["name"] == "selection"]
    assert [r["details"]["method"] for r in selection] == list(TINY.selection_methods)
    for row in selection:
        assert row["details"]["distinct_picks"] == TINY.picks and row["details"]["extra_mib"] >= 0
        assert row["details"]["threads"] == TINY.selection_threads
    assert_consistent_comparison(next(r for r in rows if r["name"] == "scheduling"))
