"""bench.analysis.savings against hand-worked curves: the labels each seed's own curve needs (first crossing,
linear between budgets, checked with numpy's interp on the rising part), paired by seed, the interval from
scipy.stats.t, and censored seeds counted, never filled in."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import savings
from conftest import cycles_frame

LABELS = [10, 20, 30, 40]
CURVES = {
    ("random", 0): [0.50, 0.60, 0.70, 0.80],
    ("a", 0): [0.55, 0.70, 0.85, 0.90],
    ("random", 1): [0.50, 0.65, 0.75, 0.70],  # ends below its best: its target is 0.70, first reached at 25
    ("a", 1): [0.60, 0.72, 0.80, 0.85],
    ("random", 2): [0.50, 0.55, 0.60, 0.62],
    ("a", 2): [0.52, 0.60, 0.63, 0.70],
    ("random", 3): [0.50, 0.60, 0.70, 0.90],
    ("a", 3): [0.50, 0.60, 0.70, 0.80],  # never reaches random's 0.90: censored
    ("random", 4): [0.50, 0.60, 0.70, 0.80],
    ("a", 4): [0.50, 0.60],  # an unfinished job: left out
    ("a", 5): [0.50, 0.60, 0.70, 0.80],  # no baseline at this seed: nothing to pair with
}


def first_crossing(curve: list[float], target: float) -> float:
    """numpy's interp on the curve up to its first budget at or above the target (rising there), NaN if none."""
    y = np.asarray(curve)
    hits = np.flatnonzero(y >= target)
    if hits.size == 0:
        return math.nan
    k = hits[0] + 1
    return float(np.interp(target, y[:k], np.asarray(LABELS[:k], dtype=float)))


@pytest.fixture()
def cycles() -> pd.DataFrame:
    return cycles_frame(CURVES, LABELS)


def test_per_seed_labels_against_the_same_seeds_final_accuracy(cycles):
    seeds = savings.seed_savings(cycles, "random").set_index("seed")
    assert list(seeds.index) == [0, 1, 2, 3]  # seed 4 unfinished, seed 5 unpaired
    # by hand: seed 0 target 0.80, a crosses between 20 (0.70) and 30 (0.85): 20 + 10 * 0.10 / 0.15
    assert seeds.loc[0, "target_acc"] == 0.80
    assert seeds.loc[0, "labels_needed"] == pytest.approx(20 + 10 * 0.10 / 0.15)
    assert seeds.loc[0, "baseline_labels"] == pytest.approx(40)
    assert seeds.loc[1, "target_acc"] == 0.70 and seeds.loc[1, "baseline_labels"] == pytest.approx(25)
    assert seeds.loc[1, "labels_needed"] == pytest.approx(10 + 10 * 0.10 / 0.12)
    assert seeds.loc[2, "labels_needed"] == pytest.approx(20 + 10 * 0.02 / 0.03)
    for seed in range(3):  # and numpy's interp, on each curve's rising part, agrees
        target = CURVES[("random", seed)][-1]
        assert seeds.loc[seed, "labels_needed"] == pytest.approx(first_crossing(CURVES[("a", seed)], target))
        assert seeds.loc[seed, "baseline_labels"] == pytest.approx(first_crossing(CURVES[("random", seed)], target))
        assert seeds.loc[seed, "saving"] == pytest.approx(seeds.loc[seed, "baseline_labels"]
                                                          - seeds.loc[seed, "labels_needed"])
    assert not seeds.loc[3, "reached"] and math.isnan(seeds.loc[3, "labels_needed"])  # censored, not invented
    assert math.isnan(seeds.loc[3, "saving"]) and seeds.loc[3, "baseline_reached"]


def test_the_mean_saving_and_its_interval_over_the_uncensored_seeds(cycles):
    _, summary = savings.labels_saved(cycles, "random")
    row = summary.set_index("strategy").loc["a"]
    diffs = np.array([40 - first_crossing(CURVES[("a", 0)], 0.80), 25 - first_crossing(CURVES[("a", 1)], 0.70),
                      40 - first_crossing(CURVES[("a", 2)], 0.62)])
    low, high = sps.t.interval(0.95, df=2, loc=diffs.mean(), scale=sps.sem(diffs))
    assert (row["n_seeds"], row["n_paired"], row["n_censored"], row["n_baseline_censored"]) == (4, 3, 1, 0)
    assert row["mean_saving"] == pytest.approx(diffs.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row["percent_saved"] == pytest.approx(100 * diffs.mean() / np.mean([40, 25, 40]))
    assert row["censored_bound"] == pytest.approx(40 - 40)  # seed 3 saves fewer than 0 labels
    assert row["target"] == savings.FINAL


def test_a_fixed_target_can_censor_either_side(cycles):
    seeds, summary = savings.labels_saved(cycles, "random", target=0.75)
    fixed = seeds[seeds["target"] == "75%"].set_index("seed")
    assert (fixed["target_acc"] == 0.75).all()
    for seed in (0, 1, 3):
        expected = first_crossing(CURVES[("random", seed)], 0.75) - first_crossing(CURVES[("a", seed)], 0.75)
        assert fixed.loc[seed, "saving"] == pytest.approx(expected)
    assert fixed.loc[3, "saving"] == pytest.approx(32.5 - 35)  # by hand: random 30 + 10 * .05 / .2, a 30 + 10 * .5
    assert not fixed.loc[2, "reached"] and not fixed.loc[2, "baseline_reached"]  # neither reaches 75%
    rows = summary[summary["strategy"] == "a"]
    assert list(rows["target"]) == [savings.FINAL, "75%"]  # the baseline's final accuracy first
    row = rows.iloc[1]
    assert (row["n_paired"], row["n_censored"], row["n_baseline_censored"], row["n_neither"]) == (3, 0, 0, 1)
    diffs = fixed.loc[[0, 1, 3], "saving"].to_numpy()
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        sps.t.interval(0.95, df=2, loc=diffs.mean(), scale=sps.sem(diffs)))


def test_the_baseline_alone_censored_and_too_few_pairs():
    cycles = cycles_frame({("random", 0): [0.5, 0.6], ("a", 0): [0.5, 0.9],
                           ("random", 1): [0.5, 0.95], ("a", 1): [0.5, 0.96]}, [10, 20])
    _, summary = savings.labels_saved(cycles, "random", target=0.9)
    row = summary[summary["target"] == "90%"].iloc[0]
    assert (row["n_paired"], row["n_baseline_censored"]) == (1, 1)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])  # one pair: no interval
    assert row["mean_saving"] == pytest.approx((10 + 10 * 0.40 / 0.45) - (10 + 10 * 0.40 / 0.46))


def test_without_the_baseline_there_is_nothing_to_save():
    seeds, summary = savings.labels_saved(cycles_frame({("a", 0): [0.5, 0.6]}, [10, 20]), "random")
    assert seeds.empty and summary.empty and list(summary.columns) == savings.SUMMARY_COLUMNS
