"""bench.analysis.curves against independent computations: intervals and summaries over seeds, the area under the
learning curve, the labels a curve needs to reach an accuracy, and the direct t-test and quantile against scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import curves
from conftest import cycles_frame


def test_t_interval_matches_scipy():
    x = np.array([0.61, 0.64, 0.60, 0.66, 0.63])
    expected = sps.t.interval(0.95, df=4, loc=x.mean(), scale=sps.sem(x))
    assert curves.t_interval(x) == pytest.approx(expected, rel=1e-12)
    assert all(math.isnan(v) for v in curves.t_interval([0.5]))


def test_summarize_cycles_per_strategy_and_cycle():
    cycles = cycles_frame(
        {("a", 0): [0.50, 0.60], ("a", 1): [0.54, 0.70], ("a", 2): [0.49, 0.65], ("b", 0): [0.40, 0.45]},
        labels=[100, 200],
    )
    summary = curves.summarize_cycles(cycles).set_index(["strategy", "cycle"])
    row = summary.loc[("a", 1)]
    x = np.array([0.60, 0.70, 0.65])
    half = sps.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert row["n_labeled"] == 200 and row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(0.65)
    assert row["std"] == pytest.approx(0.05)  # sqrt(((-.05)^2 + .05^2 + 0) / 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.65 - half, 0.65 + half))
    single = summary.loc[("b", 0)]
    assert single["n_seeds"] == 1 and math.isnan(single["std"]) and math.isnan(single["ci_low"])


def test_aulc_by_hand():
    # Trapezoids: (0.5 + 0.7) / 2 * 100 = 60 and (0.7 + 0.8) / 2 * 200 = 150; label range 400 - 100 = 300.
    expected = (60 + 150) / 300
    assert curves.aulc([100, 200, 400], [0.5, 0.7, 0.8]) == pytest.approx(expected)
    assert curves.aulc([400, 100, 200], [0.8, 0.5, 0.7]) == pytest.approx(expected)  # order does not matter
    assert curves.aulc([100], [0.6]) == pytest.approx(0.6)


def test_incomplete_curves_are_flagged_and_left_out_of_the_summary():
    cycles = cycles_frame(
        {("a", 0): [0.5, 0.7, 0.8], ("a", 1): [0.5, 0.6, 0.9], ("a", 2): [0.5, 0.9]},
        labels=[100, 200, 400],
    )
    seeds = curves.aulc_per_seed(cycles).set_index("seed")
    assert list(seeds["complete"]) == [True, True, False]
    assert seeds.loc[1, "aulc"] == pytest.approx(((0.5 + 0.6) / 2 * 100 + (0.6 + 0.9) / 2 * 200) / 300)
    summary = curves.summarize_aulc(curves.aulc_per_seed(cycles))
    assert summary["n_seeds"].tolist() == [2]
    assert summary["mean"].iloc[0] == pytest.approx((0.7 + (55 + 150) / 300) / 2)


def test_labels_to_reach_by_hand():
    labels = [100, 200, 300]
    # fast crosses 0.70 between (100, 0.55) and (200, 0.75): 100 + (0.70 - 0.55) / 0.20 * 100 = 175
    assert curves.labels_to_reach(labels, [0.55, 0.75, 0.80], 0.70) == pytest.approx(175)
    assert curves.labels_to_reach(labels, [0.50, 0.60, 0.70], 0.70) == pytest.approx(300)  # reached at the end
    assert math.isnan(curves.labels_to_reach(labels, [0.50, 0.60, 0.65], 0.70))  # never: NaN, not a guess
    assert curves.labels_to_reach(labels, [0.72, 0.74, 0.76], 0.70) == pytest.approx(100)  # above from the start
    # the first crossing, on a curve that rises past the target, falls back and rises again
    assert curves.labels_to_reach(labels, [0.60, 0.80, 0.65], 0.70) == pytest.approx(150)
    assert curves.labels_to_reach([300, 100, 200], [0.80, 0.60, 0.80], 0.70) == pytest.approx(150)  # sorted first


def test_the_direct_t_test_and_quantile_are_scipys():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        x = rng.normal(rng.normal(0, 0.02), rng.uniform(1e-4, 0.05), n)
        mu = float(rng.choice([0.0, -0.01, 0.01]))
        for alternative in ("two-sided", "greater", "less"):
            expected = sps.ttest_1samp(x, mu, alternative=alternative).pvalue
            assert math.isclose(curves.t_test_p(x, mu, alternative), expected, rel_tol=1e-9, abs_tol=1e-300)
        q = float(rng.uniform(0.5, 0.9999))
        assert math.isclose(curves.t_quantile(q, n - 1), sps.t.ppf(q, n - 1), rel_tol=1e-10)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a NaN value; equal values, which may not cancel
        warnings.simplefilter("ignore", RuntimeWarning)
        for x in ([0.1, np.nan, 0.2], [0.3, 0.3, 0.3], [0.1, 0.1, 0.1], [0.0, 0.0]):
            assert np.isclose(curves.t_test_p(np.array(x)), sps.ttest_1samp(x, 0.0).pvalue, equal_nan=True), x
