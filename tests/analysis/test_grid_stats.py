"""bench.analysis.grid_stats: the error of a --vary grid's verdicts over every comparison, setting and look, by
simulation (no training: paired AULC differences drawn as tests/analysis/test_verdicts.py draws them), and the
counts and changes of verdicts across settings by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.analysis import grid_stats as g
from bench.analysis import verdicts as v
from bench.analysis.families import comparison_pairs
from bench.analysis.paired import ALPHA

SEQUENCES = 2000
SD = 0.012  # paired AULC differences of 1.2 points: the example report's spread


def _se(rate: float = ALPHA, n: int = SEQUENCES) -> float:
    return math.sqrt(rate * (1 - rate) / n)


def _grid_diffs(settings: int, k: int, truth: np.ndarray, rng: np.random.Generator, n: int) -> dict:
    """One grid: in each setting a seed effect shared by its k strategies, each strategy's true AULC and noise;
    the comparisons against s0 (the baseline) as the run makes them."""
    names = [f"s{i}" for i in range(k)]
    pairs = comparison_pairs(names, "s0")
    diffs = {}
    for s in range(settings):
        aulc = 0.8 + rng.normal(0, 0.02, size=(n, 1)) + truth[s] + rng.normal(0, SD / math.sqrt(2), (n, k))
        diffs.update({(f"g{s}", a, b): aulc[:, int(a[1:])] - aulc[:, int(b[1:])] for a, b in pairs})
    return diffs


def _rate(settings: int, k: int, plan_of, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(SEQUENCES):
        diffs = _grid_diffs(settings, k, np.zeros((settings, k)), rng, n)
        found = g.decide_grid(diffs, v.MARGIN, plan_of(len(diffs)))
        wrong += any(f["verdict"] in (v.BETTER, v.WORSE) for f in found.values())
    return wrong / SEQUENCES


@pytest.mark.parametrize(("settings", "k"), [(4, 2), (8, 3)])
def test_fixed_seeds_no_true_difference_anywhere_gives_better_or_worse_at_most_alpha(settings, k):
    rate = _rate(settings, k, lambda m: None, 5, 10 + settings)
    print(f"\n--seeds 5, {settings} settings x {k - 1} comparison(s), no true difference: rate of any better/worse "
          f"verdict in the grid {rate:.4f} (alpha {ALPHA}, bound {ALPHA + 3 * _se():.4f})")
    assert rate <= ALPHA + 3 * _se()


@pytest.mark.parametrize(("settings", "k"), [(4, 2), (4, 3)])
def test_seeds_auto_no_true_difference_anywhere_gives_better_or_worse_at_most_alpha(settings, k):
    # each setting takes its looks on its own and stops once decided; the plan is the grid's (Bonferroni over all)
    rate = _rate(settings, k, lambda m: g.grid_plan(30, m // settings, settings, v.MARGIN), 30, 20 + k)
    print(f"\n--seeds auto, {settings} settings x {k - 1} comparison(s), no true difference: rate of any better/worse "
          f"verdict in the grid over all looks {rate:.4f} (alpha {ALPHA}, bound {ALPHA + 3 * _se():.4f})")
    assert rate <= ALPHA + 3 * _se()


def test_a_family_per_setting_would_exceed_alpha_over_the_grid():
    # what the grid's family prevents: each setting corrected for its own comparisons only
    rate = _rate(8, 2, lambda m: v.make_plan(30, 1), 30, 5)
    print(f"\nplan per setting (8 settings), no true difference: rate {rate:.4f}")
    assert rate > ALPHA + 3 * _se()


def test_a_true_difference_in_one_setting_is_found_there_only():
    rng = np.random.default_rng(3)
    truth = np.zeros((4, 2))
    truth[2, 1] = 0.03  # s1 three points above s0 in setting g2
    found = [g.decide_grid(_grid_diffs(4, 2, truth, rng, 30), v.MARGIN, g.grid_plan(30, 1, 4, v.MARGIN))
             for _ in range(200)]
    assert np.mean([f[("g2", "s1", "s0")]["verdict"] == v.BETTER for f in found]) > 0.9
    assert np.mean([f[("g0", "s1", "s0")]["verdict"] in (v.BETTER, v.WORSE) for f in found]) < 0.05


def test_fixed_decisions_are_holm_over_the_whole_grid_as_fixed_verdicts_makes_them():
    rng = np.random.default_rng(1)
    diffs = {(f"g{s}", "a", "b"): rng.normal(0.004 * s, 0.01, 6) for s in range(4)}
    found = g.decide_grid(diffs, v.MARGIN)
    # by hand: Holm's levels over the 4 p-values of scipy's paired t-test, the t interval at each level
    keys = list(diffs)
    p = np.array([stats.ttest_1samp(diffs[k], 0).pvalue for k in keys])
    order = np.argsort(p)
    level = np.empty(4)
    for j, i in enumerate(order):
        level[i] = ALPHA / (4 - j)
        if p[i] >= ALPHA / (4 - j):
            level[order[j:]] = ALPHA / (4 - j)
            break
    for key, lv in zip(keys, level, strict=True):
        d = diffs[key]
        half = stats.t.ppf(1 - lv / 2, 5) * d.std(ddof=1) / math.sqrt(6)
        assert found[key]["ci_low"] == pytest.approx(d.mean() - half)
    # and the stored-AULC path (verdicts.fixed_verdicts, settings as datasets) gives the same intervals
    rows = [{"dataset": s, "strategy": name, "seed": i, "aulc": 0.8 + (x if name == "a" else 0.0), "complete": True}
            for (s, _, _), d in diffs.items() for i, x in enumerate(d) for name in ("a", "b")]
    frame, _ = g.grid_verdicts(pd.DataFrame(rows), {s: [("a", "b")] for s, _, _ in keys}, v.MARGIN)
    assert frame["ci_low"].to_numpy() == pytest.approx([found[k]["ci_low"] for k in keys])
    assert list(frame["verdict"]) == [found[k]["verdict"] for k in keys]


def test_counts_and_the_field_that_changes_a_verdict():
    labels = {"i30_b10": {"initial": "30", "budget": "10"}, "i30_b30": {"initial": "30", "budget": "30"},
              "i100_b10": {"initial": "100", "budget": "10"}, "i100_b30": {"initial": "100", "budget": "30"}}
    verdict = {"i30_b10": "better", "i30_b30": "undecided", "i100_b10": "better", "i100_b30": "undecided"}
    found = pd.DataFrame([{"dataset": s, "strategy": "entropy", "other": "random", "verdict": x}
                          for s, x in verdict.items()])
    counts = g.verdict_counts(found).iloc[0]
    assert (counts["settings"], counts["better"], counts["undecided"], counts["worse"]) == (4, 2, 2, 0)
    changes = g.verdict_changes(found, labels, ["initial", "budget"]).set_index("field")
    # budget: the pairs (30, 10)-(30, 30) and (100, 10)-(100, 30) both change; initial: neither
    assert (changes.loc["budget", "neighbours"], changes.loc["budget", "changes"]) == (2, 2)
    assert (changes.loc["initial", "neighbours"], changes.loc["initial", "changes"]) == (2, 0)
    assert changes.loc["budget", "alone"] and not changes.loc["initial", "alone"]
    assert changes.loc["budget", "by_value"] == {"10": "better", "30": "undecided"}


def test_a_setting_is_decided_when_its_last_look_leaves_nothing_undecided():
    assert g.setting_decided([{"seeds": 5, "decided": ["a vs b: a better"], "undecided": []}])
    assert not g.setting_decided([{"seeds": 5, "decided": [], "undecided": ["a vs b"]}])
    assert not g.setting_decided([])


def test_the_simulated_decisions_are_the_ones_the_grid_report_uses(monkeypatch):
    # grid_verdicts (the report's path) decides its fixed-seeds rows with decide_grid, the function the error-rate
    # simulations above run: a decide_grid that says "worse" everywhere shows in every row
    rows = [{"dataset": f"g{s}", "strategy": name, "seed": i, "aulc": 0.8 + 0.05 * (name == "a") + 0.001 * i,
             "complete": True} for s in range(2) for i in range(5) for name in ("a", "b")]
    pairs = {f"g{s}": [("a", "b")] for s in range(2)}
    assert set(g.grid_verdicts(pd.DataFrame(rows), pairs, v.MARGIN)[0]["verdict"]) == {v.BETTER}
    real = g.decide_grid
    monkeypatch.setattr(g, "decide_grid", lambda diffs, margin, plan=None: {
        k: {**f, "verdict": v.WORSE} for k, f in real(diffs, margin, plan).items()})
    assert set(g.grid_verdicts(pd.DataFrame(rows), pairs, v.MARGIN)[0]["verdict"]) == {v.WORSE}
