"""bench.analysis.paired against scipy and examples worked by hand: the paired t-test with Wilcoxon beside it, Holm,
the degenerate rule, and the primary and secondary families against the baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import paired
from conftest import cycles_frame


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
