"""What a report shows, as numbers: the rows of RUN_DIR/cycles.parquet a report can use (load_cycles), every
statistic of one report over its settings (Analysis, made by analyse from analysis.stats and analysis.verdicts) and
the design a run folder records (stored_design). No words and no drawing: report.text and report.tables turn these
numbers into sentences and tables, bench.report.layout lays them out with bench.report.plots' figures and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import across, cost, curves, paired, penalty, planning, savings, verdicts
from bench.analysis.families import ALL_PAIRS, CONTEXT, PRIMARY, families
from bench.results.store import CONFIG, CYCLE_TYPES, CYCLES, ResultsError, read_cycles, read_json


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
    summary: pd.DataFrame  # curves.summarize_cycles
    aulc_seeds: pd.DataFrame  # curves.aulc_per_seed
    aulc_summary: pd.DataFrame  # curves.summarize_aulc
    comparisons: pd.DataFrame  # paired.compare_to_baseline
    verdicts: pd.DataFrame  # bench.analysis.verdicts rows: the primary family, then the all-pairs family (if any)
    margin: float  # the equivalence margin (AULC fraction)
    plan: verdicts.SequentialPlan | None  # --seeds auto's design; None: fixed seeds
    history: list[dict]  # --seeds auto: each look reached
    savings: pd.DataFrame  # savings.labels_saved's summary: labels saved against the baseline, paired by seed
    savings_seeds: pd.DataFrame  # savings.labels_saved's rows per seed
    planning: pd.DataFrame  # planning.seed_planning
    ranks: pd.DataFrame  # across.mean_rank
    penalties: dict[str, pd.DataFrame]  # dataset -> penalty.penalty_matrix
    wins: pd.DataFrame  # across.win_tie_loss over the settings
    rank_test: across.RankTest | None  # across.friedman_nemenyi over the settings
    near_chance: pd.DataFrame  # curves.near_chance: the budgets where the models barely beat guessing
    cost: pd.DataFrame  # cost.cost_table: what a pick costs, machine-dependent, never part of a verdict
    compute: pd.DataFrame  # cost.compute_curves: accuracy against the compute spent
    tolerance: float = 0.0  # Design.tolerance: > 0 where the pairing is statistical (--nondeterministic)
    target: float | None = None  # --target-accuracy (0..1): labels saved to reach it too; None: not asked


def analyse(cycles: pd.DataFrame, baseline: str = "random", margin: float = verdicts.MARGIN,
            plan: verdicts.SequentialPlan | None = None, order: Sequence[str] = (),
            chance: Mapping[str, float] | None = None, asked: Sequence[str] = (), tolerance: float = 0.0,
            target: float | None = None) -> Analysis:
    """Every statistic of the report. `order`: the strategies in the order the folder records them (a pair
    reads in that order; others follow, sorted); `asked`: the strategies whose comparisons the run asked, in
    the order typed (bench.core.config.question; empty: every strategy); `chance`: each dataset's chance accuracy (1 /
    classes), where known, to tell the budgets at which the models barely beat guessing; `target`: a fixed
    accuracy (0..1) whose labels saved are counted beside those to the baseline's final accuracy."""
    summary = curves.summarize_cycles(cycles)
    aulc_seeds = curves.aulc_per_seed(cycles)
    found, history = primary_verdicts(cycles, aulc_seeds, baseline, margin, plan, order, asked)
    aulc_summary = curves.summarize_aulc(aulc_seeds)
    comparisons = paired.compare_to_baseline(cycles, baseline, tolerance)  # tolerance: stored_design's
    if cycles["dataset"].nunique() > 1:  # the primary question is asked once per setting and strategy
        comparisons = across.holm_across_datasets(comparisons)
    near = curves.near_chance(cycles, chance or {})
    saved_seeds, saved = savings.labels_saved(cycles, baseline, target)
    found = at_chance_undecided(found, near, cycles)
    penalties = {  # only where some pair of strategies could be tested
        str(dataset): matrix
        for dataset, rows in cycles.groupby("dataset", sort=True)
        if rows["strategy"].nunique() > 1
        for matrix in [penalty.penalty_matrix(rows, baseline)]
        if matrix.notna().to_numpy().any()
    }
    return Analysis(
        cycles=cycles, baseline=baseline, summary=summary, aulc_seeds=aulc_seeds, aulc_summary=aulc_summary,
        comparisons=comparisons, verdicts=found, margin=margin, plan=plan, history=history,
        savings=saved, savings_seeds=saved_seeds, planning=planning.seed_planning(comparisons),
        ranks=across.mean_rank(aulc_summary), penalties=penalties, wins=across.win_tie_loss(comparisons),
        rank_test=across.friedman_nemenyi(aulc_summary), near_chance=near, tolerance=tolerance, target=target,
        cost=cost.cost_table(cycles), compute=cost.compute_curves(cycles),
    )


