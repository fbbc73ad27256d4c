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

from bench import stats
from bench.errors import UserError
from bench.store import CYCLE_TYPES, CYCLES, REPORT, ResultsError, atomic_write_folder, read_cycles

DPI = 120
DASH = "–"  # shown for a value that does not exist (too few seeds, not reached)
Color = tuple[float, float, float]


def load_cycles(run_dir: Path) -> pd.DataFrame:
    """The rows of RUN_DIR/cycles.parquet that a report can use, typed (read and checked by the store; rows
    without a finite accuracy are left out and counted). Raises ResultsError."""
    cycles = read_cycles(run_dir)
    cycles = cycles.astype(CYCLE_TYPES)
    finite = np.isfinite(cycles["test_acc"])
    cycles = cycles[finite].reset_index(drop=True)
    cycles.attrs["rows_without_accuracy"] = int((~finite).sum())  # said in the report's header
    if cycles.empty:
        raise ResultsError(f"{Path(run_dir) / CYCLES} has no finished cycles yet; run the benchmark first.")
    return cycles


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
    efficiency: pd.DataFrame  # stats.label_efficiency
    planning: pd.DataFrame  # stats.seed_planning
    ranks: pd.DataFrame  # stats.mean_rank
    penalties: dict[str, pd.DataFrame]  # dataset -> stats.penalty_matrix
    wins: pd.DataFrame  # stats.win_tie_loss over the settings
    rank_test: stats.RankTest | None  # stats.friedman_nemenyi over the settings
    palette: dict[str, Color]  # strategy -> colour, the same in every plot


def analyse(cycles: pd.DataFrame, baseline: str = "random") -> Analysis:
    summary = stats.summarize_cycles(cycles)
    aulc_seeds = stats.aulc_per_seed(cycles)
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
        efficiency=stats.label_efficiency(summary, baseline),
        planning=stats.seed_planning(comparisons),
        ranks=stats.mean_rank(aulc_summary),
        penalties=penalties,
        wins=stats.win_tie_loss(comparisons),
        rank_test=stats.friedman_nemenyi(aulc_summary),
        palette=strategy_palette(cycles["strategy"].unique()),
    )


def strategy_palette(strategies: Iterable[object]) -> dict[str, Color]:
    """A fixed colour per strategy: sorted names mapped onto a seaborn palette."""
    names = sorted({str(s) for s in strategies})
    colors = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colors, strict=True))


# ---------------------------------------------------------------- entry point


def write_report(run_dir: Path, baseline: str = "random") -> Path:
    """Write RUN_DIR/report/ from RUN_DIR/cycles.parquet and return the path of report.md.

    Raises ResultsError (a ValueError and a bench.errors.UserError) when cycles.parquet is missing,
    unreadable or malformed, and UserError when the report cannot be written (a full disk, `report` being a
    file, a plot that cannot be saved): the previous report/ is then left as it was.
    """
    return write_analysis(analyse(load_cycles(run_dir), baseline), Path(run_dir))


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
    """The primary verdicts and the seed planning, one console line each, for the end of a run."""
    lines = []
    for row in result.comparisons[result.comparisons["family"] == stats.PRIMARY].itertuples(index=False):
        where = f" on {row.dataset}" if result.cycles["dataset"].nunique() > 1 else ""
        if math.isnan(row.t_p):
            lines.append(f"primary   {row.strategy}{where}: fewer than 2 seeds with complete curves, not tested")
            continue
        verdict = _verdict(row.significant, row.mean_diff)
        lines.append(f"primary   {row.strategy}{where} {verdict} {row.baseline} over the curve: AULC "
                     f"{_points(row.mean_diff)} points (95% CI {_points(row.ci_low)} to {_points(row.ci_high)}), "
                     f"Holm {_p_is(row.p_holm)}, {_count(int(row.n_pairs), 'seed')}")
    for row in result.planning[result.planning["sd_diff"] > 0].itertuples(index=False):
        def seeds(n: float) -> str:
            return f"more than {stats.MAX_PLANNED_SEEDS}" if pd.isna(n) else str(int(n))

        where = f" on {row.dataset}" if result.cycles["dataset"].nunique() > 1 else ""
        lines.append(f"seeds     {row.strategy}{where} vs {row.baseline}: {seeds(row.seeds_1pt)} seeds detect a "
                     f"1-point AULC difference with 80% power, {seeds(row.seeds_half_pt)} a 0.5-point one (sd of "
                     f"the paired differences {100 * row.sd_diff:.2f} points over {row.n_pairs} seeds)")
    return lines


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
        f"`{result.baseline}`. Intervals are 95% Student-t intervals over seeds. Comparisons pair "
        "strategies by seed (same seed = same initial labeled set and weights) and use a two-sided paired "
        "t-test; \"significant\" means p < 0.05 after Holm correction within the family the sentence names: "
        f"the primary family (the AULC, one test per strategy{per_setting}) "
        "or the secondary, exploratory one (per-budget "
        "tests). Accuracies are in percent, differences in percentage "
        "points. Tables are also in `tables/` as CSV (full precision), Markdown and LaTeX.",
        "",
    ]


