"""The run report: RUN_DIR/report/ holds report.md (findings in plain sentences, tables, plots), the tables
as CSV (full precision), Markdown and LaTeX under tables/, and seaborn plots under plots/. It reads
RUN_DIR/cycles.parquet and nothing else; the numbers come from bench.stats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench import plots, stats, verdicts
from bench.errors import UserError
from bench.store import CONFIG, CYCLE_TYPES, CYCLES, REPORT, ResultsError, atomic_write_folder, read_cycles, read_json

DPI = 120
DASH = "–"  # shown for a value that does not exist (too few seeds, not reached)


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
    palette: dict[str, plots.Style]  # strategy -> colour, marker and dashes, the same in every plot


def analyse(cycles: pd.DataFrame, baseline: str = "random", margin: float = verdicts.MARGIN,
            plan: verdicts.SequentialPlan | None = None) -> Analysis:
    summary = stats.summarize_cycles(cycles)
    aulc_seeds = stats.aulc_per_seed(cycles)
    found, history = primary_verdicts(cycles, aulc_seeds, baseline, margin, plan)
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
        cycles=cycles,
        baseline=baseline,
        summary=summary,
        aulc_seeds=aulc_seeds,
        aulc_summary=aulc_summary,
        comparisons=comparisons,
        verdicts=found,
        margin=margin,
        plan=plan,
        history=history,
        efficiency=stats.label_efficiency(summary, baseline),
        planning=stats.seed_planning(comparisons),
        ranks=stats.mean_rank(aulc_summary),
        penalties=penalties,
        wins=stats.win_tie_loss(comparisons),
        rank_test=stats.friedman_nemenyi(aulc_summary),
        palette=plots.strategy_styles(cycles["strategy"].unique()),
    )


def primary_verdicts(cycles: pd.DataFrame, aulc_seeds: pd.DataFrame, baseline: str, margin: float,
                     plan: verdicts.SequentialPlan | None) -> tuple[pd.DataFrame, list[dict]]:
    """The primary family (against the baseline where a dataset has it, else every pair), by the fixed or the
    sequential design, and beside it the all-pairs family where the baseline is in and 3 or more strategies ran
    (fixed design, Holm over the pairs: each pair one verdict, whatever the baseline)."""
    names = {str(d): sorted(set(rows["strategy"])) for d, rows in cycles.groupby("dataset", sort=True)}
    primary = {d: verdicts.comparison_pairs(s, baseline) for d, s in names.items()}
    history: list[dict] = []
    if plan is None:
        found = verdicts.fixed_verdicts(aulc_seeds, primary, verdicts.PRIMARY, margin)
    else:
        found, history = verdicts.sequential_verdicts(aulc_seeds, primary, plan)
    every = {d: verdicts.comparison_pairs(s, "") for d, s in names.items() if baseline in s and len(s) > 2}
    if every:
        found = pd.concat([found, verdicts.fixed_verdicts(aulc_seeds, every, verdicts.ALL_PAIRS, margin)],
                          ignore_index=True)
    return found, history


# ---------------------------------------------------------------- entry point


def stored_design(run_dir: Path) -> tuple[float, verdicts.SequentialPlan | None]:
    """The equivalence margin and --seeds auto's plan that RUN_DIR/config.json records ("analysis"); the defaults
    (margin 1 point, fixed seeds) for a folder without them."""
    path = Path(run_dir) / CONFIG
    payload = read_json(path) if path.exists() else None
    analysis = payload.get("analysis") if isinstance(payload, dict) else None
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


def write_report(run_dir: Path, baseline: str = "random", margin: float | None = None) -> Path:
    """Write RUN_DIR/report/ from RUN_DIR/cycles.parquet (and the design that config.json records) and return the
    path of report.md.

    Raises ResultsError (a ValueError and a bench.errors.UserError) when cycles.parquet is missing,
    unreadable or malformed, and UserError when the report cannot be written (a full disk, `report` being a
    file, a plot that cannot be saved): the previous report/ is then left as it was.
    """
    stored_margin, plan = stored_design(run_dir)
    return write_analysis(analyse(load_cycles(run_dir), baseline, margin or stored_margin, plan), Path(run_dir))


def report_folder(folder: Path, baseline: str, margin: float | None = None) -> tuple[Path, list[str]]:
    """Write FOLDER/report/ with the design config.json records (margin: None takes the recorded one); returns
    report.md's path and the console's verdict lines."""
    stored_margin, plan = stored_design(folder)
    result = analyse(load_cycles(folder), baseline, margin or stored_margin, plan)
    try:
        path = write_analysis(result, folder)
    except OSError as err:  # a full disk: the results are complete, only the report is missing
        raise UserError(f"Cannot write the report in {folder / REPORT} ({err.strerror or err}); the results are "
                        f"complete: free disk space, then run `run_bench.py report {folder}`.") from None
    return path, headline(result)


def write_analysis(result: Analysis, run_dir: Path) -> Path:
    """write_report for an analysis already made."""
    out = run_dir / REPORT
    runs = sorted(result.cycles["run"].astype(str).unique()) if "run" in result.cycles else [run_dir.name]
    # Written whole into a temporary folder that then takes report/'s place: a failure midway leaves the previous
    # report as it was, never half old and half new, and no file of an older report lingers beside a new one.
    atomic_write_folder(out, lambda tmp: write_files(result, header_lines(result, runs, "`cycles.parquet`"), tmp),
                        then=f"run `run_bench.py report {run_dir}` (the results are complete)")
    return out / "report.md"


def headline(result: Analysis) -> list[str]:
    """The primary verdicts, one console line each, for the end of a run."""
    several = result.cycles["dataset"].nunique() > 1
    primary = result.verdicts[result.verdicts["family"] == verdicts.PRIMARY]
    lines = [f"primary   {verdict_sentence(row, result, several)}" for _, row in primary.iterrows()]
    if result.plan is not None:
        lines.append(f"seeds     --seeds auto: {verdicts.stop_reason(result.history, result.plan)}")
    return lines


def verdict_sentence(row: pd.Series, result: Analysis, where: bool = False, bold: bool = False) -> str:
    """'a vs b: -2.1 AULC points (95% CI ...), Holm p = ..., 5 seeds: b better' and its kin, from a verdict row."""
    a, b = (f"**{row['strategy']}**" if bold else row["strategy"]), row["other"]
    head = f"{a} vs {b}" + (f" on {row['dataset']}" if where else "")
    n = int(row["n_pairs"])
    if n < 2:
        return f"{head}: fewer than 2 paired seeds with complete curves, not tested yet"
    sequential = result.plan is not None and row["family"] == verdicts.PRIMARY
    level = _confidence(row["level"])
    if sequential:
        interval = f"repeated {level} CI {_points(row['ci_low'])} to {_points(row['ci_high'])}"
        tested = (f"decided at {int(row['look'])} seeds" if row["verdict"] != verdicts.UNDECIDED
                  else _count(n, "seed"))
    else:
        adjusted = "95%" if level == "95%" else f"Holm-adjusted {level}"
        interval = f"{adjusted} CI {_points(row['ci_low'])} to {_points(row['ci_high'])}"
        tested = f"Holm {_p_is(row['p_holm'])}, {_count(n, 'seed')}"
    text = f"{head}: {_points(row['mean_diff'])} AULC points ({interval}), {tested}: "
    return text + _outcome(row, result, sequential)


def _outcome(row: pd.Series, result: Analysis, sequential: bool) -> str:
    margin = f"{100 * result.margin:g}"
    verdict = row["verdict"]
    if verdict == verdicts.BETTER:
        return f"{row['strategy']} better"
    if verdict == verdicts.WORSE:
        return f"{row['other']} better"
    if verdict == verdicts.EQUIVALENT:
        return f"equivalent within ±{margin} point{'s' if margin != '1' else ''}"
    if sequential:
        plan = result.plan
        if result.history and result.history[-1]["seeds"] == plan.looks[-1]:
            return f"undecided at --max-seeds {plan.looks[-1]}; raise --max-seeds to go on"
        return "undecided so far; run the same command to go on"
    needed = row["seeds_needed"]
    more = (f"about {int(needed)} seeds would tell a {margin}-point difference from none at this spread"
            if pd.notna(needed) else f"the spread asks more than {stats.MAX_PLANNED_SEEDS} seeds"
            if pd.notna(row["sd_diff"]) and row["sd_diff"] > 0 else "no spread to plan from")
    return f"undecided ({more}; --seeds auto runs seeds until it is decided)"


def _confidence(level: float) -> str:
    """The two-sided confidence of an interval at `level`: '95%', '98.33%'."""
    return f"{round(100 * (1 - level), 2):g}%"


def write_files(result: Analysis, header: list[str], out: Path, unit: str = "dataset") -> None:
    """report.md (header, then the primary verdicts, a section per setting, and what holds across settings),
    tables/ and plots/ into the (empty) folder out; `unit` names a setting in headings."""
    for folder in (out / "tables", out / "plots"):
        folder.mkdir()
    datasets = sorted(result.cycles["dataset"].unique())
    slugs = _slugs(datasets)
    lines = header + _primary_section(result, datasets, slugs, out, unit)
    for dataset in datasets:
        lines += _dataset_section(result, dataset, slugs[dataset], out, unit)
    if len(datasets) > 1:
        lines += _across_settings(result, out, unit)
    (out / "report.md").write_text("\n".join(lines).rstrip() + "\n")


def _slugs(datasets: list[str]) -> dict[str, str]:
    """File-name-safe, distinct names for datasets (npz:/path/x.npz -> npz-path-x.npz)."""
    slugs: dict[str, str] = {}
    for dataset in datasets:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-.") or "dataset"
        while slug in slugs.values():
            slug += "_"
        slugs[dataset] = slug
    return slugs


def header_lines(result: Analysis, runs: list[str], source: str, unit: str = "dataset") -> list[str]:
    cycles = result.cycles
    shape = ", ".join([_count(cycles["dataset"].nunique(), unit),
                       _count(cycles["strategy"].nunique(), "strategy", "strategies"),
                       _count(cycles["seed"].nunique(), "seed")])
    per_setting = f" and {unit}" if cycles["dataset"].nunique() > 1 else ""
    dropped = cycles.attrs.get("rows_without_accuracy", 0)
    left_out = f"; {_count(dropped, 'row')} without a finite test accuracy left out" if dropped else ""
    return [
        f"# Active-learning benchmark report: {', '.join(runs)}",
        "",
        f"Computed from {source} ({_count(len(cycles), 'row')}: {shape}{left_out}). Baseline: "
        f"`{result.baseline}`" + ("" if result.baseline in set(cycles["strategy"]) else " (not in these results: "
                                   "every pair of strategies is compared)") +
        ". Comparisons pair strategies by seed (same seed = same initial labeled set and "
        "weights). The primary endpoint is the AULC: each verdict is better, worse, equivalent within "
        f"±{_margin_text(result.margin)}, or undecided, read from an interval that carries the family's "
        f"correction (one family over every strategy{per_setting} compared). Per-budget tests are a secondary, "
        "exploratory family (paired t-test, Holm); other intervals are 95% Student-t intervals over seeds. "
        "Accuracies are in percent, differences in percentage points. Tables are also in `tables/` as CSV "
        "(full precision), Markdown and LaTeX.",
        "",
    ]


# ---------------------------------------------------------------- the headline: primary endpoint


def _primary_section(result: Analysis, datasets: list[str], slugs: dict[str, str], out: Path,
                     unit: str) -> list[str]:
    """The verdicts on the primary endpoint, per dataset, before anything else; then --seeds auto's looks and
    the all-pairs family."""
    primary = result.verdicts[result.verdicts["family"] == verdicts.PRIMARY]
    against = result.baseline in set(primary["other"])
    lines = ["## Primary endpoint: area under the learning curve "
             + (f"against {result.baseline}" if against else "between the strategies run"), ""]
    if primary.empty:
        return lines + [f"Only one strategy per {unit} was run, so there is nothing to compare.", ""]
    lines += [f"- {_design_text(result, primary, against, unit)}"]
    for dataset in datasets:
        rows = _rows(primary, dataset)
        if rows.empty:
            continue
        if len(datasets) > 1:
            lines += ["", f"### {unit.capitalize()} `{dataset}`", ""]
        lines += [f"- {verdict_sentence(row, result, bold=True)}." for _, row in rows.iterrows()]
        comparisons = _rows(result.comparisons, dataset)
        if not comparisons.empty:
            lines += [f"- {_secondary_sentence(comparisons, result.baseline, unit, len(datasets) > 1)}"]
        lines += [""]
        if not against and len(set(rows["strategy"]) | set(rows["other"])) > 2:  # every pair: the matrix, at a glance
            lines += _figure(out, f"pairwise_{slugs[dataset]}", "Pairwise AULC differences",
                             lambda ax, rows=rows, dataset=dataset: plots.pairwise(ax, rows, dataset),
                             size=_matrix_size(rows))
        lines += _table(out, f"primary_{slugs[dataset]}", rows, _verdict_display(rows, result),
                        _verdict_caption(result, verdicts.PRIMARY, _across(datasets, unit)))
    if result.plan is not None:
        lines += _looks_part(result, out)
    return lines + _all_pairs_part(result, datasets, slugs, out)


def _design_text(result: Analysis, primary: pd.DataFrame, against: bool, unit: str) -> str:
    k, n = len(primary), primary["dataset"].nunique()
    count = _count(k, "comparison") + (f" over {n} {unit}s" if n > 1 else "")
    family = (f"each strategy against {result.baseline} ({count}" if against else
              f"every pair of the strategies run, since `{result.baseline}` is not in this run ({count}; add "
              f"{result.baseline} to compare against random sampling")
    family += ")"
    margin = f"±{_margin_text(result.margin)}"
    rule = (f"better or worse when its interval excludes 0, equivalent when it lies within {margin} "
            "(two one-sided tests), undecided otherwise")
    if result.plan is None:
        return (f"Primary family: {family}. The normalised AULC per seed, paired by seed, two-sided paired t-test, "
                f"Holm over the family. Each verdict is read from the interval at the level Holm tests it at: "
                f"{rule}.")
    plan = result.plan
    return (f"Primary family: {family}. Seeds ran in rounds (`--seeds auto`, looks at "
            f"{', '.join(map(str, plan.looks))} seeds): a {verdicts.SEQUENTIAL_METHOD} (Pocock 1977; Jennison & "
            f"Turnbull 1989), nominal level {plan.nominal:.4f} at every look, so that the family's error is "
            f"at most {plan.alpha:g} over every comparison and every look. A comparison is decided at the first look "
            f"whose repeated interval says so: {rule}. {verdicts.stop_reason(result.history, plan).capitalize()}.")


def _margin_text(margin: float) -> str:
    """'1 AULC point', '0.5 AULC points'."""
    return f"{100 * margin:g} AULC point{'' if round(100 * margin, 9) == 1 else 's'}"


def _verdict_caption(result: Analysis, family: str, across: str) -> str:
    if family == verdicts.PRIMARY and result.plan is not None:
        return ("Primary endpoint: AULC of the strategy minus the other's, paired by seed (percentage points), with "
                "the repeated confidence interval of the look that decided it (or of the last look).")
    return (f"{'Primary endpoint' if family == verdicts.PRIMARY else 'Every pair'}: AULC of the strategy minus the "
            f"other's, paired by seed (percentage points); Holm over the family{across}; the interval is at the "
            "level Holm tests the comparison at; TOST p: the two one-sided tests of a difference of at least "
            f"±{100 * result.margin:g} points (before correction).")


def _verdict_display(rows: pd.DataFrame, result: Analysis) -> pd.DataFrame:
    def seeds(n: float) -> str:
        return DASH if pd.isna(n) else f"{int(n)}"

    sequential = result.plan is not None and (rows["family"] == verdicts.PRIMARY).all()
    frame = {
        "strategy": rows["strategy"], "other": rows["other"], "seeds": rows["n_pairs"].astype(str),
        "AULC diff (pts)": rows["mean_diff"].map(_points),
        "CI (pts)": [f"{_points(lo)} to {_points(hi)}" for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)],
        "CI level": rows["level"].map(lambda v: DASH if pd.isna(v) else _confidence(v)),
    }
    if sequential:
        frame["decided at"] = rows["look"].map(seeds)
    else:
        frame.update({"t-test p": rows["t_p"].map(_pvalue), "Holm p": rows["p_holm"].map(_pvalue),
                      "TOST p": rows["tost_p"].map(_pvalue), "seeds needed": rows["seeds_needed"].map(seeds)})
    frame["verdict"] = rows["verdict"]
    return pd.DataFrame(frame)


def _looks_part(result: Analysis, out: Path) -> list[str]:
    history = pd.DataFrame([{"seeds": h["seeds"], "decided": "; ".join(h["decided"]) or DASH,
                             "still undecided": ", ".join(h["undecided"]) or DASH} for h in result.history],
                           columns=["seeds", "decided", "still undecided"])
    reason = verdicts.stop_reason(result.history, result.plan).capitalize()
    caption = ("Each look: the comparisons it decided and those left for the next round (only their strategies ran "
               "more seeds).")
    return ["### The looks of `--seeds auto`", "", f"{reason}.", ""] + _table(out, "looks", history,
                                                                              history.astype(str), caption)


def _all_pairs_part(result: Analysis, datasets: list[str], slugs: dict[str, str], out: Path) -> list[str]:
    pairs = result.verdicts[result.verdicts["family"] == verdicts.ALL_PAIRS]
    if pairs.empty:
        return []
    lines = ["## Every pair of strategies", "",
             f"- A family of its own beside the primary one: every pair of strategies on the AULC, paired by seed, "
             f"Holm over the {_count(len(pairs), 'pair')}, so each pair has one verdict whatever the baseline"
             + ("; with `--seeds auto` it is the fixed design on the seeds the rounds ran, so read it as "
                "exploratory." if result.plan is not None else "."), ""]
    for dataset in datasets:
        rows = _rows(pairs, dataset)
        if rows.empty:
            continue
        if len(datasets) > 1:
            lines += [f"### `{dataset}`", ""]
        decided = rows[rows["verdict"] != verdicts.UNDECIDED]
        lines += [f"- {verdict_sentence(row, result)}." for _, row in decided.iterrows()]
        lines += [f"- Undecided: {_count(len(rows) - len(decided), 'pair')} of {len(rows)}.", ""]
        lines += _figure(out, f"pairwise_{slugs[dataset]}", "Pairwise AULC differences",
                         lambda ax, rows=rows, dataset=dataset: plots.pairwise(ax, rows, dataset),
                         size=_matrix_size(rows))
        lines += _table(out, f"pairs_{slugs[dataset]}", rows, _verdict_display(rows, result),
                        _verdict_caption(result, verdicts.ALL_PAIRS, ""))
    return lines


def _matrix_size(pairs: pd.DataFrame) -> tuple[float, float]:
    k = len(set(pairs["strategy"]) | set(pairs["other"]))
    return 3.5 + 0.8 * k, 2.8 + 0.6 * k


def _across(datasets: list[str], unit: str) -> str:
    return f" in all {len(datasets)} {unit}s together" if len(datasets) > 1 else ""


def _secondary_sentence(comparisons: pd.DataFrame, baseline: str, unit: str, several: bool) -> str:
    """The secondary family in one sentence."""
    within = f" of this {unit}" if several else ""
    secondary = comparisons[(comparisons["family"] == stats.SECONDARY) & comparisons["t_p"].notna()]
    left_out = comparisons[comparisons["family"] == stats.LEFT_OUT]
    text = (f"Secondary (exploratory): the paired t-test against {baseline} at each budget, Holm over "
            f"{_count(len(secondary), 'strategy-budget pair')}{within}")
    if left_out.empty:
        return text + f"; no budget left out (every budget has some strategy that differs from {baseline})."
    labels = _label_list(left_out.groupby("cycle")["n_labeled"].mean())
    return (text + f"; budgets of {labels} labels left out because every strategy equals {baseline} there on "
            "every seed (same initial set and weights), so they cannot differ.")


def _test_columns(tests: pd.DataFrame) -> dict[str, object]:
    """The columns every paired-test table shows: difference, interval, p-values, verdict."""
    return {
        "95% CI (pts)": [f"{_points(lo)} to {_points(hi)}" for lo, hi in
                         zip(tests["ci_low"], tests["ci_high"], strict=True)],
        "t-test p": tests["t_p"].map(_pvalue),
        "Holm p": tests["p_holm"].map(_pvalue),
        "Wilcoxon p": tests["wilcoxon_p"].map(_pvalue),
        "significant": tests["significant"].map({True: "yes", False: "no"}),
    }


def _dataset_section(result: Analysis, dataset: str, slug: str, out: Path, unit: str) -> list[str]:
    cycles = result.cycles[result.cycles["dataset"] == dataset]
    has_baseline = result.baseline in set(cycles["strategy"])
    lines = [f"## {unit.capitalize()} `{dataset}`", "", "### Findings", ""]
    lines += [f"- {s}" for s in _findings(result, dataset, cycles, has_baseline)]
    lines += [""] + _curves_part(result, dataset, slug, out)
    if has_baseline:
        lines += _comparisons_part(result, dataset, slug, out)
    lines += _aulc_part(result, dataset, slug, out)
    if dataset in result.penalties:
        checkpoints = stats.badge_checkpoints(cycles, result.baseline)
        stop = (f"stopping before {result.baseline}'s mean passes 0.99 of its final mean" if has_baseline else
                f"up to the largest size ({result.baseline} is not in this run, so no saturation stop)")
        lines += _penalty_part(result.penalties[dataset], checkpoints, dataset, slug, out, stop)
    if has_baseline:
        lines += _efficiency_part(result, dataset, slug, out)
    return lines


def _curves_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    summary = _rows(result.summary, dataset)
    return (["### Learning curves", ""]
            + _figure(out, f"learning_curves_{slug}", "Learning curves",
                      lambda ax: plots.learning_curves(ax, summary, result.palette, dataset), size=(8.0, 4.2))
            + _table(out, f"learning_curve_{slug}", summary, _learning_curve_display(summary),
                     "Test accuracy (%), mean ± half-width of the 95% t-interval over seeds; columns are "
                     "labeled examples."))


def _comparisons_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    comparisons = _rows(result.comparisons, dataset)
    comparisons = comparisons[comparisons["metric"] == "test_acc"].reset_index(drop=True)
    if comparisons.empty:
        return []
    return ([f"### Difference to {result.baseline} at each budget (secondary, exploratory)", ""]
            + _figure(out, f"difference_{slug}", f"Difference to {result.baseline}",
                      lambda ax: plots.differences(ax, comparisons, result.palette, dataset), size=(8.0, 4.2))
            + _table(out, f"comparisons_{slug}", comparisons, _comparison_display(comparisons),
                     f"Strategy minus {result.baseline}, paired by seed (percentage points); Holm over the "
                     "strategy-budget pairs of the secondary family; budgets \"left out\" are identical for "
                     "every strategy and not tested."))


def _aulc_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    aulc_seeds = _rows(result.aulc_seeds, dataset)
    aulc_summary = _rows(result.aulc_summary, dataset)
    return (["### Area under the learning curve", ""]
            + _figure(out, f"aulc_{slug}", "AULC per strategy",
                      lambda ax: plots.aulc(ax, aulc_seeds, aulc_summary, result.palette, dataset), size=(8.0, 4.2))
            + _table(out, f"aulc_{slug}", aulc_summary, _aulc_display(aulc_summary),
                     "Trapezoid area under accuracy over labeled examples, divided by the label range (%), "
                     "over seeds with every cycle."))


def _penalty_part(matrix: pd.DataFrame, checkpoints: list[float], dataset: str, slug: str,
                  out: Path, stop: str) -> list[str]:
    raw = matrix.rename_axis(index="row beats column", columns=None).reset_index()
    return (["### Penalty matrix", ""]
            + _figure(out, f"penalty_{slug}", "Penalty matrix", lambda ax: plots.penalty(ax, matrix, dataset),
                      size=(4.0 + 0.75 * len(matrix), 2.8 + 0.6 * len(matrix)))
            + _table(out, f"penalty_{slug}", raw, _penalty_display(matrix),
                     f"Share of the {_count(len(checkpoints), 'checkpoint')} ({_label_list(pd.Series(checkpoints))} "
                     f"labels: the initial size, then initial + 2^(k-1) x budget, {stop}) at which the row "
                     "strategy is significantly better than the column strategy, as in the released aggregation "
                     "script of Ash et al. 2020 (BADGE): "
                     "one-sample t-test of the paired differences, p < 0.05, no correction. We pair by seed "
                     "where BADGE pairs runs by file order, capped at 5 runs. The last row sums each column: "
                     "how often that strategy is beaten, lower is better."))


def _efficiency_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    efficiency = _rows(result.efficiency, dataset)
    return (["### Label efficiency", ""]
            + _table(out, f"label_efficiency_{slug}", efficiency, _efficiency_display(efficiency),
                     f"Labels each mean curve needs to reach {result.baseline}'s final mean accuracy "
                     "(linear interpolation between cycles)."))


def _rows(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    return frame[frame["dataset"] == dataset].reset_index(drop=True)


# ---------------------------------------------------------------- findings in words


def _findings(result: Analysis, dataset: str, cycles: pd.DataFrame, has_baseline: bool) -> list[str]:
    baseline = result.baseline
    sentences = [_design_sentence(cycles)]
    if not has_baseline:
        names = ", ".join(sorted(cycles["strategy"].unique()))
        sentences.append(f"The baseline `{baseline}` is not in this dataset's results (strategies: {names}), "
                         "so comparisons against it and label efficiency are skipped; choose one of these "
                         "strategies as the baseline to get them.")
    else:
        comparisons = _rows(result.comparisons, dataset)
        others = sorted(set(cycles["strategy"]) - {baseline})
        if not others:
            sentences.append(f"Only the baseline `{baseline}` was run, so there is nothing to compare.")
        for strategy in others:
            sentences += _strategy_sentences(comparisons, cycles, strategy, baseline)
        sentences += _efficiency_sentences(_rows(result.efficiency, dataset), baseline)
    sentences.append(_aulc_sentence(_rows(result.aulc_summary, dataset), _rows(result.aulc_seeds, dataset)))
    if dataset in result.penalties:
        ranking = stats.penalty_ranking(result.penalties[dataset]).dropna()
        order = ", ".join(f"{name} {value:.2f}" for name, value in ranking.items())
        sentences.append(f"Penalty-matrix column sums (how often a strategy is significantly beaten, summed "
                         f"shares of BADGE checkpoints; lower is better): {order}.")
    elif cycles["strategy"].nunique() > 1:
        sentences.append("No penalty matrix: no BADGE checkpoint (random already within 0.99 of its final "
                         "mean accuracy at the initial size).")
    return sentences


def _design_sentence(cycles: pd.DataFrame) -> str:
    seeds = cycles.groupby("strategy")["seed"].nunique()
    if seeds.nunique() == 1:
        per = f"{_count(int(seeds.iloc[0]), 'seed')} each"
    else:
        per = "seeds: " + ", ".join(f"{name} {int(n)}" for name, n in seeds.items())
    labels = cycles["n_labeled"]
    return (f"{_count(len(seeds), 'strategy', 'strategies')} ({per}); "
            f"{_count(cycles['cycle'].nunique(), 'cycle')} from "
            f"{labels.min():,.0f} to {labels.max():,.0f} labeled examples.")


def _strategy_sentences(
    comparisons: pd.DataFrame, cycles: pd.DataFrame, strategy: str, baseline: str
) -> list[str]:
    rows = comparisons[comparisons["strategy"] == strategy]
    per_cycle = rows[rows["metric"] == "test_acc"]
    sentences = _pairing_sentences(cycles, strategy, baseline)
    tested = per_cycle[(per_cycle["family"] == stats.SECONDARY) & per_cycle["t_p"].notna()]
    if tested.empty:
        return sentences + [f"**{strategy}** cannot be tested against {baseline} at any budget: fewer than 2 "
                            "paired seeds, or no budget where some strategy differs."]
    better = tested[tested["significant"] & (tested["mean_diff"] > 0)]
    worse = tested[tested["significant"] & (tested["mean_diff"] < 0)]
    text = f"**{strategy}** beats {baseline} at {len(better)} of {_count(len(tested), 'tested budget')}"
    text += " in the secondary, exploratory family (Holm over strategy-budget pairs)"
    where = [f"better at {_label_list(better['n_labeled'])} labels"] if len(better) else []
    if len(worse):
        text += f" and is worse at {len(worse)}"
        where.append(f"worse at {_label_list(worse['n_labeled'])} labels")
    sentences.append(f"{text} ({'; '.join([*where, _pairs_text(tested['n_pairs'])])}).")
    return sentences


def _pairing_sentences(cycles: pd.DataFrame, strategy: str, baseline: str) -> list[str]:
    mine = set(cycles.loc[cycles["strategy"] == strategy, "seed"])
    theirs = set(cycles.loc[cycles["strategy"] == baseline, "seed"])
    common = len(mine & theirs)
    sentences = []
    for who, lacking in ((strategy, theirs - mine), (baseline, mine - theirs)):
        if lacking:
            sentences.append(f"{who} has no results for {_count(len(lacking), 'seed', show=False)} "
                             f"{_int_list(lacking)}, so {strategy} and {baseline} are compared on the "
                             f"{_count(common, 'seed')} both have.")
    return sentences


def _efficiency_sentences(efficiency: pd.DataFrame, baseline: str) -> list[str]:
    sentences = []
    for row in efficiency[efficiency["strategy"] != baseline].itertuples(index=False):
        target = f"{baseline}'s final mean accuracy of {_percent(row.target_acc)}%"
        if not row.reached:
            sentences.append(f"{row.strategy} does not reach {target} within {row.max_labels:,.0f} labels.")
            continue
        saved = row.labels_saved
        if abs(saved) < 0.5:
            change = f"as many as {baseline}"
        else:
            word = "fewer" if saved > 0 else "more"
            change = f"{abs(saved):,.0f} {word} than {baseline}'s {row.baseline_labels:,.0f} " \
                     f"({abs(row.percent_saved):.0f}% {word})"
        needed = f"{row.labels_needed:,.0f}"
        sentences.append(f"{row.strategy} reaches {target} with about {needed} labels, {change}.")
    return sentences


def _aulc_sentence(aulc_summary: pd.DataFrame, aulc_seeds: pd.DataFrame) -> str:
    incomplete = int((~aulc_seeds["complete"].astype(bool)).sum())
    skipped = f" ({_count(incomplete, 'incomplete curve')} left out)" if incomplete else ""
    if aulc_summary.empty:
        return f"No strategy has a complete learning curve, so there is no AULC{skipped}."
    best_first = aulc_summary.sort_values("mean", ascending=False)
    order = ", ".join(f"{r.strategy} {_percent(r.mean)}%" for r in best_first.itertuples(index=False))
    return f"Mean AULC, best first: {order}{skipped}."


def _count(n: int, word: str, plural: str | None = None, show: bool = True) -> str:
    """'1 seed', '3 seeds' (or just the word with show=False)."""
    text = word if n == 1 else plural or f"{word}s"
    return f"{n} {text}" if show else text


def _label_list(labels: pd.Series) -> str:
    return ", ".join(f"{value:,.0f}" for value in sorted(labels))


def _int_list(values: set[int]) -> str:
    return ", ".join(str(v) for v in sorted(values))


def _pairs_text(n_pairs: pd.Series) -> str:
    low, high = int(n_pairs.min()), int(n_pairs.max())
    return f"{high} paired seeds" if low == high else f"{low} to {high} paired seeds"


# ---------------------------------------------------------------- number formats


def _percent(x: float) -> str:
    return DASH if pd.isna(x) else f"{100 * x:.1f}"


def _points(x: float) -> str:
    return DASH if pd.isna(x) else f"{100 * x:+.1f}"


def _pvalue(p: float) -> str:
    if pd.isna(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """'p = 0.012' or 'p < 0.001' for a sentence."""
    text = _pvalue(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _labels(n: float) -> str:
    return DASH if pd.isna(n) else f"{n:,.0f}"


def _mean_pm(mean: float, low: float, high: float) -> str:
    if pd.isna(low):
        return _percent(mean)
    return f"{_percent(mean)} ± {100 * (high - low) / 2:.1f}"


# ---------------------------------------------------------------- display tables


def _learning_curve_display(summary: pd.DataFrame) -> pd.DataFrame:
    labels = summary.groupby("cycle")["n_labeled"].mean()
    cells = summary.assign(cell=[_mean_pm(r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()])
    wide = cells.pivot(index="strategy", columns="cycle", values="cell").fillna(DASH)
    wide.columns = [_labels(labels[c]) for c in wide.columns]
    return wide.reset_index()


def _comparison_display(comparisons: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": comparisons["strategy"],
        "labels": ["AULC" if m == "aulc" else _labels(n) for m, n in
                   zip(comparisons["metric"], comparisons["n_labeled"], strict=True)],
        "pairs": comparisons["n_pairs"].astype(str),
        "diff (pts)": comparisons["mean_diff"].map(_points),
        **_test_columns(comparisons),
        "family": comparisons["family"],
    })


def _aulc_display(aulc_summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": aulc_summary["strategy"],
        "seeds": aulc_summary["n_seeds"].astype(str),
        "AULC (%)": aulc_summary["mean"].map(_percent),
        "95% CI (%)": [f"{_percent(lo)} to {_percent(hi)}" for lo, hi in
                       zip(aulc_summary["ci_low"], aulc_summary["ci_high"], strict=True)],
        "std (pts)": aulc_summary["std"].map(_percent),
    })


def _penalty_display(matrix: pd.DataFrame) -> pd.DataFrame:
    shown = matrix.apply(lambda column: column.map(lambda v: DASH if pd.isna(v) else f"{v:.2f}"))
    shown.loc["column sum"] = [f"{v:.2f}" for v in matrix.sum(axis=0, skipna=True)]
    return shown.rename_axis(index="better \\ worse", columns=None).reset_index()


def _efficiency_display(efficiency: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": efficiency["strategy"],
        "target (%)": efficiency["target_acc"].map(_percent),
        "labels needed": [_labels(n) if reached else "not reached" for n, reached in
                          zip(efficiency["labels_needed"], efficiency["reached"], strict=True)],
        "labels saved": efficiency["labels_saved"].map(lambda v: DASH if pd.isna(v) else f"{v:+,.0f}"),
        "saved (%)": efficiency["percent_saved"].map(lambda v: DASH if pd.isna(v) else f"{v:+.0f}"),
    })


def _across_settings(result: Analysis, out: Path, unit: str) -> list[str]:
    """What holds over the settings: mean AULC ranks with Friedman's test and the Nemenyi critical difference,
    wins/ties/losses against the baseline (the primary family), and BADGE's penalty matrix summed."""
    n = result.cycles["dataset"].nunique()
    ranks = result.ranks
    lines = [f"## Across {unit}s", ""]
    if not ranks.empty:
        best = ranks.iloc[0]
        lines += [f"- By mean AULC rank (1 = best) over {n} {unit}s, {best['strategy']} comes first (mean rank "
                  f"{best['mean_rank']:.2f})."]
    lines += [f"- {_rank_test_sentence(result.rank_test, unit)}"]
    if not result.wins.empty:
        lines += [f"- {_wins_sentence(result.wins, n, unit)}"]
    lines += [""]
    display = pd.DataFrame({"strategy": ranks["strategy"], "mean rank": ranks["mean_rank"].map(lambda v: f"{v:.2f}"),
                            f"{unit}s": ranks["n_datasets"].astype(str)})
    lines += _table(out, "mean_rank", ranks, display, f"Rank of each strategy by mean AULC per {unit}, averaged "
                    f"over the {unit}s it was run on.")
    if result.rank_test is not None:
        test = result.rank_test
        lines += _figure(out, "critical_difference", "Mean ranks with the Nemenyi critical difference",
                         lambda ax: plots.critical_difference(ax, test, result.palette, unit),
                         size=(7.0, 1.2 + 0.45 * len(test.mean_ranks)))
    if not result.wins.empty:
        wins = result.wins
        lines += _table(out, "win_tie_loss", wins, wins.drop(columns="baseline").astype(str),
                        f"Against {result.baseline} on the primary endpoint, over the {unit}s: significantly better "
                        f"(Holm over every strategy and {unit}), not significant, significantly worse, untested.")
    if len(result.penalties) > 1:
        total = stats.summed_penalties(list(result.penalties.values()))
        raw = total.rename_axis(index="row beats column", columns=None).reset_index()
        lines += (["### Penalty matrix summed over " + f"{unit}s", ""]
                  + _figure(out, "penalty_summed", "Summed penalty matrix",
                            lambda ax: plots.penalty(ax, total, f"{len(result.penalties)} {unit}s",
                                                     vmax=float(len(result.penalties))),
                            size=(4.0 + 0.75 * len(total), 2.8 + 0.6 * len(total)))
                  + _table(out, "penalty_summed", raw, _penalty_display(total),
                           f"Sum over the {len(result.penalties)} {unit}s of their penalty matrices (each entry of a "
                           f"{unit} is the share of its BADGE checkpoints at which the row strategy significantly "
                           "beats the column one), as Ash et al. 2020 sum over settings; the last row sums each "
                           "column: lower is better."))
    return lines