def primary_verdicts(cycles: pd.DataFrame, aulc_seeds: pd.DataFrame, baseline: str, margin: float,
                     plan: verdicts.SequentialPlan | None, order: Sequence[str] = (), asked: Sequence[str] = (),
                     ) -> tuple[pd.DataFrame, list[dict]]:
    """The families of analysis.families.families per dataset: the primary one (the strategies `asked`, in the order
    typed; none asked: every strategy) by the fixed or the sequential design, then the context or all-pairs
    family (fixed design, Holm over its pairs). Strategies in `order` come first, as named; others follow,
    sorted. A plan made for another number of primary comparisons than the report's is refused."""
    names = {str(d): in_order(set(rows["strategy"]), [*asked, *order])
             for d, rows in cycles.groupby("dataset", sort=True)}
    found = {d: families(asked, s, baseline) for d, s in names.items()}
    primary = {d: f[PRIMARY] for d, f in found.items()}
    history: list[dict] = []
    if plan is None:
        frame = verdicts.fixed_verdicts(aulc_seeds, primary, PRIMARY, margin)
    else:
        wrong = {len(pairs) for pairs in primary.values()} - {plan.comparisons}
        if wrong:
            raise ResultsError(f"The recorded --seeds auto plan was made for {plan.comparisons} comparison(s), and "
                               f"the report's primary family against {baseline} has {wrong.pop()}: report with the "
                               "run's own --baseline, or delete config.json's analysis section to report with the "
                               "fixed design.")
        frame, history = verdicts.sequential_verdicts(aulc_seeds, primary, plan)
    for family in (CONTEXT, ALL_PAIRS):
        others = {d: f[family] for d, f in found.items() if f.get(family)}
        if others:
            frame = pd.concat([frame, verdicts.fixed_verdicts(aulc_seeds, others, family, margin)], ignore_index=True)
    return frame, history


def at_chance_undecided(found: pd.DataFrame, near: pd.DataFrame, cycles: pd.DataFrame) -> pd.DataFrame:
    """Where the models barely beat guessing at every budget (curves.near_chance), two strategies are alike
    because neither learned: an interval inside the margin says nothing about them, so no comparison there is
    called equivalent (noted "at chance")."""
    budgets = cycles.groupby("dataset")["cycle"].nunique()
    at_chance = {d for d, rows in near.groupby("dataset") if rows["cycle"].nunique() >= budgets.get(d, math.inf)}
    hit = found["dataset"].isin(at_chance) & (found["verdict"] == verdicts.EQUIVALENT)
    found = found.copy()
    found.loc[hit, "verdict"] = verdicts.UNDECIDED
    found.loc[hit, "note"] = AT_CHANCE
    return found


AT_CHANCE = "at chance at every budget"


