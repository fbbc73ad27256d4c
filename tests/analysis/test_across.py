"""bench.analysis.across: Holm over the settings, wins, ties and losses, Friedman's test with Nemenyi's critical
difference, and the mean AULC rank over settings, against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import across, paired
from conftest import cycles_of


def test_mean_rank_over_datasets():
    aulc_summary = pd.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2"],
        "strategy": ["A", "B", "C", "A", "B"],
        "mean": [0.8, 0.7, 0.6, 0.6, 0.7],
    })
    # d1 ranks A 1, B 2, C 3; d2 ranks B 1, A 2 (C not run there).
    table = across.mean_rank(aulc_summary)
    assert table["strategy"].tolist() == ["A", "B", "C"]
    assert table["mean_rank"].tolist() == pytest.approx([1.5, 1.5, 3.0])
    assert table["n_datasets"].tolist() == [2, 2, 1]


def test_primary_family_spans_the_settings_and_the_secondary_stays_within_one():
    a = cycles_of("a", {"good": 0.03, "meh": 0.002}, seed=1)
    b = cycles_of("b", {"good": 0.02, "meh": -0.001}, seed=2).assign(dataset="letters")
    comparisons = across.holm_across_datasets(paired.compare_to_baseline(pd.concat([a, b]), "random"))
    primary = comparisons[comparisons["family"] == paired.PRIMARY]
    p = primary["t_p"].to_numpy()
    assert len(p) == 4
    ranked = np.sort(p)
    holm_by_hand = {q: min(1.0, max((4 - k) * ranked[k] for k in range(int(np.searchsorted(ranked, q)) + 1)))
                    for q in p}
    assert primary["p_holm"].tolist() == pytest.approx([holm_by_hand[q] for q in p])
    # the secondary family is untouched: Holm over the strategy-budget pairs of one dataset only
    for dataset in ("digits", "letters"):
        alone = paired.compare_to_baseline(pd.concat([a, b]).query("dataset == @dataset"), "random")
        secondary = comparisons[(comparisons["dataset"] == dataset) & (comparisons["family"] == paired.SECONDARY)]
        expected = alone[alone["family"] == paired.SECONDARY]["p_holm"].to_numpy()
        assert secondary["p_holm"].to_numpy() == pytest.approx(expected)


def test_win_tie_loss_by_hand():
    comparisons = pd.DataFrame({
        "strategy": ["x", "x", "x", "y", "y", "y"], "baseline": "random",
        "family": [paired.PRIMARY] * 6, "t_p": [0.001, 0.001, 0.5, 0.001, math.nan, 0.2],
        "mean_diff": [0.02, -0.01, 0.01, 0.03, 0.0, -0.02],
        "significant": [True, True, False, True, False, False],
    })
    table = across.win_tie_loss(comparisons).set_index("strategy")
    assert table.loc["x", ["wins", "ties", "losses", "untested"]].tolist() == [1, 1, 1, 0]
    assert table.loc["y", ["wins", "ties", "losses", "untested"]].tolist() == [1, 1, 0, 1]


def test_friedman_matches_scipy_and_the_critical_difference_demsar_s_table():
    # mean AULC of 3 strategies in 4 settings; Demsar (2006) Table 5: q_0.05 = 2.343 for 3 classifiers
    means = {"a": [0.80, 0.70, 0.60, 0.90], "b": [0.78, 0.71, 0.55, 0.85], "c": [0.70, 0.60, 0.50, 0.80]}
    summary = pd.DataFrame([{"dataset": f"s{i}", "strategy": name, "mean": value}
                            for name, values in means.items() for i, value in enumerate(values)])
    test = across.friedman_nemenyi(summary)
    statistic, p = sps.friedmanchisquare(*means.values())
    assert (test.statistic, test.p) == pytest.approx((statistic, p))
    assert test.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    # ranks by hand: a is first in 3 settings and second in one (b leads s1)
    assert test.mean_ranks == pytest.approx({"a": 1.25, "b": 1.75, "c": 3.0})
    assert list(test.mean_ranks) == ["a", "b", "c"]
    assert across.friedman_nemenyi(summary[summary["strategy"] != "c"]) is None  # 2 strategies: undefined
    assert across.friedman_nemenyi(summary[summary["dataset"] == "s0"]) is None  # 1 setting: undefined
