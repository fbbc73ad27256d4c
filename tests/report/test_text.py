"""bench.report.text: the verdict sentences read off hand-made verdict rows (each outcome, fixed seeds and --seeds
auto), and the number formats every sentence and table uses, each against its hand-written string."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.analysis.record import AT_CHANCE
from bench.analysis.verdicts import BETTER, EQUIVALENT, PRIMARY, UNDECIDED, WORSE, SequentialPlan
from bench.report import text

NO_CHANCE = pd.DataFrame({"dataset": pd.Series(dtype=str)})  # curves.near_chance found nothing


def verdict_row(**changes: object) -> pd.Series:
    """A primary verdict of ll against random over 5 seeds: +2.1 points, the 95% interval +1.2 to +3.4."""
    row = {"strategy": "ll", "other": "random", "dataset": "digits", "family": PRIMARY, "n_pairs": 5,
           "mean_diff": 0.021, "ci_low": 0.012, "ci_high": 0.034, "level": 0.05, "p_holm": 0.0123,
           "verdict": BETTER, "note": None, "seeds_needed": math.nan, "sd_diff": 0.01, "look": math.nan}
    return pd.Series({**row, **changes})


def analysis(plan: SequentialPlan | None = None, history: tuple[int, ...] = (), margin: float = 0.01,
             near_chance: pd.DataFrame = NO_CHANCE) -> SimpleNamespace:
    """What verdict_sentence reads of an Analysis."""
    return SimpleNamespace(plan=plan, history=[{"seeds": n} for n in history], margin=margin,
                           near_chance=near_chance)


PLAN = SequentialPlan(looks=(4, 8), comparisons=1, alpha=0.05, margin=0.01, nominal=0.0294)
HEAD = "ll vs random: +2.1 AULC points (95% CI +1.2 to +3.4), Holm p = 0.012, 5 seeds: "


@pytest.mark.parametrize(("changes", "ending"), [
    ({}, "ll better"),
    ({"verdict": WORSE}, "random better"),
    ({"verdict": EQUIVALENT}, "equivalent within ±1 point"),
    ({"verdict": UNDECIDED, "seeds_needed": 12.0},
     "undecided (about 12 seeds would tell a 1-point difference from none at this spread; --seeds auto runs seeds "
     "until it is decided)"),
    ({"verdict": UNDECIDED},
     "undecided (the spread asks more than 1000 seeds; --seeds auto runs seeds until it is decided)"),
    ({"verdict": UNDECIDED, "sd_diff": 0.0},
     "undecided (no spread to plan from; --seeds auto runs seeds until it is decided)"),
    ({"verdict": UNDECIDED, "note": AT_CHANCE},
     "undecided: the protocol cannot tell, as the models barely beat chance at every budget (see the caution)"),
])
def test_a_fixed_seed_verdict_says_its_difference_interval_p_seeds_and_outcome(changes, ending):
    assert text.verdict_sentence(verdict_row(**changes), analysis()) == HEAD + ending


def test_a_verdict_names_its_holm_level_its_setting_and_too_few_seeds():
    row = verdict_row(level=0.05 / 3, p_holm=0.0004, verdict=EQUIVALENT)
    assert text.verdict_sentence(row, analysis(margin=0.005), where=True, bold=True) == (
        "**ll** vs random on digits: +2.1 AULC points (Holm-adjusted 98.33% CI +1.2 to +3.4), Holm p < 0.001, "
        "5 seeds: equivalent within ±0.5 points")
    assert text.verdict_sentence(verdict_row(n_pairs=1), analysis()) == (
        "ll vs random: fewer than 2 paired seeds with complete curves, not tested yet")
    near = pd.DataFrame({"dataset": ["digits"]})
    assert text.verdict_sentence(verdict_row(verdict=UNDECIDED), analysis(near_chance=near)) == HEAD + (
        "undecided (more seeds would measure the protocol, which barely beats chance; see the caution)")


def test_a_sequential_verdict_says_its_repeated_interval_and_its_look():
    decided = verdict_row(look=4.0)
    assert text.verdict_sentence(decided, analysis(PLAN, history=(4,))) == (
        "ll vs random: +2.1 AULC points (repeated 95% CI +1.2 to +3.4), decided at 4 seeds: ll better")
    open_ = verdict_row(verdict=UNDECIDED)
    assert text.verdict_sentence(open_, analysis(PLAN, history=(4,))) == (
        "ll vs random: +2.1 AULC points (repeated 95% CI +1.2 to +3.4), 5 seeds: "
        "undecided so far; run the same command to go on")
    assert text.verdict_sentence(open_, analysis(PLAN, history=(4, 8))).endswith(
        ": undecided at --max-seeds 8, the design's last look: report it as undecided (a larger maximum chosen now "
        "would look at the same seeds again and void the design's error bound, in this folder or a new one)")
    # a pair outside the primary family is tested at fixed seeds even in a sequential run
    assert text.verdict_sentence(verdict_row(family="all pairs"), analysis(PLAN, history=(4,))) == HEAD + "ll better"


@pytest.mark.parametrize(("value", "shown"), [
    (0.6123, "61.2"), (0.0, "0.0"), (1.0, "100.0"), (math.nan, text.DASH)])
def test_percent(value, shown):
    assert text.percent(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0.0213, "+2.1"), (-0.0213, "-2.1"), (0.0, "+0.0"), (math.nan, text.DASH)])
def test_points_carry_their_sign(value, shown):
    assert text.points(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0.0004, "<0.001"), (0.001, "0.001"), (0.04567, "0.046"), (1.0, "1.000"), (math.nan, text.DASH)])
def test_pvalue(value, shown):
    assert text.pvalue(value) == shown


def test_label_counts_intervals_and_levels():
    assert [text.labels(n) for n in (100.0, 1500.0, 12345.4, math.nan)] == ["100", "1,500", "12,345", text.DASH]
    assert text.label_list(pd.Series([1100.0, 100.0, 2100.0])) == "100, 1,100, 2,100"
    assert text.mean_pm(0.6123, 0.60, 0.62) == "61.2 ± 1.0"  # the half-width of the interval, in points
    assert text.mean_pm(0.6123, math.nan, math.nan) == "61.2"  # one seed: no interval
    assert [text.confidence(a) for a in (0.05, 0.05 / 3, 0.01)] == ["95%", "98.33%", "99%"]


@pytest.mark.parametrize(("margin", "shown"), [
    (0.01, "1 AULC point"), (0.01 + 1e-12, "1 AULC point"), (0.005, "0.5 AULC points"), (0.02, "2 AULC points")])
def test_margin_text(margin, shown):
    assert text.margin_text(margin) == shown


def test_count():
    assert [text.count(n, "seed") for n in (0, 1, 3)] == ["0 seeds", "1 seed", "3 seeds"]
    assert text.count(2, "strategy", "strategies") == "2 strategies"
    assert text.count(1, "strategy", "strategies") == "1 strategy"
    assert (text.count(3, "seed", show=False), text.count(1, "seed", show=False)) == ("seeds", "seed")
