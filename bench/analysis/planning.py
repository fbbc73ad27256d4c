"""Seed planning: the power of the paired t-test, and the seeds a comparison needs to detect a given AULC
difference at the observed spread."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special, stats

from bench.analysis.paired import ALPHA

POWER = 0.8  # power that seed planning aims for


PLANNED_EFFECTS = (0.01, 0.005)  # AULC differences seed planning sizes for: 1 and 0.5 points


MAX_PLANNED_SEEDS = 1000  # seed planning answers NaN ("more than this") beyond


PLANNING_COLUMNS = ["dataset", "strategy", "baseline", "n_pairs", "sd_diff", "seeds_1pt", "seeds_half_pt"]


def paired_t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs to detect a true mean difference `effect` when
    the differences have standard deviation `sd`: P(|T| > t_crit) with T noncentral t (scipy.stats.nct),
    df = n - 1, noncentrality effect / sd * sqrt(n). NaN with fewer than 2 pairs; with sd 0 the test's
    degenerate rule applies: power 1 for a nonzero effect, alpha for none."""
    if n < 2:
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    return float(_powers(effect, sd, np.array([n]), alpha)[0])


def _powers(effect: float, sd: float, n: np.ndarray, alpha: float) -> np.ndarray:
    """paired_t_power for an array of n >= 2 at once, sd > 0."""
    df, nc = n - 1, effect / sd * np.sqrt(n)
    critical = special.stdtrit(df, 1 - alpha / 2)  # t_quantile for every df at once
    # P(T < -c) written as the upper tail of -T: scipy's nct.cdf returns NaN far in the lower tail (a tight spread,
    # a large noncentrality), and a NaN power would fail every ">= 0.8" and skip that n
    tails = np.nan_to_num(stats.nct.sf(critical, df, nc)) + np.nan_to_num(stats.nct.sf(critical, df, -nc))
    return np.minimum(1.0, tails)


def seeds_needed(effect: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """Smallest number of paired seeds (at least 2) whose paired_t_power reaches `power`; NaN when sd is
    not finite or more than MAX_PLANNED_SEEDS would be needed. Every n is looked at, in increasing order, in
    windows of growing size computed at once (most answers lie in the first, and nct's tail costs per n)."""
    if not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 2.0 if (effect != 0 or alpha >= power) else math.nan
    first = 2
    while first <= MAX_PLANNED_SEEDS:
        n = np.arange(first, min(4 * first + 24, MAX_PLANNED_SEEDS) + 1)  # 2..32, 33..156, 157..652, ...
        enough = np.flatnonzero(_powers(effect, sd, n, alpha) >= power)
        if enough.size:
            return float(n[enough[0]])
        first = int(n[-1]) + 1
    return math.nan


def seed_planning(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, strategy): the observed sd of the paired AULC differences against the baseline and
    the seeds that 1-point and 0.5-point AULC differences need for POWER at ALPHA (paired t-test, before
    Holm correction). Rows of compare_to_baseline with metric "aulc" and at least 2 pairs; an sd of 0 (the
    curves are identical or shifted alike on every seed) gives the minimum, 2 seeds, which the report
    words as "nothing to plan from"."""
    rows = []
    aulc_rows = comparisons[(comparisons["metric"] == "aulc") & (comparisons["n_pairs"] >= 2)]
    for row in aulc_rows.itertuples(index=False):
        one, half = (seeds_needed(effect, float(row.sd_diff)) for effect in PLANNED_EFFECTS)
        rows.append({"dataset": row.dataset, "strategy": row.strategy, "baseline": row.baseline,
                     "n_pairs": int(row.n_pairs), "sd_diff": float(row.sd_diff),
                     "seeds_1pt": one, "seeds_half_pt": half})
    return pd.DataFrame(rows, columns=PLANNING_COLUMNS)
