"""Results across settings (datasets, protocols): mean ranks, Holm over every (setting, strategy) comparison,
wins/ties/losses, and Friedman's test with Nemenyi's critical difference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis.paired import ALPHA, PRIMARY, holm

RANK_COLUMNS = ["strategy", "mean_rank", "n_datasets"]


WIN_TIE_LOSS_COLUMNS = ["strategy", "baseline", "wins", "ties", "losses", "untested"]


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
