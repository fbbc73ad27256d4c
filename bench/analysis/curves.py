"""Statistics over the rows of cycles.parquet: learning-curve summaries, area under the learning curve,
paired tests against a baseline with Holm correction in two families (primary: the AULC, Holm over the
strategies; secondary, exploratory: per budget, Holm over strategies x budgets), the pairwise penalty
matrix as BADGE computes it, label efficiency, seed planning and ranks across datasets.

Pure functions on DataFrames: nothing here reads files, plots or prints. Accuracies stay in 0..1; the
report turns them into percent and percentage points. Everything is computed per dataset, and every
comparison pairs strategies by seed (same seed = same initial labeled set and weights), using only the
seeds both sides have.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special, stats

CONFIDENCE = 0.95  # two-sided confidence level of every interval
ALPHA = 0.05  # significance level, applied after Holm correction
# The exact two-sided signed-rank test cannot go below 2 / 2**n: n = 5 gives 0.0625, n = 6 gives 0.031.
MIN_WILCOXON_PAIRS = 6
# Paired differences closer together than this are "all equal" (float noise of acc_a - acc_b).
EQUAL_ATOL = 1e-12

SUMMARY_COLUMNS = ["dataset", "strategy", "cycle", "n_labeled", "n_seeds", "mean", "std", "ci_low", "ci_high"]
AULC_SEED_COLUMNS = ["dataset", "strategy", "seed", "n_cycles", "complete", "aulc"]
AULC_SUMMARY_COLUMNS = ["dataset", "strategy", "n_seeds", "mean", "std", "ci_low", "ci_high"]
COMPARISON_COLUMNS = [
    "dataset", "strategy", "baseline", "metric", "cycle", "n_labeled", "n_pairs", "unpaired_seeds",
    "mean_diff", "sd_diff", "ci_low", "ci_high", "t_p", "t_note", "wilcoxon_p", "wilcoxon_note",
    "p_holm", "significant", "family",
]
# Holm families of compare_to_baseline (the "family" column):
PRIMARY = "primary"  # the AULC per strategy: Holm over the strategies compared with the baseline
SECONDARY = "secondary"  # per-budget tests, exploratory: Holm over strategies x budgets
LEFT_OUT = "left out"  # a budget at which every strategy equals the baseline on every seed: not tested
POWER = 0.8  # power that seed planning aims for
PLANNED_EFFECTS = (0.01, 0.005)  # AULC differences seed planning sizes for: 1 and 0.5 points
MAX_PLANNED_SEEDS = 1000  # seed planning answers NaN ("more than this") beyond
PLANNING_COLUMNS = ["dataset", "strategy", "baseline", "n_pairs", "sd_diff", "seeds_1pt", "seeds_half_pt"]
CHECKPOINT_SHARE = 0.99  # BADGE stops where the baseline's mean passes this share of its final mean
EFFICIENCY_COLUMNS = [
    "dataset", "strategy", "baseline", "target_acc", "labels_needed", "reached", "max_labels",
    "baseline_labels", "labels_saved", "percent_saved",
]
RANK_COLUMNS = ["strategy", "mean_rank", "n_datasets"]
WIN_TIE_LOSS_COLUMNS = ["strategy", "baseline", "wins", "ties", "losses", "untested"]
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


# ---------------------------------------------------------------- penalty matrix


def badge_checkpoints(cycles: pd.DataFrame, baseline: str = "random") -> list[float]:
    """The label sizes at which BADGE's aggregation script (Ash et al., ICLR 2020) tests, for one dataset.

    The initial size n0 (the smallest n_labeled), then n0 + 2**(k-1) * budget for k = 1, 2, ..., where the
    budget is the step from the smallest to the second smallest size. The list stops before the first size
    beyond the baseline's largest size (as the script's endSamp), and before the first size at which the
    baseline's mean accuracy over seeds exceeds CHECKPOINT_SHARE of its mean at that largest size (the
    saturated tail, where every strategy ties, would otherwise dilute the shares). Without the baseline only
    the size limit applies, with the largest size of any strategy. Sizes the data lack are skipped.
    """
    sizes = np.sort(cycles["n_labeled"].astype(float).unique())  # [n_sizes]
    if sizes.size < 2:
        return [float(s) for s in sizes]
    initial, budget, largest = float(sizes[0]), float(sizes[1] - sizes[0]), float(sizes[-1])
    base = cycles[cycles["strategy"] == baseline].groupby("n_labeled")["test_acc"].mean()
    limit = CHECKPOINT_SHARE * float(base.loc[base.index.max()]) if len(base) else math.inf
    largest = float(base.index.max()) if len(base) else largest
    checkpoints, size, k = [], initial, 0
    while size <= largest:
        if size in base.index and float(base.loc[size]) > limit:
            break
        if np.isclose(sizes, size).any():
            checkpoints.append(size)
        k += 1
        size = initial + 2.0 ** (k - 1) * budget
    return checkpoints


def penalty_matrix(cycles: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Pairwise penalty matrix of one dataset, as BADGE's released aggregation script computes it.

    At each of the badge_checkpoints, for each ordered pair (i, j), a one-sample t-test
    (scipy.stats.ttest_1samp) of the differences i - j paired by seed, at ALPHA with no multiplicity
    correction; entry (i, j) gains 1 / n_checkpoints when p < ALPHA and the mean difference favours i
    ("row beats column"). A checkpoint where all differences are zero (scipy's p is NaN) or fewer than 2
    seeds pair adds nothing. We pair by seed where BADGE pairs runs by file order, capped at 5 runs. The
    column sum of j counts how often j is beaten, so a lower column sum is better. The diagonal is NaN;
    the whole matrix is NaN when there is no checkpoint.
    """
    if cycles["dataset"].nunique() > 1:
        raise ValueError("penalty_matrix takes the rows of one dataset; filter on 'dataset' first.")
    names = sorted(set(cycles["strategy"]))
    checkpoints = badge_checkpoints(cycles, baseline)
    matrix = pd.DataFrame(0.0 if checkpoints else math.nan, index=names, columns=names)
    for size in checkpoints:
        at_size = cycles[np.isclose(cycles["n_labeled"].astype(float), size)]
        by_seed = at_size.pivot_table(index="seed", columns="strategy", values="test_acc")  # [n_seeds, n_strat]
        beats = _beats(by_seed.to_numpy(float))  # [n_strat, n_strat]
        present = list(by_seed.columns)
        matrix.loc[present, present] += beats / len(checkpoints)
    for name in names:
        matrix.loc[name, name] = math.nan
    matrix.index.name, matrix.columns.name = "better", "worse"
    return matrix


