"""Verdicts with four outcomes, and the error rates of --seeds auto's sequential design, by simulation (no
training: paired AULC differences drawn with realistic spreads)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.analysis import verdicts as v
from bench.analysis.families import comparison_pairs
from bench.analysis.paired import ALPHA, holm

SEQUENCES = 2000
SD = 0.012  # paired AULC differences of 1.2 points: the example report's spread


def _se(rate: float = ALPHA, n: int = SEQUENCES) -> float:
    return math.sqrt(rate * (1 - rate) / n)


# ---------------------------------------------------------------- fixed seeds: Holm and TOST read from one interval


def test_holm_level_intervals_exclude_zero_exactly_when_holm_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m, n = rng.integers(1, 8), rng.integers(3, 12)
        diffs = rng.normal(rng.normal(0, 0.01, size=(m, 1)), 0.01, size=(m, n))  # [m, n]
        p = np.array([stats.ttest_1samp(d, 0).pvalue for d in diffs])
        levels = v.holm_levels(p)
        rejected = holm(p) < ALPHA
        for d, level, reject in zip(diffs, levels, rejected, strict=True):
            half = v.t_half_width(d.std(ddof=1), n, level)
            assert (abs(d.mean()) > half) == reject


def test_equivalence_from_the_interval_is_statsmodels_tost_at_half_the_level():
    from statsmodels.stats.weightstats import ttost_paired  # seconds to import: here, not in every test process

    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(300):
        n, margin = int(rng.integers(3, 15)), 0.01
        a = rng.normal(0.8, 0.02, n)
        b = a - rng.normal(rng.uniform(-0.012, 0.012), rng.uniform(0.002, 0.01), n)
        level = float(rng.choice([0.05, 0.025, 0.0167]))
        d = a - b
        half = v.t_half_width(d.std(ddof=1), n, level)
        inside = -margin < d.mean() - half and d.mean() + half < margin
        p_sm = ttost_paired(a, b, -margin, margin)[0]
        assert math.isclose(v.tost_p(d, margin), p_sm, rel_tol=1e-9, abs_tol=1e-12)
        if abs(p_sm - level / 2) > 1e-9:
            assert inside == (p_sm < level / 2)
            checked += inside
    assert checked > 10  # some of them were equivalent


@pytest.mark.parametrize(("low", "high", "verdict"), [(0.001, 0.03, "better"), (-0.03, -0.001, "worse"),
                                                      (-0.009, 0.009, "equivalent"), (-0.011, 0.005, "undecided"),
                                                      (-0.005, 0.012, "undecided"), (0.0, 0.0, "equivalent")])
def test_decide_reads_the_interval(low, high, verdict):
    assert v.decide(low, high, 0.01) == verdict


def _aulc_frame(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"dataset": "d", "strategy": s, "seed": i, "n_cycles": 3, "complete": True, "aulc": x}
            for s, xs in values.items() for i, x in enumerate(xs)]
    return pd.DataFrame(rows)


def test_fixed_verdicts_by_hand():
    # a beats b by 3 points on every seed give or take 0.5; c equals b within 0.1 point
    b = [0.80, 0.82, 0.79, 0.81, 0.80]
    a = [x + 0.03 + e for x, e in zip(b, [0.005, -0.005, 0.0, 0.002, -0.002], strict=True)]
    c = [x + e for x, e in zip(b, [0.001, -0.001, 0.0005, -0.0005, 0.0], strict=True)]
    pairs = {"d": comparison_pairs(["a", "b", "c"], "random")}
    assert pairs["d"] == [("a", "b"), ("a", "c"), ("b", "c")]
    frame = v.fixed_verdicts(_aulc_frame({"a": a, "b": b, "c": c}), pairs, v.PRIMARY).set_index(["strategy", "other"])
    assert frame.loc[("a", "b"), "verdict"] == "better"
    assert frame.loc[("b", "c"), "verdict"] == "equivalent"
    diff = np.subtract(a, b)
    p = frame["t_p"].to_numpy()
    assert frame.loc[("a", "b"), "t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert frame["p_holm"].to_numpy() == pytest.approx(holm(p))
    steps = frame["t_p"].rank(method="first").astype(int)  # Holm's step of each, 1-based; all three rejected
    assert frame["level"].to_numpy() == pytest.approx(ALPHA / (4 - steps.to_numpy()))
    level = frame.loc[("a", "b"), "level"]
    half = stats.t.ppf(1 - level / 2, 4) * diff.std(ddof=1) / math.sqrt(5)
    assert frame.loc[("a", "b"), "ci_low"] == pytest.approx(diff.mean() - half)


def test_the_baseline_makes_the_primary_family_one_comparison_per_strategy():
    assert comparison_pairs(["ll", "entropy", "random"], "random") == [("ll", "random"), ("entropy", "random")]
    # without it, every pair, each named in the order given (a run passes the order the user named them)
    assert comparison_pairs(["ll", "entropy"], "random") == [("ll", "entropy")]
    assert comparison_pairs(["c", "a", "b", "a"], "random") == [("c", "a"), ("c", "b"), ("a", "b")]


def test_plan_looks():
    assert v.plan_looks(30) == (5, 10, 15, 20, 30)
    assert v.plan_looks(50) == (5, 10, 15, 20, 30, 40, 50)
    assert v.plan_looks(12) == (5, 10, 12)
    assert v.plan_looks(5) == (5,)
    assert v.plan_looks(3) == (3,)


def test_the_nominal_level_for_one_look_is_alpha():
    # one look: the plain t-test at alpha
    assert v.pocock_nominal((8,), 0.05) == pytest.approx(0.05, rel=0.03)
    # more looks need a smaller nominal level, a smaller alpha too; Pocock's 5 equally spaced looks (normal data)
    # have 0.0158 (Jennison & Turnbull, Table 2.1): t-tests with few seeds are close to it
    five = v.pocock_nominal((5, 10, 15, 20, 25), 0.05)
    assert 0.012 < five < 0.0175
    assert v.pocock_nominal((5, 10, 15, 20, 30), 0.01) < v.pocock_nominal((5, 10, 15, 20, 30), 0.05)


# ---------------------------------------------------------------- simulation: error rates over all looks


def _simulate(plan: v.SequentialPlan, truth: np.ndarray, design: str, rng: np.random.Generator,
              n_max: int) -> list[dict]:
    """One sequence of AULCs per seed: a seed effect shared by every strategy, the strategy's true AULC, and its
    own noise; the comparisons of `design` as the run makes them. Returns each comparison's final state."""
    k = truth.size
    names = [f"s{i}" for i in range(k)]
    aulc = 0.8 + rng.normal(0, 0.02, size=(n_max, 1)) + truth + rng.normal(0, SD / math.sqrt(2), (n_max, k))
    pairs = comparison_pairs(names, "s0" if design == "baseline" else "random")
    index = {name: i for i, name in enumerate(names)}
    diffs = {("d", a, b): aulc[:, index[a]] - aulc[:, index[b]] for a, b in pairs}
    state, _ = v.run_looks(diffs, plan)
    return [{**state[key], "true": truth[index[key[1]]] - truth[index[key[2]]]} for key in diffs]


