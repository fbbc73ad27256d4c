"""bench.analysis.curves against independent computations: scipy called directly, and examples worked by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import across, curves, paired, penalty, planning


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


# ---------------------------------------------------------------- AULC


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


# ---------------------------------------------------------------- paired tests and Holm


def test_holm_by_hand():
    # Sorted: 0.005, 0.01, 0.03, 0.04 with multipliers 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04;
    # the running maximum lifts the last to 0.06. Back in input order:
    assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is not in the family (m = 2): 0.01 * 2 = 0.02, 0.04 * 1 = 0.04.
    adjusted = paired.holm([0.01, math.nan, 0.04])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04]) and math.isnan(adjusted[1])
    # 0.5 * 2 = 1.0, then max(1.0, 0.6) = 1.0; capped at 1.
    assert paired.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_paired_test_matches_scipy():
    a = np.array([0.71, 0.69, 0.74, 0.70, 0.73, 0.72, 0.68])
    b = np.array([0.68, 0.69, 0.70, 0.66, 0.71, 0.67, 0.67])
    test = paired.paired_test(a, b)
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
    assert paired.paired_test(a, b).wilcoxon_p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    five = paired.paired_test(a[:5], b[:5])
    assert math.isnan(five.wilcoxon_p) and "6" in five.wilcoxon_note
    assert five.t_p == pytest.approx(sps.ttest_rel(a[:5], b[:5]).pvalue)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy on constant input
def test_equal_differences():
    a = np.array([0.6, 0.7, 0.8, 0.9])
    zero = paired.paired_test(a, a)
    assert zero.t_p == 1.0 and zero.mean_diff == 0.0 and zero.t_note
    # A constant shift of 2 points: t = +inf; scipy says p = 0 where the floats cancel exactly, and so do we
    # wherever they do not.
    exact = paired.paired_test(np.full(5, 0.52), np.full(5, 0.5))
    assert sps.ttest_rel(np.full(5, 0.52), np.full(5, 0.5)).pvalue == 0.0 and exact.t_p == 0.0
    shifted = paired.paired_test(a + 0.02, a)
    assert shifted.t_p == 0.0 and shifted.mean_diff == pytest.approx(0.02) and "infinite" in shifted.t_note
    assert math.isnan(paired.paired_test([0.6], [0.5]).t_p)


def _p_of(diff: np.ndarray) -> float:
    return paired.paired_test(0.5 + diff, np.full(diff.size, 0.5)).t_p


def test_degenerate_rule_is_monotone():
    # The example: [2,2,2,2,2]/360 was "not significant" (0.0625) while [2,2,2,2,3]/360 gave 0.0004.
    consistent = np.array([2, 2, 2, 2, 2]) / 360
    weaker = np.array([2, 2, 2, 2, 3]) / 360
    assert _p_of(consistent) <= _p_of(weaker)
    assert _p_of(weaker) == pytest.approx(sps.ttest_1samp(weaker, 0).pvalue, rel=1e-6)
    rng = np.random.default_rng(0)
    cases = [np.full(n, c) for n in (2, 3, 5, 8) for c in (0.001, 0.02, -0.03)]
    for shift in cases:
        p_constant = _p_of(shift)
        for scale in (0.1, 0.5, 1.0, 3.0):
            noisy = shift + scale * abs(shift[0]) * rng.normal(size=shift.size)
            noisy = np.append(noisy[:-1], shift[-1] + 0.01 * abs(shift[0]))  # never constant
            p_noisy = _p_of(noisy)
            assert p_noisy == pytest.approx(sps.ttest_1samp(noisy, 0).pvalue, rel=1e-6)  # scipy where defined
            if np.sign(noisy.mean()) == np.sign(shift[0]):
                assert p_constant <= p_noisy
    for scale in (0.5, 2.0):  # scaling changes nothing: the t statistic is scale-free
        assert _p_of(scale * weaker) == pytest.approx(_p_of(weaker), rel=1e-6)
        assert _p_of(scale * consistent) == 0.0
    assert _p_of(np.zeros(5)) == 1.0  # nothing seen
    assert all(_p_of(d) <= 1.0 for d in cases)


def test_compare_to_baseline_pairs_on_common_seeds_and_applies_holm():
    base = {0: [0.50, 0.60], 1: [0.52, 0.63], 2: [0.49, 0.58], 3: [0.55, 0.66], 4: [0.51, 0.61]}
    gain = {0: [0.03, 0.04], 1: [0.01, 0.01], 2: [0.02, 0.03], 3: [0.00, 0.02]}  # seed 4 failed for "al"
    curves = {("random", s): acc for s, acc in base.items()}
    curves |= {("al", s): [x + g for x, g in zip(base[s], gain[s], strict=True)] for s in gain}
    table = paired.compare_to_baseline(cycles_frame(curves, labels=[100, 300]))

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

    # Primary family: the AULC of one strategy, so Holm leaves it as it is.
    assert aulc_row["family"] == "primary" and aulc_row["p_holm"] == pytest.approx(aulc_row["t_p"])
    # Secondary family: the 2 budgets (cycle 0 differs, so it stays), Holm written out by hand.
    p0, p1 = per_cycle.loc[0, "t_p"], per_cycle.loc[1, "t_p"]
    low, high = sorted([p0, p1])
    expected = {low: min(1.0, 2 * low), high: min(1.0, max(2 * low, high))}
    assert (per_cycle["family"] == "secondary").all()
    assert per_cycle["p_holm"].tolist() == pytest.approx([expected[p0], expected[p1]])
    assert table["significant"].tolist() == (table["p_holm"] < 0.05).tolist()


def test_primary_and_secondary_families_by_hand():
    # 3 strategies against random, 4 seeds, 3 budgets. Budget 0 is identical for every strategy (left out);
    # learning-loss-like "ll" differs at budget 0 in the second table, which then keeps it.
    labels = [10, 20, 30]
    base = {0: [0.50, 0.60, 0.70], 1: [0.52, 0.63, 0.71], 2: [0.49, 0.58, 0.69], 3: [0.55, 0.66, 0.72]}
    gains = {  # strategy -> seed -> gain at budgets 20 and 30
        "a": {0: (0.03, 0.02), 1: (0.02, 0.03), 2: (0.04, 0.02), 3: (0.03, 0.025)},
        "b": {0: (0.01, -0.01), 1: (0.00, 0.01), 2: (0.02, 0.00), 3: (-0.01, 0.005)},
        "c": {0: (-0.02, -0.03), 1: (-0.03, -0.02), 2: (-0.01, -0.04), 3: (-0.02, -0.03)},
    }
    curves = {("random", s): acc for s, acc in base.items()}
    curves |= {(n, s): [base[s][0], base[s][1] + g[0], base[s][2] + g[1]] for n, per in gains.items()
               for s, g in per.items()}
    table = paired.compare_to_baseline(cycles_frame(curves, labels))

    def holm_by_hand(p: list[float]) -> list[float]:
        order = sorted(range(len(p)), key=lambda k: p[k])
        out, running = [0.0] * len(p), 0.0
        for rank, k in enumerate(order):
            running = max(running, min(1.0, (len(p) - rank) * p[k]))
            out[k] = running
        return out

    names = ["a", "b", "c"]
    aulc_p = []  # primary: Holm over 3 strategies
    for n in names:
        # AULC of [x0, x1, x2] over 10, 20, 30 labels: ((x0 + x1) / 2 * 10 + (x1 + x2) / 2 * 10) / 20
        diffs = [(gains[n][s][0] * 2 + gains[n][s][1]) / 4 for s in range(4)]
        aulc_p.append(sps.ttest_1samp(diffs, 0).pvalue)
    budget_p = [sps.ttest_1samp([gains[n][s][b] for s in range(4)], 0).pvalue for n in names for b in (0, 1)]
    primary = table[table["metric"] == "aulc"].set_index("strategy").loc[names]
    secondary = table[(table["metric"] == "test_acc") & (table["cycle"] > 0)].sort_values(["strategy", "cycle"])
    assert primary["t_p"].tolist() == pytest.approx(aulc_p)
    assert primary["p_holm"].tolist() == pytest.approx(holm_by_hand(aulc_p))  # m = 3
    assert secondary["p_holm"].tolist() == pytest.approx(holm_by_hand(budget_p))  # m = 6, budget 0 left out
    cycle0 = table[table["cycle"] == 0]
    assert (cycle0["family"] == "left out").all() and cycle0["p_holm"].isna().all()
    assert not cycle0["significant"].any()
    # Worked by hand: in the primary family a has the 2nd smallest of 3 p-values (c's is smaller), so its
    # Holm p is 2 x its raw p; in the secondary family a's budget 30 has the smallest of 6, so 6 x raw p.
    assert aulc_p[2] < aulc_p[0] < aulc_p[1]
    assert primary.loc["a", "p_holm"] == pytest.approx(2 * aulc_p[0])
    assert min(budget_p) == budget_p[1]  # strategy a at budget 30
    assert secondary["p_holm"].iloc[1] == pytest.approx(6 * budget_p[1])

    # A strategy that changes the backbone at cycle 0 keeps budget 0 in the family for everyone (m = 9).
    curves[("c", 0)] = [base[0][0] - 0.05, *curves[("c", 0)][1:]]
    kept = paired.compare_to_baseline(cycles_frame(curves, labels))
    assert (kept.loc[kept["metric"] == "test_acc", "family"] == "secondary").all()
    per_budget = kept[kept["metric"] == "test_acc"]
    assert per_budget.loc[per_budget["strategy"] != "c", "cycle"].eq(0).sum() == 2  # a and b at 0: p = 1, kept
    assert per_budget["p_holm"].tolist() == pytest.approx(holm_by_hand(per_budget["t_p"].tolist()))  # m = 9


def test_compare_to_baseline_without_baseline_is_empty():
    table = paired.compare_to_baseline(cycles_frame({("a", 0): [0.5], ("b", 0): [0.6]}, [100]), "random")
    assert table.empty and list(table.columns) == paired.COMPARISON_COLUMNS


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
    matrix = penalty.penalty_matrix(cycles_frame(curves, labels=[100, 200, 300]))

    # Cycle 0: all equal, no wins. Cycle 1: A beats B and C. Cycle 2: A beats B and C, B beats C.
    expected = pd.DataFrame(
        [[math.nan, 2 / 3, 2 / 3], [0.0, math.nan, 1 / 3], [0.0, 0.0, math.nan]],
        index=["A", "B", "C"], columns=["A", "B", "C"],
    )
    np.testing.assert_allclose(matrix.to_numpy(float), expected.to_numpy(), equal_nan=True)
    # Column sums: how often each is beaten (A 0, B 2/3, C 2/3 + 1/3 = 1), lowest first.
    ranking = penalty.penalty_ranking(matrix)
    assert list(ranking.index) == ["A", "B", "C"]
    assert ranking.to_numpy() == pytest.approx([0.0, 2 / 3, 1.0])


def test_penalty_share_is_over_checkpoints_and_needs_two_paired_seeds():
    curves = {("A", s): [0.6 + 0.01 * s, 0.9] for s in range(3)} | {("B", s): [0.5 + 0.011 * s] for s in range(3)}
    curves[("B", 0)] = [0.5, 0.6]  # at 200 labels B has one seed only: the checkpoint adds nothing
    matrix = penalty.penalty_matrix(cycles_frame(curves, labels=[100, 200]))
    assert sps.ttest_1samp([0.1, 0.099, 0.098], 0).pvalue < 0.05
    assert matrix.loc["A", "B"] == 0.5 and matrix.loc["B", "A"] == 0.0  # 1 win / 2 checkpoints


def badge_reference(table: pd.DataFrame, baseline: str) -> tuple[list[float], pd.DataFrame]:
    """BADGE's aggregation rules (scripts/agg_results.py, plot_matrix) written out again, independently of
    bench.analysis.curves, in the script's own orientation: it counts alg1 - alg2 < 0 against alg1 and plots the
    transpose, so the plot reads "row beats column"."""
    sizes = sorted(table["n_labeled"].unique())
    n0, step, top = sizes[0], sizes[1] - sizes[0], sizes[-1]
    means = table[table["strategy"] == baseline].groupby("n_labeled")["test_acc"].mean()
    checkpoints = []
    for k in range(0, 64):
        size = n0 if k == 0 else n0 + 2 ** (k - 1) * step
        if size > top or means[size] > 0.99 * means[top]:
            break
        checkpoints.append(size)
    names = sorted(table["strategy"].unique())
    worse = {(i, j): 0.0 for i in names for j in names}  # script's matrix[alg1][alg2]: alg1 loses to alg2
    for size in checkpoints:
        acc = {name: table[(table["n_labeled"] == size) & (table["strategy"] == name)].set_index("seed")["test_acc"]
               for name in names}
        for i in names:
            for j in names:
                if i == j:
                    continue
                diff = (acc[i] - acc[j]).to_numpy()
                if np.all(diff == 0):
                    continue
                result = sps.ttest_1samp(diff, 0)
                if diff.mean() < 0 and result.pvalue < 0.05:
                    worse[i, j] += 1 / len(checkpoints)
    matrix = pd.DataFrame([[worse[j, i] if i != j else math.nan for j in names] for i in names],
                          index=names, columns=names)
    return checkpoints, matrix


def test_penalty_matrix_matches_badge_rules_with_the_99_percent_cut_off():
    labels = [20 + 10 * c for c in range(16)]  # initial 20, budget 10, up to 170
    rng = np.random.default_rng(3)
    lifts = {"random": 0.0, "good": 0.03, "close": 0.004, "bad": -0.02}
    curves = {}
    for seed in range(5):
        base = 0.9 * (1 - np.exp(-np.array(labels) / 20))  # [n_cycles] random passes 99% of final at 100
        shared = rng.normal(0, 0.01, len(labels))
        for name, lift in lifts.items():
            noise = rng.normal(0, 0.004, len(labels))
            accs = base + shared + (0 if name == "random" else lift * np.ones(len(labels)) + noise)
            accs[0] = base[0] + shared[0]  # cycle 0 identical for every strategy: adds nothing
            curves[(name, seed)] = list(accs)
    table = cycles_frame(curves, labels)
    checkpoints, expected = badge_reference(table, "random")
    assert checkpoints == [20, 30, 40, 60]  # 100 passes 0.99 of random's final mean; 180 is beyond 170
    assert penalty.badge_checkpoints(table, "random") == checkpoints
    matrix = penalty.penalty_matrix(table, "random")
    np.testing.assert_allclose(matrix.loc[expected.index, expected.columns].to_numpy(float),
                               expected.to_numpy(), equal_nan=True)
    assert matrix.loc["good", "random"] == pytest.approx(3 / 4)  # 3 of 4 checkpoints: cycle 0 adds nothing
    # Without the baseline there is no 99% cut-off (100 labels becomes a 5th checkpoint): the rule matters here.
    assert penalty.badge_checkpoints(table, "absent") == [20, 30, 40, 60, 100]
    assert penalty.penalty_matrix(table, "absent").loc["good", "random"] != matrix.loc["good", "random"]


# ---------------------------------------------------------------- label efficiency


def test_label_efficiency_by_hand():
    means = {  # mean curves at 100, 200, 300 labels; two seeds at mean +- 0.01
        "random": [0.50, 0.60, 0.70],
        "fast": [0.55, 0.75, 0.80],
        "slow": [0.50, 0.60, 0.65],
        "instant": [0.72, 0.74, 0.76],
    }
    curves = {(n, s): [m + (0.01 if s else -0.01) for m in curve] for n, curve in means.items() for s in (0, 1)}
    summary = curves.summarize_cycles(cycles_frame(curves, labels=[100, 200, 300]))
    table = curves.label_efficiency(summary, "random").set_index("strategy")
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
    table = across.mean_rank(aulc_summary)
    assert table["strategy"].tolist() == ["A", "B", "C"]
    assert table["mean_rank"].tolist() == pytest.approx([1.5, 1.5, 3.0])
    assert table["n_datasets"].tolist() == [2, 2, 1]


def test_paired_t_power_matches_a_direct_computation():
    effect, sd, n = 0.01, 0.012, 8
    df, nc = n - 1, effect / sd * math.sqrt(n)
    t_crit = sps.t.ppf(0.975, df)
    direct = 1 - sps.nct.cdf(t_crit, df, nc) + sps.nct.cdf(-t_crit, df, nc)
    assert planning.paired_t_power(effect, sd, n) == pytest.approx(direct, rel=1e-10)
    # With no true difference the power is the size of the test.
    assert planning.paired_t_power(0.0, sd, n) == pytest.approx(0.05, rel=1e-10)
    # Monte Carlo check of the formula: simulated paired t-tests reject about `direct` of the time.
    rng = np.random.default_rng(1)
    samples = rng.normal(effect, sd, size=(20000, n))
    rejected = np.mean(sps.ttest_1samp(samples, 0, axis=1).pvalue < 0.05)
    assert rejected == pytest.approx(direct, abs=0.015)


def test_seeds_needed_is_the_first_n_reaching_80_percent():
    sd = 0.008
    n = planning.seeds_needed(0.005, sd)
    assert planning.paired_t_power(0.005, sd, int(n)) >= 0.8 > planning.paired_t_power(0.005, sd, int(n) - 1)
    assert planning.seeds_needed(0.01, sd) <= n  # a larger effect never needs more seeds
    assert math.isnan(planning.seeds_needed(0.01, 1.0))  # more than MAX_PLANNED_SEEDS


def test_seed_planning_uses_the_observed_aulc_spread():
    base = {s: [0.5 + 0.01 * s, 0.6 + 0.01 * s] for s in range(5)}
    gain = [0.01, 0.02, 0.00, 0.015, 0.03]
    curves = {("random", s): acc for s, acc in base.items()}
    curves |= {("al", s): [base[s][0] + gain[s], base[s][1] + gain[s]] for s in range(5)}
    planned = planning.seed_planning(paired.compare_to_baseline(cycles_frame(curves, [100, 200]))).iloc[0]
    sd = np.std(gain, ddof=1)
    assert planned["sd_diff"] == pytest.approx(sd) and planned["n_pairs"] == 5
    for column, effect in (("seeds_1pt", 0.01), ("seeds_half_pt", 0.005)):
        n = int(planned[column])
        power = [1 - sps.nct.cdf(sps.t.ppf(0.975, k - 1), k - 1, effect / sd * math.sqrt(k))
                 + sps.nct.cdf(-sps.t.ppf(0.975, k - 1), k - 1, effect / sd * math.sqrt(k)) for k in (n - 1, n)]
        assert power[0] < 0.8 <= power[1]


def test_power_is_monotone_on_a_tight_spread():
    # badge vs random on a 40k CIFAR-10 slice: paired sd 0.12 points; scipy's nct.cdf is NaN far in the lower tail
    sd = 0.0012
    for effect in (0.005, 0.01, 0.02):
        powers = [planning.paired_t_power(effect, sd, n) for n in range(2, 30)]
        assert all(np.isfinite(powers)) and all(b >= a for a, b in zip(powers, powers[1:], strict=False))
    for n in range(2, 30):
        by_effect = [planning.paired_t_power(e, sd, n) for e in (0.001, 0.002, 0.005, 0.01, 0.02)]
        assert all(b >= a for a, b in zip(by_effect, by_effect[1:], strict=False))
    assert planning.seeds_needed(0.01, sd) <= planning.seeds_needed(0.005, sd) == 3


@pytest.mark.parametrize("missing", [False, True])
def test_penalty_beats_are_the_pairwise_scipy_t_tests(missing):
    rng = np.random.default_rng(5)
    accs = 0.7 + rng.normal(0, 0.01, (6, 5)) + np.array([0.0, 0.02, 0.0, -0.03, 0.001])  # [seeds, strategies]
    accs[:, 2] = accs[:, 0] + 0.004  # a constant difference: t is infinite, p 0
    if missing:
        accs[1, 3] = np.nan
    expected = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            diff = accs[:, i] - accs[:, j]
            diff = diff[~np.isnan(diff)]
            with np.errstate(all="ignore"):
                p = sps.ttest_1samp(diff, 0.0).pvalue
            expected[i, j] = float(i != j and p < paired.ALPHA and diff.mean() > 0)
    assert np.array_equal(penalty._beats(accs), expected)
    assert expected[2, 0] == 1 and expected.sum() > 3


@pytest.mark.parametrize("sd", [0.004, 0.02, 0.05, 0.09, 0.1, 1.0])  # answers in each window, and none
def test_seeds_needed_is_the_first_n_of_the_whole_range(sd):
    n = np.arange(2, planning.MAX_PLANNED_SEEDS + 1)
    enough = np.flatnonzero(planning._powers(0.01, sd, n, paired.ALPHA) >= planning.POWER)
    expected = float(n[enough[0]]) if enough.size else math.nan
    assert planning.seeds_needed(0.01, sd) == pytest.approx(expected, nan_ok=True)


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