def _beats(accs: np.ndarray) -> np.ndarray:
    """[k, k] 1.0 where column i beats column j of accs ([n_seeds, k], NaN where a seed has no value): the
    one-sample t-test of the differences i - j over the seeds both have, p < ALPHA, mean favouring i. One scipy
    call over every pair when no value is missing; pair by pair otherwise."""
    k = accs.shape[1]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: scipy says NaN
        if accs.shape[0] < 2:
            return np.zeros((k, k))
        if not np.isnan(accs).any():
            diffs = accs[:, :, None] - accs[:, None, :]  # [n_seeds, k, k]
            p = stats.ttest_1samp(diffs, 0.0, axis=0).pvalue  # [k, k]
            return ((p < ALPHA) & (diffs.mean(axis=0) > 0)).astype(float)
        beats = np.zeros((k, k))
        for i in range(k):
            for j in range(k):
                diff = accs[:, i] - accs[:, j]
                diff = diff[~np.isnan(diff)]  # [n_pairs]
                if i != j and diff.size >= 2:
                    beats[i, j] = float(t_test_p(diff) < ALPHA and diff.mean() > 0)
        return beats


def penalty_ranking(matrix: pd.DataFrame) -> pd.Series:
    """Column sums of the penalty matrix (how often each strategy is beaten), lowest (best) first; NaN
    for a strategy never tested against any other."""
    return matrix.sum(axis=0, skipna=True, min_count=1).sort_values(kind="stable").rename("penalty")


# ---------------------------------------------------------------- label efficiency


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