# ---------------------------------------------------------------- the headline: primary endpoint


def _primary_section(result: Analysis, datasets: list[str], slugs: dict[str, str], out: Path,
                     unit: str) -> list[str]:
    """The verdict on the primary endpoint (AULC against the baseline), per dataset, before anything else."""
    lines = [f"## Primary endpoint: area under the learning curve against {result.baseline}", ""]
    for dataset in datasets:
        comparisons = _rows(result.comparisons, dataset)
        if comparisons.empty:
            continue
        primary = comparisons[comparisons["family"] == stats.PRIMARY]
        if len(datasets) > 1:
            lines += [f"### {unit.capitalize()} `{dataset}`", ""]
        lines += [f"- {_families_sentence(comparisons, result.baseline, result.comparisons, unit)}"]
        lines += [f"- {_primary_sentence(row, result.baseline)}" for _, row in primary.iterrows()]
        lines += [f"- {s}" for s in _planning_sentences(_rows(result.planning, dataset))] + [""]
        lines += _table(out, f"primary_{slugs[dataset]}", primary, _primary_display(primary),
                        f"Primary endpoint: AULC of each strategy minus {result.baseline}'s, paired by seed "
                        f"(percentage points); Holm over the strategies compared{_across(datasets, unit)}.")
        planning = _rows(result.planning, dataset)
        if not planning.empty:
            lines += _table(out, f"seed_planning_{slugs[dataset]}", planning, _planning_display(planning),
                            "Seeds a paired t-test needs for 80% power at alpha 0.05 (two-sided, before Holm "
                            "correction), from the observed sd of the paired AULC differences.")
    if len(lines) == 2:
        lines += [f"No {unit} has both the baseline `{result.baseline}` and another strategy, so there is no "
                  f"primary comparison; see each {unit}'s findings.", ""]
    return lines


def _across(datasets: list[str], unit: str) -> str:
    return f" in all {len(datasets)} {unit}s together" if len(datasets) > 1 else ""


def _families_sentence(comparisons: pd.DataFrame, baseline: str, every: pd.DataFrame, unit: str) -> str:
    """The two families in one sentence each; `every`: the comparisons of all settings (the primary family
    spans them)."""
    primary = every[(every["family"] == stats.PRIMARY) & every["t_p"].notna()]
    several = every["dataset"].nunique() > 1
    pairs = (_count(len(primary), f"strategy-{unit} pair") + f" (every {unit} of this report)" if several
             else _count(len(primary), "strategy", "strategies"))
    within = f" of this {unit}" if several else ""
    secondary = comparisons[(comparisons["family"] == stats.SECONDARY) & comparisons["t_p"].notna()]
    left_out = comparisons[comparisons["family"] == stats.LEFT_OUT]
    text = (f"Primary: the normalised AULC per seed, paired with {baseline} on the same seed, two-sided paired "
            f"t-test (Wilcoxon signed-rank beside it), Holm over {pairs}. "
            "Secondary (exploratory): the paired t-test at each budget, Holm over "
            f"{_count(len(secondary), 'strategy-budget pair')}{within}")
    if left_out.empty:
        return text + f"; no budget left out (every budget has some strategy that differs from {baseline})."
    labels = _label_list(left_out.groupby("cycle")["n_labeled"].mean())
    return (text + f"; budgets of {labels} labels left out because every strategy equals {baseline} there on "
            "every seed (same initial set and weights), so they cannot differ.")