def _rank_test_sentence(test: stats.RankTest | None, unit: str) -> str:
    if test is None:
        return (f"No rank test: Friedman's test needs at least 3 strategies run in at least 2 {unit}s.")
    k, cd = len(test.strategies), test.critical_difference
    text = (f"Friedman's test of equal mean ranks over {test.n_settings} {unit}s and {k} strategies: chi-square "
            f"{test.statistic:.2f}, {_p_is(test.p)}. Nemenyi critical difference at alpha 0.05: {cd:.2f} ranks")
    if cd >= k - 1:
        return (text + f", more than the largest possible difference ({k - 1}), so with {test.n_settings} "
                f"{unit}s no pair of strategies can be told apart by rank: add {unit}s for a verdict.")
    ranks = test.mean_ranks
    apart = [f"{a} ahead of {b}" for a in ranks for b in ranks if ranks[b] - ranks[a] > cd]
    return text + (f"; pairs further apart than that: {', '.join(apart)}." if apart else
                   "; no pair of strategies is further apart than that.")


def _wins_sentence(wins: pd.DataFrame, n: int, unit: str) -> str:
    parts = [f"{r.strategy} {r.wins}/{r.ties}/{r.losses}" + (f" ({r.untested} untested)" if r.untested else "")
             for r in wins.itertuples(index=False)]
    return (f"Wins/ties/losses against {wins['baseline'].iloc[0]} over the {n} {unit}s (primary endpoint, "
            f"Holm over every strategy and {unit}): {', '.join(parts)}.")