def label_efficiency(summary: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Labels each strategy's mean curve needs to reach the baseline's final mean accuracy, per dataset.

    The baseline's own labels use the same rule (normally its final n_labeled), so its saving is 0.
    labels_saved = baseline_labels - labels_needed (positive = fewer labels); NaN when not reached.
    """
    rows = []
    for dataset, per_dataset in summary.groupby("dataset", sort=True):
        base = per_dataset[per_dataset["strategy"] == baseline].sort_values("n_labeled")
        if base.empty:
            continue
        target = float(base["mean"].iloc[-1])
        base_labels = labels_to_reach(base["n_labeled"], base["mean"], target)
        for strategy, curve in per_dataset.groupby("strategy", sort=True):
            needed = labels_to_reach(curve["n_labeled"], curve["mean"], target)
            rows.append({
                "dataset": dataset, "strategy": strategy, "baseline": baseline, "target_acc": target,
                "labels_needed": needed, "reached": not math.isnan(needed),
                "max_labels": float(curve["n_labeled"].max()), "baseline_labels": base_labels,
                "labels_saved": base_labels - needed,
                "percent_saved": 100 * (base_labels - needed) / base_labels,
            })
    return pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)


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


def mean_rank(aulc_summary: pd.DataFrame) -> pd.DataFrame:
    """Mean over datasets of each strategy's rank by mean AULC (1 = best, ties share the average rank),
    with the number of datasets it was ranked on; best first."""
    ranked = aulc_summary.dropna(subset=["mean"]).copy()
    ranked["rank"] = ranked.groupby("dataset")["mean"].rank(ascending=False, method="average")
    table = ranked.groupby("strategy")["rank"].agg(mean_rank="mean", n_datasets="count").reset_index()
    return table.sort_values(["mean_rank", "strategy"], kind="stable", ignore_index=True)[RANK_COLUMNS]


def holm_across_datasets(comparisons: pd.DataFrame) -> pd.DataFrame:
    """compare_to_baseline's table with the PRIMARY family widened to every dataset (setting) it holds: Holm
    over strategies x settings, as a report covering several settings asks "does A beat the baseline here?"
    once per setting and strategy. The secondary family stays per setting."""
    frame = comparisons.copy()
    members = frame["family"] == PRIMARY
    frame.loc[members, "p_holm"] = holm(frame.loc[members, "t_p"].to_numpy(float))
    frame["significant"] = frame["p_holm"] < ALPHA
    return frame


def win_tie_loss(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, over the datasets (settings) of the primary rows: wins (significantly better than the
    baseline after Holm), losses (significantly worse), ties (tested, not significant) and untested (fewer
    than 2 paired seeds)."""
    primary = comparisons[comparisons["family"] == PRIMARY]
    rows = []
    for (strategy, baseline), group in primary.groupby(["strategy", "baseline"], sort=True):
        tested = group[group["t_p"].notna()]
        wins = int((tested["significant"] & (tested["mean_diff"] > 0)).sum())
        losses = int((tested["significant"] & (tested["mean_diff"] < 0)).sum())
        rows.append({"strategy": strategy, "baseline": baseline, "wins": wins, "ties": len(tested) - wins - losses,
                     "losses": losses, "untested": len(group) - len(tested)})
    return pd.DataFrame(rows, columns=WIN_TIE_LOSS_COLUMNS)


@dataclass(frozen=True)
class RankTest:
    """Friedman's test of equal mean ranks over settings, with the Nemenyi critical difference (Demsar 2006):
    two strategies whose mean ranks differ by more than `critical_difference` differ at ALPHA."""

    strategies: tuple[str, ...]  # the strategies ranked in every setting
    n_settings: int
    statistic: float  # Friedman's chi-square (scipy.stats.friedmanchisquare, tie-corrected)
    p: float
    critical_difference: float
    mean_ranks: dict[str, float]  # 1 = best AULC


def friedman_nemenyi(aulc_summary: pd.DataFrame, alpha: float = ALPHA) -> RankTest | None:
    """Friedman's test on the mean AULC of the strategies present in every dataset (setting), blocks =
    settings; the Nemenyi critical difference q / sqrt(2) * sqrt(k (k + 1) / (6 N)) with q the studentized
    range quantile (scipy.stats.studentized_range, infinite degrees of freedom). None with fewer than 3
    strategies or 2 settings, where the test is not defined."""
    table = aulc_summary.pivot_table(index="dataset", columns="strategy", values="mean").dropna(axis=1)
    k, n = table.shape[1], table.shape[0]
    if k < 3 or n < 2:
        return None
    statistic, p = stats.friedmanchisquare(*(table[c].to_numpy(float) for c in table.columns))
    ranks = table.rank(axis=1, ascending=False, method="average").mean(axis=0)
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return RankTest(strategies=tuple(map(str, table.columns)), n_settings=n, statistic=float(statistic),
                    p=float(p), critical_difference=q * math.sqrt(k * (k + 1) / (6 * n)),
                    mean_ranks={str(name): float(r) for name, r in ranks.sort_values(kind="stable").items()})


def summed_penalties(matrices: list[pd.DataFrame]) -> pd.DataFrame:
    """BADGE's penalty matrix over several settings: the sum of the per-setting matrices (entries a setting
    could not test add nothing; the diagonal stays NaN)."""
    names = sorted(set().union(*(m.index for m in matrices)))
    total = pd.DataFrame(0.0, index=names, columns=names)
    for matrix in matrices:
        total = total.add(matrix.reindex(index=names, columns=names).fillna(0.0))
    for name in names:
        total.loc[name, name] = math.nan
    total.index.name, total.columns.name = "better", "worse"
    return total


# ---------------------------------------------------------------- seed planning


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
