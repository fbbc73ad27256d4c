"""Learning curves over the rows of cycles.parquet: per-cycle summaries with t intervals over seeds, the area
under the learning curve (trapezoid over n_labeled, normalised), the labels a curve needs to reach an
accuracy (bench.analysis.savings pairs them by seed), and budgets near chance.

Pure functions on DataFrames: nothing in bench.analysis reads files, plots or prints. Accuracies stay in 0..1;
the report turns them into percent and percentage points. Everything is computed per dataset."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special

CONFIDENCE = 0.95  # two-sided confidence level of every interval

SUMMARY_COLUMNS = ["dataset", "strategy", "cycle", "n_labeled", "n_seeds", "mean", "std", "ci_low", "ci_high"]
AULC_SEED_COLUMNS = ["dataset", "strategy", "seed", "n_cycles", "complete", "aulc"]
AULC_SUMMARY_COLUMNS = ["dataset", "strategy", "n_seeds", "mean", "std", "ci_low", "ci_high"]
NEAR_CHANCE_SHARE = 0.1  # a budget is near chance when its accuracy closes less than this share of chance -> 100%
NEAR_CHANCE_COLUMNS = ["dataset", "cycle", "n_labeled", "mean", "chance"]


# ---------------------------------------------------------------- intervals and summaries


def t_quantile(q: float, df: int) -> float:
    """The q quantile of Student's t with df degrees of freedom (scipy.stats.t.ppf)."""
    return float(special.stdtrit(df, q))


def t_test_p(x: np.ndarray, mu: float = 0.0, alternative: str = "two-sided") -> float:
    """The one-sample t-test's p of x [n] against mean mu, as scipy.stats.ttest_1samp gives it (NaN for a NaN
    value; equal values are the callers' to rule on, see paired_test), from the t distribution's function
    directly: a report makes hundreds of these, and scipy.stats' array-handling wrapper costs about a
    millisecond each."""
    n = x.size
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (x.mean() - mu) / (x.std(ddof=1) / math.sqrt(n))
    cdf = {"two-sided": -abs(t), "greater": -t, "less": t}[alternative]
    return float(special.stdtr(n - 1, cdf) * (2 if alternative == "two-sided" else 1))


def t_interval(values: ArrayLike) -> tuple[float, float]:
    """95% Student-t interval (low, high) for the mean of `values`; NaN with fewer than 2 values."""
    x = np.asarray(values, dtype=float)  # [n]
    if x.size < 2:
        return math.nan, math.nan
    half = t_quantile(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def seed_summary(values: ArrayLike) -> dict[str, float]:
    """n_seeds, mean, std (ddof=1) and the 95% t-interval of one group of per-seed values."""
    x = np.asarray(values, dtype=float)  # [n_seeds]
    low, high = t_interval(x)
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    mean = float(x.mean()) if x.size else math.nan
    return {"n_seeds": int(x.size), "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def summarize_cycles(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, strategy, cycle): n_labeled, n_seeds, mean, std, 95% t-interval of test_acc.

    n_labeled is the mean over seeds; the protocol makes it the same for every seed.
    """
    rows = [
        {
            "dataset": dataset,
            "strategy": strategy,
            "cycle": int(cycle),
            "n_labeled": float(group["n_labeled"].mean()),
            **seed_summary(group["test_acc"]),
        }
        for (dataset, strategy, cycle), group in cycles.groupby(["dataset", "strategy", "cycle"], sort=True)
    ]
    return _integral_labels(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))


def _integral_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Store n_labeled as int when every value is a whole number (the usual case)."""
    labels = frame["n_labeled"]
    if len(labels) and labels.notna().all() and (labels == labels.round()).all():
        frame["n_labeled"] = labels.astype(int)
    return frame


# ---------------------------------------------------------------- area under the learning curve


def sorted_curve(n_labeled: ArrayLike, acc: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """A learning curve as float arrays ordered by labels ([n_cycles] each)."""
    x, y = np.asarray(n_labeled, dtype=float), np.asarray(acc, dtype=float)
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def aulc(n_labeled: ArrayLike, acc: ArrayLike) -> float:
    """Trapezoid area under acc(n_labeled) divided by the label range: the curve's mean height, 0..1.

    A curve with a single point (no range) gets that point's accuracy, the limit of the mean height.
    """
    x, y = sorted_curve(n_labeled, acc)
    width = x[-1] - x[0]
    if width == 0:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / width)


def aulc_per_seed(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, strategy, seed): its AULC, cycle count, and whether the curve is complete.

    `complete` means the seed has every cycle seen for that dataset; only complete curves cover the same
    label range, so only they enter AULC summaries and tests.
    """
    rows = []
    for dataset, per_dataset in cycles.groupby("dataset", sort=True):
        all_cycles = set(per_dataset["cycle"])
        for (strategy, seed), curve in per_dataset.groupby(["strategy", "seed"], sort=True):
            rows.append({
                "dataset": dataset,
                "strategy": strategy,
                "seed": int(seed),
                "n_cycles": int(curve["cycle"].nunique()),
                "complete": set(curve["cycle"]) == all_cycles,
                "aulc": aulc(curve["n_labeled"], curve["test_acc"]),
            })
    return pd.DataFrame(rows, columns=AULC_SEED_COLUMNS)


def summarize_aulc(aulc_seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% t-interval of the AULC per (dataset, strategy), over complete curves only."""
    complete = aulc_seeds[aulc_seeds["complete"].astype(bool)]
    rows = [
        {"dataset": dataset, "strategy": strategy, **seed_summary(group["aulc"])}
        for (dataset, strategy), group in complete.groupby(["dataset", "strategy"], sort=True)
    ]
    return pd.DataFrame(rows, columns=AULC_SUMMARY_COLUMNS)


# ---------------------------------------------------------------- paired tests


# ---------------------------------------------------------------- penalty matrix


# ---------------------------------------------------------------- labels to reach an accuracy


def labels_to_reach(n_labeled: ArrayLike, acc: ArrayLike, target: float) -> float:
    """Labels at which the curve first reaches `target`, interpolating linearly between the two cycles
    around the crossing; NaN when it never does."""
    x, y = sorted_curve(n_labeled, acc)
    hits = np.flatnonzero(y >= target)
    if hits.size == 0:
        return math.nan
    k = int(hits[0])
    if k == 0:
        return float(x[0])
    return float(x[k - 1] + (target - y[k - 1]) * (x[k] - x[k - 1]) / (y[k] - y[k - 1]))


def near_chance(cycles: pd.DataFrame, chance: Mapping[str, float]) -> pd.DataFrame:
    """The budgets at which the models barely beat guessing: per dataset with a known chance accuracy (1 / its
    classes) and cycle, the mean test accuracy over every strategy and seed, where it is below chance +
    NEAR_CHANCE_SHARE * (1 - chance) (10 classes: below 19%). A comparison's AULC there measures an undertrained
    protocol, not the strategies."""
    rows = []
    for (dataset, cycle), group in cycles.groupby(["dataset", "cycle"], sort=True):
        level = chance.get(str(dataset))
        mean = float(group["test_acc"].mean())
        if level is not None and mean < level + NEAR_CHANCE_SHARE * (1 - level):
            rows.append({"dataset": dataset, "cycle": int(cycle), "n_labeled": float(group["n_labeled"].mean()),
                         "mean": mean, "chance": level})
    return _integral_labels(pd.DataFrame(rows, columns=NEAR_CHANCE_COLUMNS))


# ---------------------------------------------------------------- across datasets and power


# ---------------------------------------------------------------- seed planning


