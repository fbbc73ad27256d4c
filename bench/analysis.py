"""What a report shows, as numbers: the rows of RUN_DIR/cycles.parquet a report can use (load_cycles), every
statistic of one report over its settings (Analysis, made by analyse from bench.stats and bench.verdicts) and
the design a run folder records (stored_design). No words and no drawing: bench.prose and bench.tables turn these
numbers into sentences and tables, bench.report lays them out with bench.plots' figures and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats, verdicts
from bench.config import comparison_pairs
from bench.store import CONFIG, CYCLE_TYPES, CYCLES, ResultsError, read_cycles, read_json


def load_cycles(run_dir: Path) -> pd.DataFrame:
    """The rows of RUN_DIR/cycles.parquet that a report can use, typed (read and checked by the store; rows
    without a finite accuracy are left out and counted). Raises ResultsError."""
    cycles = read_cycles(run_dir)
    cycles = cycles.astype(CYCLE_TYPES)
    finite = np.isfinite(cycles["test_acc"])
    cycles = cycles[finite].reset_index(drop=True)
    cycles["dataset_spec"] = cycles["dataset"]  # as the run was given it (a suite's settings table shows it)
    cycles["dataset"] = cycles["dataset"].map(dataset_labels(cycles["dataset"].unique()))
    cycles.attrs["rows_without_accuracy"] = int((~finite).sum())  # said in the report's header
    if cycles.empty:
        raise ResultsError(f"{Path(run_dir) / CYCLES} has no finished cycles yet; run the benchmark first.")
    return cycles


def dataset_labels(specs: Iterable[str]) -> dict[str, str]:
    """The name a run gives a dataset given by path (npz:/data/slice.npz -> slice, imagefolder:/data/pets ->
    pets), for titles, file names and tables; the spec itself where two paths would share a name."""
    def label(spec: str) -> str:
        kind, is_path, where = spec.partition(":")
        if not is_path or kind not in ("npz", "imagefolder"):
            return spec
        path = Path(where)
        return path.stem if kind == "npz" else path.name or spec

    specs = [str(s) for s in specs]
    labels = {spec: label(spec) for spec in specs}
    shared = {v for v in labels.values() if list(labels.values()).count(v) > 1}
    return {spec: spec if labels[spec] in shared else labels[spec] for spec in specs}


# ---------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Analysis:
    """Every statistic the report shows, for all settings of a report: the datasets of one run folder, or the
    run folders of a suite (their "dataset" column then holds the setting's name)."""

    cycles: pd.DataFrame
    baseline: str
    summary: pd.DataFrame  # stats.summarize_cycles
    aulc_seeds: pd.DataFrame  # stats.aulc_per_seed
    aulc_summary: pd.DataFrame  # stats.summarize_aulc
    comparisons: pd.DataFrame  # stats.compare_to_baseline
    verdicts: pd.DataFrame  # bench.verdicts rows: the primary family, then the all-pairs family (if any)
    margin: float  # the equivalence margin (AULC fraction)
    plan: verdicts.SequentialPlan | None  # --seeds auto's design; None: fixed seeds
    history: list[dict]  # --seeds auto: each look reached
    efficiency: pd.DataFrame  # stats.label_efficiency
    planning: pd.DataFrame  # stats.seed_planning
    ranks: pd.DataFrame  # stats.mean_rank
    penalties: dict[str, pd.DataFrame]  # dataset -> stats.penalty_matrix
    wins: pd.DataFrame  # stats.win_tie_loss over the settings
    rank_test: stats.RankTest | None  # stats.friedman_nemenyi over the settings
    near_chance: pd.DataFrame  # stats.near_chance: the budgets where the models barely beat guessing


def analyse(cycles: pd.DataFrame, baseline: str = "random", margin: float = verdicts.MARGIN,
            plan: verdicts.SequentialPlan | None = None, order: Sequence[str] = (),
            chance: Mapping[str, float] | None = None) -> Analysis:
    """Every statistic of the report. `order`: the strategies as the user named them (a comparison without the
    baseline names its pair in that order; others follow, sorted); `chance`: each dataset's chance accuracy (1 /
    classes), where known, to tell the budgets at which the models barely beat guessing."""
    summary = stats.summarize_cycles(cycles)
    aulc_seeds = stats.aulc_per_seed(cycles)
    found, history = primary_verdicts(cycles, aulc_seeds, baseline, margin, plan, order)
    aulc_summary = stats.summarize_aulc(aulc_seeds)
    comparisons = stats.compare_to_baseline(cycles, baseline)
    if cycles["dataset"].nunique() > 1:  # the primary question is asked once per setting and strategy
        comparisons = stats.holm_across_datasets(comparisons)
    penalties = {  # only where some pair of strategies could be tested
        str(dataset): matrix
        for dataset, rows in cycles.groupby("dataset", sort=True)
        if rows["strategy"].nunique() > 1
        for matrix in [stats.penalty_matrix(rows, baseline)]
        if matrix.notna().to_numpy().any()
    }
    return Analysis(
        cycles=cycles, baseline=baseline, summary=summary, aulc_seeds=aulc_seeds, aulc_summary=aulc_summary,
        comparisons=comparisons, verdicts=found, margin=margin, plan=plan, history=history,
        efficiency=stats.label_efficiency(summary, baseline), planning=stats.seed_planning(comparisons),
        ranks=stats.mean_rank(aulc_summary), penalties=penalties, wins=stats.win_tie_loss(comparisons),
        rank_test=stats.friedman_nemenyi(aulc_summary), near_chance=stats.near_chance(cycles, chance or {}),
    )


def primary_verdicts(cycles: pd.DataFrame, aulc_seeds: pd.DataFrame, baseline: str, margin: float,
                     plan: verdicts.SequentialPlan | None, order: Sequence[str] = (),
                     ) -> tuple[pd.DataFrame, list[dict]]:
    """The primary family (against the baseline where a dataset has it, else every pair), by the fixed or the
    sequential design, and beside it the all-pairs family where the baseline is in and 3 or more strategies ran
    (fixed design, Holm over the pairs: each pair one verdict, whatever the baseline). Strategies in `order`
    come first, as named; any others follow, sorted."""
    names = {str(d): in_order(set(rows["strategy"]), order) for d, rows in cycles.groupby("dataset", sort=True)}
    primary = {d: comparison_pairs(s, baseline) for d, s in names.items()}
    history: list[dict] = []
    if plan is None:
        found = verdicts.fixed_verdicts(aulc_seeds, primary, verdicts.PRIMARY, margin)
    else:
        found, history = verdicts.sequential_verdicts(aulc_seeds, primary, plan)
    every = {d: comparison_pairs(s, "") for d, s in names.items() if baseline in s and len(s) > 2}
    if every:
        found = pd.concat([found, verdicts.fixed_verdicts(aulc_seeds, every, verdicts.ALL_PAIRS, margin)],
                          ignore_index=True)
    return found, history


def in_order(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """names, those in `order` first as ordered there, the rest sorted."""
    names = set(names)
    return [n for n in dict.fromkeys(order) if n in names] + sorted(names - set(order))


@dataclass(frozen=True)
class Design:
    """What a run folder's config.json tells the analysis beside the rows."""

    margin: float = verdicts.MARGIN  # the equivalence margin (AULC fraction)
    plan: verdicts.SequentialPlan | None = None  # --seeds auto's design; None: fixed seeds
    order: tuple[str, ...] = ()  # the strategies in the order the user named them
    chance: float | None = None  # 1 / the dataset's classes; None: not recorded


def stored_design(run_dir: Path) -> Design:
    """The equivalence margin and --seeds auto's plan that RUN_DIR/config.json records ("analysis"), the
    strategies in the order named and the dataset's chance accuracy; the defaults (margin 1 point, fixed seeds,
    sorted names, no chance level) for what a folder does not record."""
    path = Path(run_dir) / CONFIG
    payload = read_json(path) if path.exists() else None
    payload = payload if isinstance(payload, dict) else {}
    strategies = payload.get("strategies")
    order = tuple(strategies) if isinstance(strategies, list) and all(isinstance(s, str) for s in strategies) else ()
    dataset = payload.get("dataset")
    classes = dataset.get("classes") if isinstance(dataset, dict) else None
    chance = 1 / len(classes) if isinstance(classes, list) and len(classes) > 1 else None
    margin, plan = _stored_analysis(path, payload.get("analysis"))
    return Design(margin, plan, order, chance)


def _stored_analysis(path: Path, analysis: object) -> tuple[float, verdicts.SequentialPlan | None]:
    if not isinstance(analysis, dict):
        return verdicts.MARGIN, None
    try:
        margin = float(analysis.get("margin", verdicts.MARGIN))
        plan = verdicts.SequentialPlan.from_json(analysis["sequential"]) if analysis.get("sequential") else None
    except (KeyError, TypeError, ValueError) as err:
        raise ResultsError(f"{path}'s analysis section is not one this harness wrote ({type(err).__name__}: {err}): "
                           "restore it, or delete the section to report with the fixed design.") from None
    if not (math.isfinite(margin) and margin > 0):
        raise ResultsError(f"{path}'s analysis margin must be a positive number. Got {margin!r} instead.")
    return margin, plan


def dataset_rows(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The rows of one setting of an Analysis frame, renumbered from 0."""
    return frame[frame["dataset"] == dataset].reset_index(drop=True)