def in_order(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """names, those in `order` first as ordered there, the rest sorted."""
    names = set(names)
    return [n for n in dict.fromkeys(order) if n in names] + sorted(names - set(order))


@dataclass(frozen=True)
class Design:
    """What a run folder's config.json tells the analysis beside the rows."""

    margin: float = verdicts.MARGIN  # the equivalence margin (AULC fraction)
    plan: verdicts.SequentialPlan | None = None  # --seeds auto's design; None: fixed seeds
    order: tuple[str, ...] = ()  # the strategies in the order the folder records them
    chance: float | None = None  # 1 / the dataset's classes; None: not recorded
    asked: tuple[str, ...] = ()  # the strategies the run's question names, in the order typed; (): every one
    baseline: str | None = None  # the baseline the run compared against; None: not recorded
    tolerance: float = 0.0  # accuracy within which a budget counts as identical (pairing_tolerance); 0: exactly


def stored_design(run_dir: Path) -> Design:
    """The equivalence margin and --seeds auto's plan that RUN_DIR/config.json records ("analysis"), the
    strategies in the order recorded and asked, and the dataset's chance accuracy; the defaults (margin 1 point,
    fixed seeds, sorted names, every strategy asked, no chance level) for what a folder does not record. A value
    no run writes raises ResultsError."""
    path = Path(run_dir) / CONFIG
    payload = read_json(path) if path.exists() else None
    payload = payload if isinstance(payload, dict) else {}
    strategies = payload.get("strategies")
    order = tuple(strategies) if isinstance(strategies, list) and all(isinstance(s, str) for s in strategies) else ()
    dataset = payload.get("dataset")
    classes = dataset.get("classes") if isinstance(dataset, dict) else None
    chance = 1 / len(classes) if isinstance(classes, list) and len(classes) > 1 else None
    analysis = payload.get("analysis")
    margin, plan = _stored_analysis(path, analysis)
    asked, baseline = _stored_question(path, analysis) if isinstance(analysis, dict) else ((), None)
    return Design(margin, plan, order, chance, asked, baseline, pairing_tolerance(payload))


def pairing_tolerance(payload: dict) -> float:
    """0 where seeds pair exactly (the CPU; CUDA in deterministic mode, which a folder that records no switch ran
    in). On CUDA after --nondeterministic, one seed's strategies differ by noise where they are identical by design
    (cycle 0), so a budget counts as identical when every paired difference is within one test example (1 / n_test
    accuracy): the resolution of the accuracy itself, not a tuned threshold."""
    protocol, dataset = payload.get("protocol"), payload.get("dataset")
    n_test = dataset.get("n_test") if isinstance(dataset, dict) else None
    if payload.get("device_type") != "cuda" or not isinstance(protocol, dict) or protocol.get("deterministic", True):
        return 0.0
    return 1 / n_test if isinstance(n_test, int) and n_test > 0 else 0.0


DESIGNS = ("fixed", "sequential")  # analysis.design as a run writes it


def _stored_analysis(path: Path, analysis: object) -> tuple[float, verdicts.SequentialPlan | None]:
    if not isinstance(analysis, dict):
        return verdicts.MARGIN, None
    try:
        margin = float(analysis.get("margin", verdicts.MARGIN))
        if analysis.get("design", "fixed") not in DESIGNS:
            raise ValueError(f"design {analysis['design']!r} is none of {', '.join(DESIGNS)}")
        plan = verdicts.SequentialPlan.from_json(analysis["sequential"]) if analysis.get("sequential") else None
        if (plan is not None) != (analysis.get("design") == "sequential"):
            raise ValueError(f"design {analysis.get('design')!r} does not match the plan recorded beside it")
        if plan is not None and plan.margin != margin:
            raise ValueError(f"margin {margin:g} is not the plan's {plan.margin:g}")
    except (KeyError, TypeError, ValueError) as err:
        raise ResultsError(f"{path}'s analysis section is not one this harness wrote ({type(err).__name__}: {err}): "
                           "restore it, or delete the section to report with the fixed design.") from None
    if not (math.isfinite(margin) and margin > 0):
        raise ResultsError(f"{path}'s analysis margin must be a positive number. Got {margin!r} instead.")
    return margin, plan


def _stored_question(path: Path, analysis: dict) -> tuple[tuple[str, ...], str | None]:
    asked, baseline = analysis.get("strategies", []), analysis.get("baseline")
    if not (isinstance(asked, list) and all(isinstance(s, str) for s in asked)) or not (
            baseline is None or isinstance(baseline, str)):
        raise ResultsError(f"{path}'s analysis section is not one this harness wrote (its strategies must be a list "
                           "of names and its baseline a name): restore it, or delete the section to report with the "
                           "fixed design.")
    return tuple(asked), baseline


def dataset_rows(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The rows of one setting of an Analysis frame, renumbered from 0."""
    return frame[frame["dataset"] == dataset].reset_index(drop=True)