def _primary_sentence(row: pd.Series, baseline: str) -> str:
    strategy = row["strategy"]
    if math.isnan(row["t_p"]):
        return (f"**{strategy}** cannot be compared with {baseline} over the curve: fewer than 2 seeds with "
                "complete curves on both sides.")
    verdict = _verdict(row["significant"], row["mean_diff"])
    note = f" ({row['t_note']})" if row["t_note"] else ""
    wilcoxon = (f"Wilcoxon {_p_is(row['wilcoxon_p'])}" if not math.isnan(row["wilcoxon_p"])
                else f"Wilcoxon not run ({row['wilcoxon_note']})")
    return (f"**{strategy}** {verdict} {baseline} over the curve: AULC {_points(row['mean_diff'])} points "
            f"(95% CI {_points(row['ci_low'])} to {_points(row['ci_high'])}), paired t {_p_is(row['t_p'])}"
            f"{note}, Holm {_p_is(row['p_holm'])}, {wilcoxon}, {_count(int(row['n_pairs']), 'seed')}.")


def _verdict(significant: bool, mean_diff: float) -> str:
    if not significant:
        return "is not distinguishable from"
    return "beats" if mean_diff > 0 else "is worse than"


def _planning_sentences(planning: pd.DataFrame) -> list[str]:
    def seeds(n: float) -> str:
        return f"more than {stats.MAX_PLANNED_SEEDS}" if pd.isna(n) else f"{int(n)}"

    return [f"Seed planning for {r.strategy}: its paired AULC differences have no spread over {r.n_pairs} "
            "seeds, so there is nothing to plan from." if r.sd_diff == 0 else
            f"Seed planning for {r.strategy}: with the observed sd of its paired AULC differences "
            f"({100 * r.sd_diff:.2f} points over {r.n_pairs} seeds), a 1-point AULC difference needs "
            f"{seeds(r.seeds_1pt)} seeds and a 0.5-point one {seeds(r.seeds_half_pt)} for 80% power at "
            "alpha 0.05 (two-sided paired t-test, before Holm)."
            for r in planning.itertuples(index=False)]


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


def _primary_display(primary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": primary["strategy"],
        "seeds": primary["n_pairs"].astype(str),
        "AULC diff (pts)": primary["mean_diff"].map(_points),
        **_test_columns(primary),
    })


def _planning_display(planning: pd.DataFrame) -> pd.DataFrame:
    def seeds(n: float) -> str:
        return f">{stats.MAX_PLANNED_SEEDS}" if pd.isna(n) else f"{int(n)}"

    planning = planning[planning["sd_diff"] > 0]  # no spread: nothing to plan from (said in the text)
    return pd.DataFrame({
        "strategy": planning["strategy"],
        "seeds now": planning["n_pairs"].astype(str),
        "sd of AULC diff (pts)": planning["sd_diff"].map(lambda v: f"{100 * v:.2f}"),
        "seeds for 1 pt": planning["seeds_1pt"].map(seeds),
        "seeds for 0.5 pt": planning["seeds_half_pt"].map(seeds),
    })


# ---------------------------------------------------------------- one dataset


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
        lines += _penalty_part(result.penalties[dataset], checkpoints, dataset, slug, out)
    if has_baseline:
        lines += _efficiency_part(result, dataset, slug, out)
    return lines