# ---------------------------------------------------------------- table writers


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table: first column left-aligned, the others right-aligned."""
    def cells(values: Iterable[object]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    rule = "| " + " | ".join(":---" if i == 0 else "---:" for i in range(frame.shape[1])) + " |"
    body = [cells(row) for row in frame.itertuples(index=False)]
    return "\n".join([cells(frame.columns), rule, *body])


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def latex_table(frame: pd.DataFrame) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); first column left-aligned, the others right."""
    def cells(values: Iterable[object]) -> str:
        return " & ".join(latex_escape(str(v)) for v in values) + r" \\"

    align = "l" + "r" * (frame.shape[1] - 1)
    body = [cells(row) for row in frame.itertuples(index=False)]
    return "\n".join([rf"\begin{{tabular}}{{{align}}}", r"\toprule", cells(frame.columns), r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}"])


def _table(out: Path, stem: str, raw: pd.DataFrame, display: pd.DataFrame, caption: str) -> list[str]:
    """Write tables/STEM.csv (raw numbers), .md and .tex (display); return report.md lines."""
    raw.to_csv(out / "tables" / f"{stem}.csv", index=False)
    markdown = markdown_table(display)
    (out / "tables" / f"{stem}.md").write_text(markdown + "\n")
    (out / "tables" / f"{stem}.tex").write_text(latex_table(display) + "\n")
    return [f"{caption} (`tables/{stem}.csv`)", "", markdown, ""]


# ---------------------------------------------------------------- plots


def _figure(
    out: Path, stem: str, alt: str, draw: Callable[[Axes], None], size: tuple[float, float] = (6.4, 4.2)
) -> list[str]:
    """Draw on a fresh Agg-backed figure (no pyplot state), save plots/STEM.png, return report.md lines."""
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=size, layout="constrained")
        draw(figure.subplots())
    try:
        figure.savefig(out / "plots" / f"{stem}.png", dpi=DPI)
    except (ValueError, RuntimeError) as err:  # matplotlib refuses, e.g. an image over 2**16 pixels a side
        reason = (str(err).strip().splitlines() or [""])[0]
        raise UserError(f"Cannot save the plot plots/{stem}.png ({type(err).__name__}: {reason}); the report was "
                        "not written (the previous one is left as it was) and the results are complete.") from None
    return [f"![{alt}](plots/{stem}.png)", ""]
