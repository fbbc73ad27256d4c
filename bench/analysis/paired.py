"""Paired tests against a baseline: the paired t-test with the Wilcoxon signed-rank test beside it, Holm's
correction, and the comparisons in two families (primary: the AULC, Holm over the strategies; secondary,
exploratory: per budget, Holm over strategies x budgets). Every comparison pairs strategies by seed (same seed =
same initial labeled set and weights), using only the seeds both sides have."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from bench.analysis.curves import aulc_per_seed, t_interval, t_test_p

ALPHA = 0.05  # significance level, applied after Holm correction


# The exact two-sided signed-rank test cannot go below 2 / 2**n: n = 5 gives 0.0625, n = 6 gives 0.031.
MIN_WILCOXON_PAIRS = 6


# Paired differences closer together than this are "all equal" (float noise of acc_a - acc_b).
EQUAL_ATOL = 1e-12


COMPARISON_COLUMNS = [
    "dataset", "strategy", "baseline", "metric", "cycle", "n_labeled", "n_pairs", "unpaired_seeds",
    "mean_diff", "sd_diff", "ci_low", "ci_high", "t_p", "t_note", "wilcoxon_p", "wilcoxon_note",
    "p_holm", "significant", "family",
]


# Holm families of compare_to_baseline (the "family" column):
PRIMARY = "primary"  # the AULC per strategy: Holm over the strategies compared with the baseline


SECONDARY = "secondary"  # per-budget tests, exploratory: Holm over strategies x budgets


LEFT_OUT = "left out"  # a budget at which every strategy equals the baseline on every seed: not tested


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of a against b over seeds; differences are a - b."""

    n_pairs: int
    mean_diff: float  # mean of a - b
    sd_diff: float  # standard deviation (ddof=1) of a - b
    ci_low: float  # 95% t-interval of the mean difference
    ci_high: float
    t_p: float  # two-sided p of the paired t-test (see paired_test for equal differences)
    t_note: str  # why t_p is NaN or not a t-test p; "" otherwise
    wilcoxon_p: float  # two-sided Wilcoxon signed-rank p; NaN when too few non-zero differences
    wilcoxon_note: str


def paired_test(a: ArrayLike, b: ArrayLike) -> PairedTest:
    """Paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank test of a against b.

    Degenerate differences follow one monotone rule. Otherwise scipy's t-test p stands. When every
    difference is equal and nonzero (sd 0) the t statistic is +-inf, which scipy itself answers with p = 0
    when the floats cancel exactly (and NaN when they do not): we give p = 0 in both cases, so a difference
    that is the same on every seed is never less significant than a noisier one of the same sign and size.
    All differences zero: t is 0/0 and p = 1 (no difference seen). The Wilcoxon p is scipy's, whose exact
    test already is monotone (a constant shift gets its floor 2 / 2**n).
    """
    a = np.asarray(a, dtype=float)  # [n_pairs]
    b = np.asarray(b, dtype=float)  # [n_pairs]
    diff = a - b  # [n_pairs]
    low, high = t_interval(diff)
    t_p, t_note = _t_test_p(a, b)
    w_p, w_note = _wilcoxon_p(a, b)
    return PairedTest(
        n_pairs=int(diff.size),
        mean_diff=float(diff.mean()) if diff.size else math.nan,
        sd_diff=float(diff.std(ddof=1)) if diff.size > 1 else math.nan,
        ci_low=low,
        ci_high=high,
        t_p=t_p,
        t_note=t_note,
        wilcoxon_p=w_p,
        wilcoxon_note=w_note,
    )


def _t_test_p(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    return paired_t_p(a - b)


def paired_t_p(diff: np.ndarray) -> tuple[float, str]:
    """The two-sided paired t-test's p of differences [n_pairs], with paired_test's monotone rule for equal ones,
    and why it is NaN or not a t-test p ("" otherwise)."""
    if diff.size < 2:
        return math.nan, "fewer than 2 paired seeds"
    if np.ptp(diff) <= EQUAL_ATOL:
        if abs(diff[0]) <= EQUAL_ATOL:
            return 1.0, "all differences zero: p set to 1"
        return 0.0, "all differences equal and nonzero: t infinite, p set to 0"
    return t_test_p(diff), ""


def _wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    diff = a - b  # [n_pairs]
    diff = np.where(np.abs(diff) <= EQUAL_ATOL, 0.0, diff)  # float noise counts as a tie at zero
    nonzero = int(np.count_nonzero(diff))
    if nonzero < MIN_WILCOXON_PAIRS:
        return math.nan, f"needs {MIN_WILCOXON_PAIRS} non-zero differences to reach p<0.05, has {nonzero}"
    return float(stats.wilcoxon(diff).pvalue), ""


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and are not part of the family.

    Sorted ascending, the k-th smallest (k from 0) of m is multiplied by m - k; a running maximum keeps
    the adjusted values in the same order as the raw ones, and they are capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)  # [n_tests]
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]  # indices of tested p, smallest first
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def _by_seed(frame: pd.DataFrame, value: str) -> pd.Series:
    """Values indexed by seed (rows of one strategy at one cycle, or one strategy's AULC rows)."""
    return pd.Series(frame[value].to_numpy(), index=pd.Index(frame["seed"].to_numpy(), name="seed"), name=value)


