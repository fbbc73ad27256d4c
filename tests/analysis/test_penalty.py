"""bench.analysis.penalty: the pairwise penalty matrix as Ash et al. (BADGE) compute it, by hand and against their
aggregation rules written out again."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import paired, penalty
from conftest import cycles_frame


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


def test_summed_penalties_add_what_each_setting_tested():
    one = pd.DataFrame([[math.nan, 0.5], [0.0, math.nan]], index=["a", "b"], columns=["a", "b"])
    two = pd.DataFrame([[math.nan, 0.25, 1.0], [0.0, math.nan, math.nan], [0.0, math.nan, math.nan]],
                       index=["a", "b", "c"], columns=["a", "b", "c"])
    total = penalty.summed_penalties([one, two])
    assert total.loc["a", "b"] == 0.75 and total.loc["a", "c"] == 1.0 and total.loc["b", "c"] == 0.0
    assert all(math.isnan(total.loc[n, n]) for n in "abc")