def _curves_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    summary = _rows(result.summary, dataset)
    return (["### Learning curves", ""]
            + _figure(out, f"learning_curves_{slug}", "Learning curves",
                      lambda ax: _plot_learning_curves(ax, summary, result.palette, dataset), size=(8.0, 4.2))
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
                      lambda ax: _plot_differences(ax, comparisons, result.palette, dataset), size=(8.0, 4.2))
            + _table(out, f"comparisons_{slug}", comparisons, _comparison_display(comparisons),
                     f"Strategy minus {result.baseline}, paired by seed (percentage points); Holm over the "
                     "strategy-budget pairs of the secondary family; budgets \"left out\" are identical for "
                     "every strategy and not tested."))


def _aulc_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    aulc_seeds = _rows(result.aulc_seeds, dataset)
    aulc_summary = _rows(result.aulc_summary, dataset)
    return (["### Area under the learning curve", ""]
            + _figure(out, f"aulc_{slug}", "AULC per strategy",
                      lambda ax: _plot_aulc(ax, aulc_seeds, aulc_summary, result.palette, dataset), size=(8.0, 4.2))
            + _table(out, f"aulc_{slug}", aulc_summary, _aulc_display(aulc_summary),
                     "Trapezoid area under accuracy over labeled examples, divided by the label range (%), "
                     "over seeds with every cycle."))