def _pair(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Values of a and b on the seeds both have, and the seeds only one of them has."""
    common = a.index.intersection(b.index).sort_values()
    unpaired = sorted(int(s) for s in a.index.symmetric_difference(b.index))
    return a.loc[common].to_numpy(float), b.loc[common].to_numpy(float), unpaired


def _comparison_row(test: PairedTest, unpaired: list[int], **keys: object) -> dict[str, object]:
    return {**keys, "n_pairs": test.n_pairs, "unpaired_seeds": ", ".join(map(str, unpaired)),
            "mean_diff": test.mean_diff, "sd_diff": test.sd_diff, "ci_low": test.ci_low,
            "ci_high": test.ci_high, "t_p": test.t_p, "t_note": test.t_note,
            "wilcoxon_p": test.wilcoxon_p, "wilcoxon_note": test.wilcoxon_note,
            "identical": test.n_pairs > 0 and test.t_note.startswith("all differences zero")}


def compare_to_baseline(cycles: pd.DataFrame, baseline: str = "random", tolerance: float = 0.0) -> pd.DataFrame:
    """Paired comparison of every strategy against `baseline`, per cycle (metric "test_acc") and on the
    AULC (metric "aulc", complete curves only), per dataset. Differences are strategy - baseline.

    Two Holm families per dataset (the "family" column). PRIMARY: the AULC rows, Holm over the strategies
    compared. SECONDARY (exploratory): the per-budget rows, Holm over strategies x budgets, except the
    budgets at which every paired difference of every strategy is exactly zero (cycle 0 when no strategy
    touches the backbone: same initial set and weights per seed); those are LEFT_OUT with p_holm NaN. tolerance: a
    run whose pairing is statistical (CUDA's nondeterministic kernels) leaves out the budgets at which every paired
    difference is at most this (bench.analysis.record.pairing_tolerance: one test example), not exactly zero.
    `significant` is p_holm < ALPHA within the row's family. Datasets without the baseline are left out.
    """
    aulc_seeds = aulc_per_seed(cycles)
    aulc_seeds = aulc_seeds[aulc_seeds["complete"].astype(bool)]
    frames = []
    for dataset, per_dataset in cycles.groupby("dataset", sort=True):
        if baseline not in set(per_dataset["strategy"]):
            continue
        rows = _cycle_comparisons(per_dataset, baseline, tolerance) + _aulc_comparisons(
            aulc_seeds[aulc_seeds["dataset"] == dataset], baseline
        )
        frame = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "identical"])
        frame["family"] = np.where(frame["metric"] == "aulc", PRIMARY, SECONDARY)
        per_cycle = frame[frame["metric"] == "test_acc"]
        identical = per_cycle.groupby("cycle")["identical"].transform("all").astype(bool)
        frame.loc[identical[identical].index, "family"] = LEFT_OUT
        for family in (PRIMARY, SECONDARY):
            members = frame["family"] == family
            frame.loc[members, "p_holm"] = holm(frame.loc[members, "t_p"].to_numpy(float))
        frame["significant"] = frame["p_holm"] < ALPHA  # NaN compares False
        frame = frame.drop(columns="identical")
        frames.append(frame)
    if not frames:
        return _typed_comparisons(pd.DataFrame(columns=COMPARISON_COLUMNS))
    return _typed_comparisons(pd.concat(frames, ignore_index=True))


def _cycle_comparisons(per_dataset: pd.DataFrame, baseline: str, tolerance: float = 0.0) -> list[dict[str, object]]:
    rows = []
    dataset = per_dataset["dataset"].iloc[0]
    base = dict(tuple(per_dataset[per_dataset["strategy"] == baseline].groupby("cycle")))  # cycle -> rows
    for strategy, own in per_dataset[per_dataset["strategy"] != baseline].groupby("strategy", sort=True):
        for cycle, mine in own.groupby("cycle", sort=True):
            if cycle not in base:
                continue
            theirs = base[cycle]
            a, b, unpaired = _pair(_by_seed(mine, "test_acc"), _by_seed(theirs, "test_acc"))
            labels = np.concatenate([mine["n_labeled"].to_numpy(float), theirs["n_labeled"].to_numpy(float)])
            rows.append(_comparison_row(
                paired_test(a, b), unpaired, dataset=dataset, strategy=strategy, baseline=baseline,
                metric="test_acc", cycle=int(cycle), n_labeled=float(labels.mean()),
            ))
            if tolerance > 0 and a.size:
                # 1e-12: k / n - j / n is not exactly (k - j) / n in floats
                rows[-1]["identical"] = bool(np.all(np.abs(a - b) <= tolerance + 1e-12))
    return rows


def _aulc_comparisons(aulc_seeds: pd.DataFrame, baseline: str) -> list[dict[str, object]]:
    rows = []
    base = aulc_seeds[aulc_seeds["strategy"] == baseline]
    for strategy, own in aulc_seeds[aulc_seeds["strategy"] != baseline].groupby("strategy", sort=True):
        a, b, unpaired = _pair(_by_seed(own, "aulc"), _by_seed(base, "aulc"))
        rows.append(_comparison_row(
            paired_test(a, b), unpaired, dataset=own["dataset"].iloc[0], strategy=strategy,
            baseline=baseline, metric="aulc", cycle=None, n_labeled=math.nan,
        ))
    return rows


def _typed_comparisons(frame: pd.DataFrame) -> pd.DataFrame:
    frame["cycle"] = pd.array(frame["cycle"].tolist(), dtype="Int64")  # <NA> on AULC rows
    for column in ("n_labeled", "mean_diff", "sd_diff", "ci_low", "ci_high", "t_p", "wilcoxon_p", "p_holm"):
        frame[column] = frame[column].astype(float)
    frame["n_pairs"] = frame["n_pairs"].astype(int)
    frame["significant"] = frame["significant"].astype(bool)
    return frame
