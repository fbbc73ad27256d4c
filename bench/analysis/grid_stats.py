"""Robustness across a grid of protocol settings (`--vary`): the verdicts of one question asked in every setting,
with the error controlled over the whole grid, then how often each verdict holds and which field changes it.

The family is every primary comparison in every setting at every look (C comparisons x S settings = K):

- Fixed seeds (`--seeds N`): Holm over the K comparisons (decide_grid, which grid_verdicts decides the rows of
  verdicts.fixed_verdicts with, the settings as its datasets); each interval at the level Holm decided it at.
- Seeds in rounds (`--seeds auto`): each comparison's repeated confidence intervals at the nominal level of
  Pocock's boundary for alpha / K (verdicts.make_plan with K comparisons). Every interval covers its true
  difference at every look with probability at least 1 - alpha / K, so all K cover at all looks with probability
  at least 1 - alpha (Bonferroni), whatever the other settings do: each setting takes its looks on its own, and
  stops once its comparisons are decided.

So the probability of any better or worse verdict anywhere in the grid, when no strategy differs anywhere, is at
most alpha (tests/analysis/test_grid_stats.py simulates it). Pure functions on arrays and DataFrames; AULCs are
fractions (0.01 = 1 point).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.analysis import verdicts
from bench.analysis.families import PRIMARY
from bench.analysis.paired import ALPHA, paired_t_p

OUTCOMES = (verdicts.BETTER, verdicts.WORSE, verdicts.EQUIVALENT, verdicts.UNDECIDED)
COUNT_COLUMNS = ["strategy", "other", "settings", *OUTCOMES, "not_run"]
CHANGE_COLUMNS = ["strategy", "other", "field", "neighbours", "changes", "alone", "by_value"]

Key = tuple[str, str, str]  # (setting, strategy, other)


# ---------------------------------------------------------------- the grid's verdicts, on arrays


def decide_grid(diffs: Mapping[Key, np.ndarray], margin: float, plan: verdicts.SequentialPlan | None = None,
                alpha: float = ALPHA) -> dict[Key, dict]:
    """Each comparison's verdict over the grid's family: {(setting, strategy, other): {"verdict", "ci_low",
    "ci_high", "look"}}. diffs: paired AULC differences in seed order. plan None: Holm over every key; a plan
    (made for len(diffs) comparisons): each setting's looks on its own (verdicts.run_looks), at the plan's level."""
    if plan is None:
        keys = list(diffs)
        p = np.array([paired_t_p(diffs[k])[0] for k in keys])
        levels = verdicts.holm_levels(p, alpha) if keys else np.array([])
        found = {}
        for key, level in zip(keys, levels, strict=True):
            d = diffs[key]
            half = verdicts.t_half_width(float(d.std(ddof=1)), d.size, level) if d.size > 1 else math.nan
            mean = float(d.mean()) if d.size else math.nan
            found[key] = {"verdict": verdicts.decide(mean - half, mean + half, margin), "ci_low": mean - half,
                          "ci_high": mean + half, "look": math.nan, "level": level}
        return found
    found = {}
    for setting in dict.fromkeys(k[0] for k in diffs):
        state, _ = verdicts.run_looks({k: d for k, d in diffs.items() if k[0] == setting}, plan)
        for key in (k for k in diffs if k[0] == setting):
            found[key] = state.get(key, {"verdict": verdicts.UNDECIDED, "ci_low": math.nan, "ci_high": math.nan,
                                         "look": math.nan})
    return found


def grid_plan(max_seeds: int, comparisons: int, settings: int, margin: float,
              alpha: float = ALPHA) -> verdicts.SequentialPlan:
    """--seeds auto's plan for a grid: Pocock's boundary at alpha over comparisons x settings (Bonferroni)."""
    return verdicts.make_plan(max_seeds, comparisons * settings, alpha, margin)


# ---------------------------------------------------------------- the grid's verdicts, from the stored AULCs


def grid_verdicts(aulc_seeds: pd.DataFrame, pairs: Mapping[str, list[tuple[str, str]]], margin: float,
                  plan: verdicts.SequentialPlan | None = None) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """verdicts' rows for every setting ("dataset" = the setting's name) of curves.aulc_per_seed rows, one family
    over the grid; and each setting's looks (--seeds auto; {} for fixed seeds)."""
    if plan is None:  # the rows' numbers as a run's report has them; the decisions decide_grid's, on the same seeds
        frame = verdicts.fixed_verdicts(aulc_seeds, dict(pairs), PRIMARY, margin)
        tables = {s: verdicts.aulc_table(aulc_seeds[aulc_seeds["dataset"] == s]) for s in pairs}
        diffs = {(s, a, b): verdicts.paired_differences(tables[s], a, b).to_numpy(float)
                 for s, members in pairs.items() for a, b in members}
        decided = list(decide_grid(diffs, margin).values())  # in the rows' order (pairs, then members)
        for column in ("level", "ci_low", "ci_high", "verdict"):
            frame[column] = [d[column] for d in decided]
        return frame, {}
    frames, histories = [], {}
    for setting, members in pairs.items():
        frame, history = verdicts.sequential_verdicts(aulc_seeds[aulc_seeds["dataset"] == setting],
                                                      {setting: members}, plan)
        frames.append(frame)
        histories[setting] = history
    return pd.concat(frames, ignore_index=True), histories


