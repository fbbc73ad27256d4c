"""bench.analysis.cost on hand-made rows: selection seconds over the cycles that select (the last one does not),
training seconds per cycle and per job, the selection's peak memory, n/a (NaN) for an old folder's missing
columns, and the compute spent by the time each accuracy was measured."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.analysis import cost


def rows(memory: bool = True) -> pd.DataFrame:
    data = []
    for seed, scale in ((0, 1.0), (1, 2.0)):
        for cycle in range(3):
            row = {"dataset": "d", "strategy": "s", "seed": seed, "cycle": cycle, "n_labeled": 10 * (cycle + 1),
                   "test_acc": 0.5 + 0.1 * cycle, "train_seconds": scale * (cycle + 1),
                   "select_seconds": 0.0 if cycle == 2 else scale * 0.1 * (cycle + 1)}
            if memory:
                row.update(select_peak_mb=math.nan if cycle == 2 else 500 + 10 * cycle + seed,
                           select_rise_mb=math.nan if cycle == 2 else 20.0 * (cycle + 1) * scale,
                           select_memory="" if cycle == 2 else "rss")
            data.append(row)
    return pd.DataFrame(data)


def test_cost_table_by_hand():
    row = cost.cost_table(rows()).iloc[0]
    # selecting cycles 0 and 1 of two seeds: 0.1, 0.2 and 0.2, 0.4 seconds
    assert (row["n_seeds"], row["n_selections"]) == (2, 4)
    assert row["select_mean_s"] == pytest.approx((0.1 + 0.2 + 0.2 + 0.4) / 4)
    assert row["select_max_s"] == pytest.approx(0.4)
    assert row["train_mean_s"] == pytest.approx((1 + 2 + 3 + 2 + 4 + 6) / 6)
    assert row["train_total_s"] == pytest.approx((6 + 12) / 2)  # per job, then the mean over seeds
    assert row["peak_mb"] == 511 and row["rise_mb"] == pytest.approx(80.0)
    assert row["memory"] == "rss"


def test_an_old_folder_without_the_memory_columns_reports_them_missing():
    row = cost.cost_table(rows(memory=False)).iloc[0]
    assert math.isnan(row["peak_mb"]) and math.isnan(row["rise_mb"]) and row["memory"] == ""
    assert row["select_mean_s"] == pytest.approx(0.225)  # the timings it holds still count
    bare = rows(memory=False).drop(columns=["train_seconds", "select_seconds"])
    assert math.isnan(cost.cost_table(bare).iloc[0]["select_mean_s"])
    assert cost.compute_curves(bare).empty


def test_compute_spent_by_each_evaluation():
    curve = cost.compute_curves(rows()).set_index("cycle")
    # seed 0: cycle 2 is evaluated after training 1 + 2 + 3 s and selecting 0.1 + 0.2 s; seed 1 twice that
    assert curve.loc[0, "compute_s"] == pytest.approx((1 + 2) / 2)
    assert curve.loc[1, "compute_s"] == pytest.approx(((1 + 0.1 + 2) + (2 + 0.2 + 4)) / 2)
    assert curve.loc[2, "compute_s"] == pytest.approx(((6 + 0.3) + (12 + 0.6)) / 2)
    assert curve["mean"].tolist() == pytest.approx([0.5, 0.6, 0.7])
    assert curve["n_labeled"].tolist() == [10, 20, 30]
