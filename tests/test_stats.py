"""bench.stats against independent computations: scipy called directly, and examples worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import stats


def cycles_frame(curves: dict[tuple[str, int], list[float]], labels: list[int], dataset: str = "d") -> pd.DataFrame:
    """Rows of cycles.parquet from {(strategy, seed): accuracy per cycle}."""
    rows = [
        {"run": "r", "dataset": dataset, "model": "m", "strategy": strategy, "seed": seed, "cycle": cycle,
         "n_labeled": labels[cycle], "test_acc": acc, "ll_spearman": math.nan}
        for (strategy, seed), accs in curves.items()
        for cycle, acc in enumerate(accs)
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- intervals and summaries


def test_t_interval_matches_scipy():
    x = np.array([0.61, 0.64, 0.60, 0.66, 0.63])
    expected = sps.t.interval(0.95, df=4, loc=x.mean(), scale=sps.sem(x))
    assert stats.t_interval(x) == pytest.approx(expected, rel=1e-12)
    assert all(math.isnan(v) for v in stats.t_interval([0.5]))


def test_summarize_cycles_per_strategy_and_cycle():
    cycles = cycles_frame(
        {("a", 0): [0.50, 0.60], ("a", 1): [0.54, 0.70], ("a", 2): [0.49, 0.65], ("b", 0): [0.40, 0.45]},
        labels=[100, 200],
    )
    summary = stats.summarize_cycles(cycles).set_index(["strategy", "cycle"])
    row = summary.loc[("a", 1)]
    x = np.array([0.60, 0.70, 0.65])
    half = sps.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert row["n_labeled"] == 200 and row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(0.65)
    assert row["std"] == pytest.approx(0.05)  # sqrt(((-.05)^2 + .05^2 + 0) / 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.65 - half, 0.65 + half))
    single = summary.loc[("b", 0)]
    assert single["n_seeds"] == 1 and math.isnan(single["std"]) and math.isnan(single["ci_low"])


# ---------------------------------------------------------------- AULC


def test_aulc_by_hand():
    # Trapezoids: (0.5 + 0.7) / 2 * 100 = 60 and (0.7 + 0.8) / 2 * 200 = 150; label range 400 - 100 = 300.
    expected = (60 + 150) / 300
    assert stats.aulc([100, 200, 400], [0.5, 0.7, 0.8]) == pytest.approx(expected)
    assert stats.aulc([400, 100, 200], [0.8, 0.5, 0.7]) == pytest.approx(expected)  # order does not matter
    assert stats.aulc([100], [0.6]) == pytest.approx(0.6)


def test_incomplete_curves_are_flagged_and_left_out_of_the_summary():
    cycles = cycles_frame(
        {("a", 0): [0.5, 0.7, 0.8], ("a", 1): [0.5, 0.6, 0.9], ("a", 2): [0.5, 0.9]},
        labels=[100, 200, 400],
    )
    seeds = stats.aulc_per_seed(cycles).set_index("seed")
    assert list(seeds["complete"]) == [True, True, False]
    assert seeds.loc[1, "aulc"] == pytest.approx(((0.5 + 0.6) / 2 * 100 + (0.6 + 0.9) / 2 * 200) / 300)
    summary = stats.summarize_aulc(stats.aulc_per_seed(cycles))
    assert summary["n_seeds"].tolist() == [2]
    assert summary["mean"].iloc[0] == pytest.approx((0.7 + (55 + 150) / 300) / 2)


# ---------------------------------------------------------------- paired tests and Holm


def test_holm_by_hand():
    # Sorted: 0.005, 0.01, 0.03, 0.04 with multipliers 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04;
    # the running maximum lifts the last to 0.06. Back in input order:
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is not in the family (m = 2): 0.01 * 2 = 0.02, 0.04 * 1 = 0.04.
    adjusted = stats.holm([0.01, math.nan, 0.04])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04]) and math.isnan(adjusted[1])
    # 0.5 * 2 = 1.0, then max(1.0, 0.6) = 1.0; capped at 1.
    assert stats.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_paired_test_matches_scipy():
    a = np.array([0.71, 0.69, 0.74, 0.70, 0.73, 0.72, 0.68])
    b = np.array([0.68, 0.69, 0.70, 0.66, 0.71, 0.67, 0.67])
    test = stats.paired_test(a, b)
    d = a - b
    half = sps.t.ppf(0.975, 6) * d.std(ddof=1) / math.sqrt(7)
    assert test.n_pairs == 7
    assert test.mean_diff == pytest.approx(d.mean())
    assert (test.ci_low, test.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert test.t_p == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)
    # one zero difference: scipy drops it and tests the 6 others
    assert test.wilcoxon_p == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12)


def test_wilcoxon_only_with_six_nonzero_differences():
    a = np.array([0.70, 0.72, 0.75, 0.71, 0.74, 0.73])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert stats.paired_test(a, b).wilcoxon_p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    five = stats.paired_test(a[:5], b[:5])
    assert math.isnan(five.wilcoxon_p) and "6" in five.wilcoxon_note
    assert five.t_p == pytest.approx(sps.ttest_rel(a[:5], b[:5]).pvalue)


def test_equal_differences():
    a = np.array([0.6, 0.7, 0.8, 0.9])
    zero = stats.paired_test(a, a)
    assert zero.t_p == 1.0 and zero.mean_diff == 0.0 and zero.t_note
    # A constant shift of 2 points: exact two-sided sign-test p = 2 / 2**n.
    shifted = stats.paired_test(a + 0.02, a)
    assert shifted.t_p == pytest.approx(2 / 2**4) and shifted.mean_diff == pytest.approx(0.02)
    assert stats.paired_test(np.r_[a, 0.5, 0.4] + 0.02, np.r_[a, 0.5, 0.4]).t_p == pytest.approx(2 / 2**6)
    assert math.isnan(stats.paired_test([0.6], [0.5]).t_p)


def test_compare_to_baseline_pairs_on_common_seeds_and_applies_holm():
    base = {0: [0.50, 0.60], 1: [0.52, 0.63], 2: [0.49, 0.58], 3: [0.55, 0.66], 4: [0.51, 0.61]}
    gain = {0: [0.03, 0.04], 1: [0.01, 0.01], 2: [0.02, 0.03], 3: [0.00, 0.02]}  # seed 4 failed for "al"
    curves = {("random", s): acc for s, acc in base.items()}
    curves |= {("al", s): [x + g for x, g in zip(base[s], gain[s], strict=True)] for s in gain}
    table = stats.compare_to_baseline(cycles_frame(curves, labels=[100, 300]))

    per_cycle = table[table["metric"] == "test_acc"].set_index("cycle")
    for cycle in (0, 1):
        a = np.array([base[s][cycle] + gain[s][cycle] for s in range(4)])
        b = np.array([base[s][cycle] for s in range(4)])
        assert per_cycle.loc[cycle, "t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
        assert per_cycle.loc[cycle, "n_pairs"] == 4 and per_cycle.loc[cycle, "unpaired_seeds"] == "4"
    aulc_row = table[table["metric"] == "aulc"].iloc[0]
    a = np.array([((base[s][0] + gain[s][0]) + (base[s][1] + gain[s][1])) / 2 for s in range(4)])
    b = np.array([(base[s][0] + base[s][1]) / 2 for s in range(4)])
    assert aulc_row["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert math.isnan(aulc_row["wilcoxon_p"])  # 4 pairs: an exact test cannot reach 0.05

    # Holm over the family of 3 t-tests, written out independently of bench.stats.holm:
    raw = table["t_p"].to_numpy()
    order = np.argsort(raw)
    expected = np.empty(3)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        expected[index] = running
    assert table["p_holm"].to_numpy() == pytest.approx(expected)
    assert table["significant"].tolist() == list(expected < 0.05)
    # These gains were chosen so that cycle 1 and the AULC pass at 0.05 alone but not after Holm.
    assert (raw[1:] < 0.05).all() and not table["significant"].any()


def test_compare_to_baseline_without_baseline_is_empty():
    table = stats.compare_to_baseline(cycles_frame({("a", 0): [0.5], ("b", 0): [0.6]}, [100]), "random")
    assert table.empty and list(table.columns) == stats.COMPARISON_COLUMNS


# ---------------------------------------------------------------- penalty matrix


def test_penalty_matrix_by_hand():
    base = np.array([0.50, 0.55, 0.60, 0.52])  # one value per seed 0..3
    lift_a = np.array([0.05, 0.06, 0.04, 0.05])  # A over B: consistent, clearly significant
    lift_b = np.array([0.03, 0.04, 0.03, 0.035])
    wobble = np.array([0.01, -0.01, 0.02, -0.02])  # mean zero: never significant
    acc = {  # strategy -> [cycle 0, cycle 1, cycle 2] arrays over seeds
        "A": [base, base + lift_a, base + lift_a],
        "B": [base, base, base + lift_b],
        "C": [base, base + wobble, base],
    }
    # Preconditions worked with scipy: which pairs are significantly different, cycle by cycle.
    assert sps.ttest_rel(acc["A"][1], acc["B"][1]).pvalue < 0.05
    assert sps.ttest_rel(acc["A"][1], acc["C"][1]).pvalue < 0.05
    assert sps.ttest_rel(acc["B"][1], acc["C"][1]).pvalue > 0.05
    assert sps.ttest_rel(acc["A"][2], acc["B"][2]).pvalue < 0.05  # A - B = 0.02, 0.02, 0.01, 0.015
    assert sps.ttest_rel(acc["A"][2], acc["C"][2]).pvalue < 0.05
    assert sps.ttest_rel(acc["B"][2], acc["C"][2]).pvalue < 0.05
    curves = {(name, seed): [acc[name][c][seed] for c in range(3)] for name in acc for seed in range(4)}
    matrix = stats.penalty_matrix(cycles_frame(curves, labels=[100, 200, 300]))

    # Cycle 0: all equal, no wins. Cycle 1: A beats B and C. Cycle 2: A beats B and C, B beats C.
    expected = pd.DataFrame(
        [[math.nan, 2 / 3, 2 / 3], [0.0, math.nan, 1 / 3], [0.0, 0.0, math.nan]],
        index=["A", "B", "C"], columns=["A", "B", "C"],
    )
    np.testing.assert_allclose(matrix.to_numpy(float), expected.to_numpy(), equal_nan=True)
    # Column sums: how often each is beaten (A 0, B 2/3, C 2/3 + 1/3 = 1), lowest first.
    ranking = stats.penalty_ranking(matrix)
    assert list(ranking.index) == ["A", "B", "C"]
    assert ranking.to_numpy() == pytest.approx([0.0, 2 / 3, 1.0])


def test_penalty_share_counts_only_cycles_with_two_paired_seeds():
    curves = {("A", s): [0.6 + 0.01 * s, 0.9] for s in range(3)} | {("B", s): [0.5 + 0.011 * s] for s in range(3)}
    curves[("B", 0)] = [0.5, 0.6]  # cycle 1: B has one seed only, so it is not a tested cycle
    matrix = stats.penalty_matrix(cycles_frame(curves, labels=[100, 200]))
    assert sps.ttest_rel([0.6, 0.61, 0.62], [0.5, 0.511, 0.522]).pvalue < 0.05
    assert matrix.loc["A", "B"] == 1.0 and matrix.loc["B", "A"] == 0.0  # 1 win / 1 tested cycle


# ---------------------------------------------------------------- label efficiency


def test_label_efficiency_by_hand():
    means = {  # mean curves at 100, 200, 300 labels; two seeds at mean +- 0.01
        "random": [0.50, 0.60, 0.70],
        "fast": [0.55, 0.75, 0.80],
        "slow": [0.50, 0.60, 0.65],
        "instant": [0.72, 0.74, 0.76],
    }
    curves = {(n, s): [m + (0.01 if s else -0.01) for m in curve] for n, curve in means.items() for s in (0, 1)}
    summary = stats.summarize_cycles(cycles_frame(curves, labels=[100, 200, 300]))
    table = stats.label_efficiency(summary, "random").set_index("strategy")
    # Target: random's final mean, 0.70, which random itself first reaches at 300 labels.
    # fast crosses 0.70 between (100, 0.55) and (200, 0.75): 100 + (0.70 - 0.55) / 0.20 * 100 = 175,
    # saving 300 - 175 = 125 labels, 125 / 300 = 41.7%.
    assert table.loc["fast", "labels_needed"] == pytest.approx(175)
    assert table.loc["fast", "labels_saved"] == pytest.approx(125)
    assert table.loc["fast", "percent_saved"] == pytest.approx(100 * 125 / 300)
    assert table.loc["random", "labels_needed"] == pytest.approx(300)
    assert table.loc["random", "labels_saved"] == pytest.approx(0)
    assert not table.loc["slow", "reached"] and math.isnan(table.loc["slow", "labels_needed"])
    assert table.loc["instant", "labels_needed"] == pytest.approx(100)  # already above at the first cycle
    assert table["target_acc"].tolist() == pytest.approx([0.70] * 4)


# ---------------------------------------------------------------- across datasets and power


def test_mean_rank_over_datasets():
    aulc_summary = pd.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2"],
        "strategy": ["A", "B", "C", "A", "B"],
        "mean": [0.8, 0.7, 0.6, 0.6, 0.7],
    })
    # d1 ranks A 1, B 2, C 3; d2 ranks B 1, A 2 (C not run there).
    table = stats.mean_rank(aulc_summary)
    assert table["strategy"].tolist() == ["A", "B", "C"]
    assert table["mean_rank"].tolist() == pytest.approx([1.5, 1.5, 3.0])
    assert table["n_datasets"].tolist() == [2, 2, 1]


def test_min_detectable_difference_pools_per_cycle_spread():
    base = np.array([0.50, 0.52, 0.49, 0.55, 0.51])
    d0 = np.array([0.00, 0.00, 0.00, 0.00, 0.00])  # cycle 0: identical, left out of the pool
    d1 = np.array([0.02, 0.01, 0.04, -0.01, 0.03])
    d2 = np.array([0.05, 0.00, 0.02, 0.03, 0.06])
    curves = {("random", s): [base[s], base[s] + 0.1, base[s] + 0.2] for s in range(5)}
    curves |= {("al", s): [base[s] + d0[s], base[s] + 0.1 + d1[s], base[s] + 0.2 + d2[s]] for s in range(5)}
    comparisons = stats.compare_to_baseline(cycles_frame(curves, labels=[100, 200, 300]))
    mdd = stats.min_detectable_difference(comparisons).iloc[0]
    pooled_sd = math.sqrt((np.var(d1, ddof=1) * 4 + np.var(d2, ddof=1) * 4) / 8)
    assert mdd["n_pairs"] == 5
    assert mdd["pooled_sd"] == pytest.approx(pooled_sd)
    assert mdd["mdd"] == pytest.approx(sps.t.ppf(0.975, 4) * pooled_sd / math.sqrt(5))