def setting_decided(history: list[dict]) -> bool:
    """Whether a setting's looks have decided every comparison (its rounds stop there)."""
    return bool(history) and not history[-1]["undecided"]


# ---------------------------------------------------------------- how often a verdict holds, and what changes it


def made(found: pd.DataFrame) -> pd.DataFrame:
    """The rows of comparisons a setting made: at least one paired seed (a row without one was not run there)."""
    return found[found["n_pairs"] > 0] if "n_pairs" in found else found


def verdict_counts(found: pd.DataFrame, settings: Sequence[str] | None = None) -> pd.DataFrame:
    """Per comparison (in the order of the rows): the settings that made it, how many of them read better, worse,
    equivalent and undecided, and how many of `settings` (default: those in the rows) did not make it (not_run: a
    strategy the setting does not run, or no paired seed yet)."""
    every = list(dict.fromkeys(found["dataset"])) if settings is None else list(settings)
    ran = made(found)
    rows = []
    for a, b in dict.fromkeys(zip(found["strategy"], found["other"], strict=True)):
        group = ran[(ran["strategy"] == a) & (ran["other"] == b)]
        counts = group["verdict"].value_counts()
        rows.append({"strategy": a, "other": b, "settings": len(group),
                     **{o: int(counts.get(o, 0)) for o in OUTCOMES},
                     "not_run": len(set(every) - set(group["dataset"]))})
    return pd.DataFrame(rows, columns=COUNT_COLUMNS)


def family_size(pairs: Mapping[str, Sequence[tuple[str, str]]]) -> int:
    """The grid's family: the comparisons each setting makes ({setting: its primary pairs}), summed."""
    return sum(len(members) for members in pairs.values())


def verdict_changes(found: pd.DataFrame, labels: Mapping[str, Mapping[str, str]],
                    names: Sequence[str]) -> pd.DataFrame:
    """Per comparison and field varied: the pairs of settings that differ in that field alone (neighbours), how
    many of them differ in verdict (changes), and whether the verdict is a function of that field alone (alone:
    the same verdict at every setting with the same value of it, and more than one verdict), with that verdict
    by value ({value: verdict}; {} unless alone). labels: each setting's {field: value}, as Grid's Setting."""
    rows = []
    for (a, b), group in found.groupby(["strategy", "other"], sort=False):
        verdict = dict(zip(group["dataset"], group["verdict"], strict=True))
        for name in names:
            neighbours = changes = 0
            for s, t in itertools.combinations(verdict, 2):
                others_same = all(labels[s][n] == labels[t][n] for n in names if n != name)
                if others_same and labels[s][name] != labels[t][name]:
                    neighbours += 1
                    changes += verdict[s] != verdict[t]
            by_value: dict[str, set[str]] = {}
            for s, v in verdict.items():
                by_value.setdefault(labels[s][name], set()).add(v)
            alone = all(len(v) == 1 for v in by_value.values()) and len(set().union(*by_value.values())) > 1
            rows.append({"strategy": a, "other": b, "field": name, "neighbours": neighbours, "changes": changes,
                         "alone": alone, "by_value": {k: next(iter(v)) for k, v in by_value.items()} if alone else {}})
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)