@pytest.mark.parametrize(("m", "k", "design"), [(1, 2, "pairs"), (3, 3, "pairs"), (7, 8, "baseline")])
def test_no_true_difference_declares_better_or_worse_at_most_alpha(m, k, design):
    plan = v.make_plan(30, m)
    rng = np.random.default_rng(100 + m)
    wrong = 0
    for _ in range(SEQUENCES):
        final = _simulate(plan, np.zeros(k), design, rng, 30)
        assert len(final) == m
        wrong += any(f["verdict"] in (v.BETTER, v.WORSE) for f in final)
    rate = wrong / SEQUENCES
    print(f"\n{m} comparison(s), no true difference: familywise rate of better/worse over all looks "
          f"{rate:.4f} (alpha {ALPHA}, bound {ALPHA + 3 * _se():.4f})")
    assert rate <= ALPHA + 3 * _se()


@pytest.mark.parametrize(("m", "k", "design"), [(1, 2, "pairs"), (3, 3, "pairs"), (7, 8, "baseline")])
def test_a_true_difference_of_the_margin_is_rarely_called_equivalent(m, k, design):
    plan = v.make_plan(30, m)
    rng = np.random.default_rng(200 + m)
    truth = np.zeros(k)
    truth[0] = v.MARGIN  # s0 is the baseline (or a member of every pair with it): |difference| = margin there
    wrong = 0
    for _ in range(SEQUENCES):
        final = _simulate(plan, truth, design, rng, 30)
        wrong += any(f["verdict"] == v.EQUIVALENT for f in final if abs(abs(f["true"]) - v.MARGIN) < 1e-12)
    rate = wrong / SEQUENCES
    print(f"\n{m} comparison(s), true difference = margin: rate of declaring equivalent {rate:.4f} "
          f"(bound {ALPHA + 3 * _se():.4f})")
    assert rate <= ALPHA + 3 * _se()


def test_a_clear_difference_is_found_early_and_no_difference_ends_equivalent():
    plan = v.make_plan(30, 1)
    rng = np.random.default_rng(7)
    found = [_simulate(plan, np.array([0.0, 0.02]), "pairs", rng, 30)[0] for _ in range(300)]
    assert np.mean([f["verdict"] == v.WORSE for f in found]) > 0.9  # s0 - s1 = -2 points
    assert np.mean([f["look"] for f in found]) < 12
    same = [_simulate(plan, np.zeros(2), "pairs", rng, 30)[0] for _ in range(300)]
    assert np.mean([f["verdict"] == v.EQUIVALENT for f in same]) > 0.5


def test_sequential_verdicts_replay_the_looks_from_the_stored_aulcs():
    rng = np.random.default_rng(3)
    b = list(0.8 + rng.normal(0, 0.01, 12))
    a = [x + 0.03 + e for x, e in zip(b, rng.normal(0, 0.003, 12), strict=True)]
    plan = v.make_plan(30, 1)
    frame, history = v.sequential_verdicts(_aulc_frame({"a": a, "b": b}), {"d": [("a", "b")]}, plan)
    assert history[0]["seeds"] == 5 and history[0]["decided"] == ["a vs b: a better"]
    row = frame.iloc[0]
    assert row["verdict"] == "better" and row["look"] == 5 and row["n_pairs"] == 5
    d = np.subtract(a, b)[:5]
    half = stats.t.ppf(1 - plan.nominal / 2, 4) * d.std(ddof=1) / math.sqrt(5)
    assert row["ci_low"] == pytest.approx(d.mean() - half)
    assert v.stop_reason(history, plan) == "every primary comparison decided after 5 seeds"
    # with only 4 seeds no look is reached: undecided, in progress
    frame, history = v.sequential_verdicts(_aulc_frame({"a": a[:4], "b": b[:4]}), {"d": [("a", "b")]}, plan)
    assert history == [] and frame.iloc[0]["verdict"] == "undecided"
    assert v.stop_reason(history, plan).startswith("in progress")
