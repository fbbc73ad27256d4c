"""bench.perf's helpers: alternation and ratios, the paper-grid arithmetic, and that each comparison's two
variants do the same work (same normalised pixels, same candidates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import perf
from bench.data import from_arrays
from bench.trainer import DeviceData


def test_alternate_runs_a_b_a_b_after_warm_up_and_reports_the_median_ratio():
    calls: list[str] = []
    seconds_a, seconds_b = iter([9.0, 1.0, 2.0, 4.0]), iter([9.0, 2.0, 2.0, 2.0])  # first of each: warm-up

    def run(name: str, times) -> float:
        calls.append(name)
        return next(times)

    comparison = perf.alternate(lambda: run("a", seconds_a), lambda: run("b", seconds_b), pairs=3)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert comparison.a == [1.0, 2.0, 4.0] and comparison.b == [2.0, 2.0, 2.0]  # warm-up dropped
    assert comparison.ratios == [2.0, 1.0, 0.5]  # time(B) / time(A): A's throughput over B's
    assert comparison.ratio == 1.0
    assert comparison.best_ratio == 2.0  # fastest B (2.0 s) over fastest A (1.0 s)


def test_row_status_against_its_aim():
    assert perf.Row("x", "", "", "", ratio=0.95, aim=0.9).status == "met"
    assert perf.Row("x", "", "", "", ratio=0.85, aim=0.9).status == "missed"
    assert perf.Row("x", "", "", "", ratio=1.2).status == "-"
    assert perf.Row("x", "", "", "", passed=False).status == "FAILED"


def test_paper_grid_arithmetic():
    images = perf.paper_grid_images()
    assert images == {"train": 200 * 1000 * 55, "score": 9 * 10_000, "test": 10 * 10_000}
    assert images["train"] == 11_000_000
    grid = perf.project_paper_grid(train_img_s=1000.0, infer_img_s=5000.0)
    per_job = (11_000_000 / 1000 + 190_000 / 5000) / 3600  # 11,038 s
    assert grid["hours_per_job"] == pytest.approx(per_job)
    assert grid["hours_total"] == pytest.approx(25 * per_job)


def test_reference_pipeline_yields_the_harness_pixels_without_augmentation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    y = np.arange(6) % 2
    images = from_arrays("t", x, y, x[:2], y[:2], mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), pad=2, flip=True)
    dataset = perf.PILImages(perf.hwc(images.x_train), y, perf.reference_transforms(images, train=False))
    reference = torch.stack([dataset[i][0] for i in range(6)])
    ours = DeviceData.from_images(images, torch.device("cpu")).normalise(images.x_train)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_both_cycles_score_the_same_candidates():
    from bench.loop import candidates

    order = np.random.default_rng(1).permutation(50)
    labeled = order[[3, 7, 20, 41]]
    assert np.array_equal(perf.unlabeled_head(order, labeled, 10), candidates(order, labeled, 10))


def test_pipeline_measurement_runs_at_tiny_size():
    threads = torch.get_num_threads()
    sizes = perf.Sizes(pipeline_images=256, pipeline_pairs=2)
    (row,) = perf.measure_pipeline(torch.device("cpu"), sizes)
    assert row.name == "pipeline" and len(row.details["ratios"]) == 2
    assert row.ratio > 0 and row.aim == 5.0
    assert torch.get_num_threads() == threads  # the one-thread setting is undone
