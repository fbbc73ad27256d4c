"""Labels saved against the baseline, per seed and paired: the labels a strategy's own curve needs to reach a target
accuracy, the labels the baseline's curve of the same seed needs, their difference, and the mean difference with a
95% Student-t interval over seeds.

The target is either the baseline's final accuracy *of the same seed* (the default form) or one fixed accuracy for
every seed (`--target-accuracy`). The per-seed target keeps the comparison inside the pair that the paired design
makes alike (one initial set, one set of initial weights): a seed whose baseline ends high asks more of the strategy
at that seed, and the baseline always reaches its own final accuracy, so only the strategy can fall short. A mean
target would leave the baseline short of it on about half the seeds and mix seeds' levels into every difference.

Labels needed is the first crossing of the target on the seed's own curve, interpolated linearly between the two
budgets around it (curves.labels_to_reach). A curve that never reaches the target is censored: it needs more than
its last n_labeled, and no value is made up for it. The interval is over the seeds where both curves reach the
target; censored seeds are counted beside it with the bound they imply (a strategy censored at a seed saves fewer
than baseline_labels - max_labels there), and since they are the seeds where the strategy did worst, an interval
that leaves them out favours the strategy: the report says so wherever a seed is censored.

Pure functions on cycles.parquet's rows; accuracies in 0..1, labels in examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis.curves import labels_to_reach, sorted_curve, t_interval

FINAL = "final"  # the target form: the baseline's final accuracy at each seed

SEED_COLUMNS = [
    "dataset", "strategy", "baseline", "target", "seed", "target_acc", "labels_needed", "reached", "max_labels",
    "baseline_labels", "baseline_reached", "baseline_max_labels", "saving",
]
SUMMARY_COLUMNS = [
    "dataset", "strategy", "baseline", "target", "n_seeds", "n_paired", "n_censored", "n_baseline_censored",
    "n_neither", "mean_saving", "ci_low", "ci_high", "mean_baseline_labels", "percent_saved", "censored_bound",
    "max_labels",
]


def target_name(target: float | None) -> str:
    """The target column's value: FINAL for the baseline's final accuracy per seed, '95%' for a fixed 0.95."""
    return FINAL if target is None else f"{100 * target:g}%"


def _complete_curves(rows: pd.DataFrame) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """(strategy, seed) -> its curve (labels, accuracy), for curves holding every cycle seen for the dataset: an
    unfinished job's last accuracy is not its final one."""
    every = set(rows["cycle"])
    return {(str(strategy), int(seed)): sorted_curve(curve["n_labeled"], curve["test_acc"])
            for (strategy, seed), curve in rows.groupby(["strategy", "seed"], sort=True)
            if set(curve["cycle"]) == every}


def seed_savings(cycles: pd.DataFrame, baseline: str = "random", target: float | None = None) -> pd.DataFrame:
    """One row per (dataset, strategy other than the baseline, seed that both ran to the end): the target accuracy,
    the labels each curve needs to reach it (NaN and reached False when it never does: censored), and saving =
    baseline_labels - labels_needed (positive: the strategy needs fewer labels; NaN where either is censored).
    target: None for the baseline's final accuracy at each seed, else one accuracy (0..1) for every seed."""
    rows = []
    for dataset, per_dataset in cycles.groupby("dataset", sort=True):
        curves = _complete_curves(per_dataset)
        for (strategy, seed), (x, y) in curves.items():
            base = curves.get((baseline, seed))
            if strategy == baseline or base is None:
                continue
            level = float(base[1][-1]) if target is None else float(target)
            needed, base_needed = labels_to_reach(x, y, level), labels_to_reach(*base, level)
            rows.append({
                "dataset": dataset, "strategy": strategy, "baseline": baseline, "target": target_name(target),
                "seed": seed, "target_acc": level, "labels_needed": needed, "reached": not math.isnan(needed),
                "max_labels": float(x[-1]), "baseline_labels": base_needed,
                "baseline_reached": not math.isnan(base_needed), "baseline_max_labels": float(base[0][-1]),
                "saving": base_needed - needed,
            })
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def summarize_savings(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, strategy, target) of seed_savings' rows: the seeds paired, those where both curves reach the
    target (n_paired), the mean saving over those with its 95% t-interval (NaN with fewer than 2), the baseline's
    mean labels over them and the saving as a percent of it; and the censored seeds: the strategy's alone
    (n_censored, with censored_bound, the largest saving any of them could have: max over them of baseline_labels
    - max_labels), the baseline's alone, and both."""
    rows = []
    for (dataset, strategy, target), group in seeds.groupby(["dataset", "strategy", "target"], sort=True):
        both = group[group["reached"] & group["baseline_reached"]]
        censored = group[~group["reached"] & group["baseline_reached"]]
        low, high = t_interval(both["saving"])
        mean = float(both["saving"].mean()) if len(both) else math.nan
        base_mean = float(both["baseline_labels"].mean()) if len(both) else math.nan
        rows.append({
            "dataset": dataset, "strategy": strategy, "baseline": group["baseline"].iloc[0], "target": target,
            "n_seeds": len(group), "n_paired": len(both), "n_censored": len(censored),
            "n_baseline_censored": int((group["reached"] & ~group["baseline_reached"]).sum()),
            "n_neither": int((~group["reached"] & ~group["baseline_reached"]).sum()),
            "mean_saving": mean, "ci_low": low, "ci_high": high, "mean_baseline_labels": base_mean,
            "percent_saved": 100 * mean / base_mean if base_mean else math.nan,
            "censored_bound": float((censored["baseline_labels"] - censored["max_labels"]).max())
            if len(censored) else math.nan,
            "max_labels": float(group["max_labels"].max()),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def labels_saved(cycles: pd.DataFrame, baseline: str = "random",
                 target: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per seed, summary) for the baseline's final accuracy at each seed and, when target is given, for that fixed
    accuracy too (the summary's rows in that order per dataset and strategy)."""
    seeds = seed_savings(cycles, baseline)
    if target is not None:
        seeds = pd.concat([seeds, seed_savings(cycles, baseline, target)], ignore_index=True)
    summary = summarize_savings(seeds)
    if not summary.empty:
        summary = summary.assign(_fixed=summary["target"] != FINAL).sort_values(
            ["dataset", "strategy", "_fixed"], kind="stable").drop(columns="_fixed").reset_index(drop=True)
    return seeds, summary