def _penalty_part(matrix: pd.DataFrame, checkpoints: list[float], dataset: str, slug: str,
                  out: Path) -> list[str]:
    raw = matrix.rename_axis(index="row beats column", columns=None).reset_index()
    return (["### Penalty matrix", ""]
            + _figure(out, f"penalty_{slug}", "Penalty matrix", lambda ax: _plot_penalty(ax, matrix, dataset),
                      size=(4.0 + 0.75 * len(matrix), 2.8 + 0.6 * len(matrix)))
            + _table(out, f"penalty_{slug}", raw, _penalty_display(matrix),
                     f"Share of the {_count(len(checkpoints), 'checkpoint')} ({_label_list(pd.Series(checkpoints))} "
                     "labels: the initial size, then initial + 2^(k-1) x budget, stopping before random's mean "
                     "passes 0.99 of its final mean) at which the row strategy is significantly better than "
                     "the column strategy, as in the released aggregation script of Ash et al. 2020 (BADGE): "
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
                         lambda ax: _plot_critical_difference(ax, test, result.palette, unit),
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
                            lambda ax: _plot_penalty(ax, total, f"{len(result.penalties)} {unit}s",
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


def _plot_learning_curves(ax: Axes, summary: pd.DataFrame, palette: dict[str, Color], dataset: str) -> None:
    names = sorted(summary["strategy"].unique())
    for name in names:
        curve = summary[summary["strategy"] == name].sort_values("n_labeled")
        ax.fill_between(curve["n_labeled"], 100 * curve["ci_low"], 100 * curve["ci_high"],
                        color=palette[name], alpha=0.2, linewidth=0)
    sns.lineplot(data=summary.assign(acc=100 * summary["mean"]), x="n_labeled", y="acc", hue="strategy",
                 hue_order=names, palette={n: palette[n] for n in names}, marker="o", errorbar=None, ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    ax.set(xlabel="labeled examples", ylabel="test accuracy (%)",
           title=f"{dataset}: mean over seeds, 95% t-interval bands")


def _plot_differences(ax: Axes, comparisons: pd.DataFrame, palette: dict[str, Color], dataset: str) -> None:
    rows = comparisons[comparisons["metric"] == "test_acc"].sort_values("n_labeled")
    for name, curve in rows.groupby("strategy", sort=True):
        color = palette[name]
        x = curve["n_labeled"].to_numpy(float)
        ax.fill_between(x, 100 * curve["ci_low"], 100 * curve["ci_high"], color=color, alpha=0.2, linewidth=0)
        ax.plot(x, 100 * curve["mean_diff"], marker="o", color=color, label=name)
        hits = curve[curve["significant"] & (curve["family"] == stats.SECONDARY)]
        ax.scatter(hits["n_labeled"], 100 * hits["mean_diff"], marker="*", s=160, color=color,
                   edgecolor="black", linewidth=0.6, zorder=3)
    ax.scatter([], [], marker="*", s=160, color="white", edgecolor="black",
               label="significant\n(secondary family,\nHolm)")
    ax.axhline(0, color="black", linewidth=0.8)
    baseline = rows["baseline"].iloc[0] if len(rows) else "baseline"
    ax.set(xlabel="labeled examples", ylabel=f"difference to {baseline} (percentage points)",
           title=f"{dataset}: paired difference, 95% t-interval bands")
    ax.legend(title="strategy", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _plot_penalty(ax: Axes, matrix: pd.DataFrame, dataset: str, vmax: float = 1.0) -> None:
    sums = matrix.sum(axis=0, skipna=True)
    sns.heatmap(matrix.astype(float), annot=True, fmt=".2f", annot_kws={"size": 9}, vmin=0, vmax=vmax, cmap="Reds",
                square=True,
                linewidths=0.5, cbar_kws={"label": "share of checkpoints row beats column"}, ax=ax)
    ax.set_xticklabels([f"{name} (sum {sums[name]:.2f})" for name in matrix.columns], rotation=35, ha="right",
                       rotation_mode="anchor")
    ax.set_yticklabels(list(matrix.index), rotation=0)
    ax.grid(False)
    ax.set(xlabel="worse strategy (column sum: lower is better)", ylabel="better strategy",
           title=f"{dataset}: pairwise penalty matrix")


def _plot_aulc(
    ax: Axes, aulc_seeds: pd.DataFrame, aulc_summary: pd.DataFrame, palette: dict[str, Color], dataset: str
) -> None:
    names = sorted(aulc_summary["strategy"].unique())
    seeds = aulc_seeds[aulc_seeds["complete"].astype(bool) & aulc_seeds["strategy"].isin(names)]
    if names:
        sns.stripplot(data=seeds.assign(aulc_pct=100 * seeds["aulc"]), x="strategy", y="aulc_pct",
                      hue="strategy", order=names, hue_order=names, palette={n: palette[n] for n in names},
                      jitter=0.15, size=6, legend=False, ax=ax)
        summary = aulc_summary.set_index("strategy").loc[names]
        mean = 100 * summary["mean"].to_numpy(float)  # [n_strategies]
        spread = 100 * (summary[["ci_high"]].to_numpy(float).ravel() - summary["mean"].to_numpy(float))
        ax.errorbar(np.arange(len(names)), mean, yerr=np.nan_to_num(spread), fmt="D", color="black",
                    capsize=5, label="mean, 95% t-interval")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set(xlabel="strategy", ylabel="area under learning curve (% accuracy)",
           title=f"{dataset}: AULC per seed (points) and mean")


def _plot_critical_difference(ax: Axes, test: stats.RankTest, palette: dict[str, Color], unit: str) -> None:
    """Each strategy's mean rank with a bar of +-CD/2: two strategies differ (Nemenyi) when their bars do not
    overlap."""
    names = list(test.mean_ranks)  # best first
    ranks = np.array([test.mean_ranks[n] for n in names])  # [n_strategies]
    y = np.arange(len(names))[::-1]
    for i, name in enumerate(names):
        ax.errorbar(ranks[i], y[i], xerr=test.critical_difference / 2, fmt="o", color=palette[name], capsize=4)
    ax.set_yticks(y, names)
    ax.set_xlim(0.5, len(names) + 0.5)
    ax.set(xlabel=f"mean AULC rank over {test.n_settings} {unit}s (1 = best); bars +-CD/2, "
                  f"CD = {test.critical_difference:.2f}",
           title="Nemenyi: strategies whose bars do not overlap differ (alpha 0.05)")
