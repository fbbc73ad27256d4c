"""The pairwise penalty matrix as BADGE (Ash et al., ICLR 2020) computes it: at each checkpoint where the baseline
has not yet converged, a strategy that beats another by a paired t-test adds 1/checkpoints to its row."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis.curves import t_test_p
from bench.analysis.paired import ALPHA

CHECKPOINT_SHARE = 0.99  # BADGE stops where the baseline's mean passes this share of its final mean


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
