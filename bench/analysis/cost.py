"""What a pick costs, from cycles.parquet's timing and memory columns: per strategy, the selection's seconds per
cycle (mean and max), the training seconds, and the selection's peak memory (select_peak_mb, select_rise_mb and
select_memory, which bench.training.memory measures in the worker); and each strategy's accuracy against the
compute it has spent.

Machine-dependent numbers: they describe a run on its hardware and load, and never enter a verdict. A folder
written before a column existed reports it as missing (NaN), not as zero.

Pure functions on DataFrames; seconds and MiB."""

from __future__ import annotations

import math

import pandas as pd

COST_COLUMNS = [
    "dataset", "strategy", "n_seeds", "n_selections", "select_mean_s", "select_max_s", "train_mean_s",
    "train_total_s", "peak_mb", "rise_mb", "memory",
]
COMPUTE_COLUMNS = ["dataset", "strategy", "cycle", "n_labeled", "n_seeds", "compute_s", "mean"]


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column, all NaN where the folder predates it."""
    return pd.to_numeric(rows[name], errors="coerce") if name in rows else pd.Series(math.nan, index=rows.index)


def selections(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of cycles that selected: every cycle but the dataset's last (the last cycle acquires nothing)."""
    last = rows.groupby("dataset")["cycle"].transform("max")
    return rows[rows["cycle"] < last]


def cost_table(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, strategy): seeds, selecting cycles, selection seconds per cycle (mean, max), training
    seconds per cycle (mean) and per job (mean over seeds of the sum over cycles), the selection's peak memory and
    its rise above the level at the selection's start (max over cycles, MiB), and what measured it (bench.training.
    memory's sources, joined; '' where no row says)."""
    rows = []
    picked = selections(cycles)
    for (dataset, strategy), group in cycles.groupby(["dataset", "strategy"], sort=True):
        chosen = picked[(picked["dataset"] == dataset) & (picked["strategy"] == strategy)]
        select = _column(chosen, "select_seconds")
        train = _column(group, "train_seconds")
        sources = set(chosen["select_memory"].dropna().astype(str)) if "select_memory" in chosen else set()
        rows.append({
            "dataset": dataset, "strategy": strategy, "n_seeds": int(group["seed"].nunique()),
            "n_selections": len(chosen), "select_mean_s": select.mean(), "select_max_s": select.max(),
            "train_mean_s": train.mean(),
            "train_total_s": train.groupby(group["seed"]).sum(min_count=1).mean(),
            "peak_mb": _column(chosen, "select_peak_mb").max(), "rise_mb": _column(chosen, "select_rise_mb").max(),
            "memory": ", ".join(sorted(sources - {""})),
        })
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def compute_curves(cycles: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, strategy, cycle): the mean over seeds of the compute spent by the time the cycle's accuracy was
    measured (training seconds of cycles 0..c plus the selection seconds of cycles 0..c-1: a cycle selects after it
    is evaluated) and the mean test accuracy. Empty where the folder has no timing columns."""
    if "train_seconds" not in cycles or "select_seconds" not in cycles:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    frame = cycles.sort_values("cycle").assign(train=_column(cycles, "train_seconds"),
                                               select=_column(cycles, "select_seconds"))
    jobs = frame.groupby(["dataset", "strategy", "seed"], sort=False)
    frame["compute_s"] = jobs["train"].cumsum() + jobs["select"].cumsum() - frame["select"]
    rows = [
        {"dataset": dataset, "strategy": strategy, "cycle": int(cycle), "n_labeled": float(group["n_labeled"].mean()),
         "n_seeds": int(group["seed"].nunique()), "compute_s": float(group["compute_s"].mean()),
         "mean": float(group["test_acc"].mean())}
        for (dataset, strategy, cycle), group in frame.groupby(["dataset", "strategy", "cycle"], sort=True)
    ]
    return pd.DataFrame(rows, columns=COMPUTE_COLUMNS)
