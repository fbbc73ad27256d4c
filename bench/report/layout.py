"""The run report: RUN_DIR/report/ holds report.md (findings in plain sentences, tables, plots), the tables
as CSV (full precision), Markdown and LaTeX under tables/, and seaborn plots under plots/. It reads
RUN_DIR/cycles.parquet and nothing else; the numbers come from analysis.record, the sentences from report.text,
the tables from report.tables, the drawings from report.plots, saved by report.figures. This module lays the
report out and writes the folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.analysis import penalty, verdicts
from bench.analysis.record import Analysis, analyse, dataset_rows, load_cycles, stored_design
from bench.core.errors import UserError
from bench.report import html, plots, text
from bench.report.figures import figure, palette
from bench.report.tables import (
    aulc_display,
    comparison_display,
    cost_display,
    learning_curve_display,
    penalty_display,
    savings_display,
    verdict_display,
    write_table,
)
from bench.results.store import CONFIG, REPORT, atomic_write_folder

# ---------------------------------------------------------------- entry point


def write_report(run_dir: Path, baseline: str = "random", margin: float | None = None,
                 target: float | None = None) -> Path:
    """Write RUN_DIR/report/ from RUN_DIR/cycles.parquet (and the design that config.json records) and return the
    path of report.md.

    Raises ResultsError (a ValueError and a bench.core.errors.UserError) when cycles.parquet is missing,
    unreadable or malformed, and UserError when the report cannot be written (a full disk, `report` being a
    file, a plot that cannot be saved): the previous report/ is then left as it was.
    """
    return write_analysis(analyse_folder(run_dir, baseline, margin, target), Path(run_dir))


def report_folder(folder: Path, baseline: str, margin: float | None = None,
                  target: float | None = None) -> tuple[Path, list[str]]:
    """Write FOLDER/report/ with the design config.json records (margin: None takes the recorded one); returns
    report.md's path and the console's verdict lines."""
    result = analyse_folder(folder, baseline, margin, target)
    try:
        path = write_analysis(result, folder)
    except OSError as err:  # a full disk: the results are complete, only the report is missing
        raise UserError(f"Cannot write the report in {folder / REPORT} ({err.strerror or err}); the results are "
                        f"complete: free disk space, then run `run_bench.py report {folder}`.") from None
    return path, headline(result)


def analyse_folder(folder: Path, baseline: str, margin: float | None = None,
                   target: float | None = None) -> Analysis:
    """analyse on a run folder's rows with the design its config.json records (margin: None takes the recorded
    one)."""
    cycles = load_cycles(folder)
    design = stored_design(folder)
    if design.plan is not None and margin is not None and margin != design.margin:
        raise UserError(f"{folder}'s verdicts come from --seeds auto's rounds, which tested every look within "
                        f"±{text.margin_text(design.margin)} and stopped by it: a report within ±"
                        f"{text.margin_text(margin)} would read those intervals against a margin they were not "
                        "tested for; report without --margin, or run a new study with that margin.")
    chance = {} if design.chance is None else dict.fromkeys(cycles["dataset"].unique(), design.chance)
    return analyse(cycles, baseline, margin or design.margin, design.plan, design.order, chance, design.asked,
                   design.tolerance, target)


def write_analysis(result: Analysis, run_dir: Path) -> Path:
    """write_report for an analysis already made."""
    out = run_dir / REPORT
    runs = sorted(result.cycles["run"].astype(str).unique()) if "run" in result.cycles else [run_dir.name]
    # Written whole into a temporary folder that then takes report/'s place: a failure midway leaves the previous
    # report as it was, never half old and half new, and no file of an older report lingers beside a new one.
    links = [(CONFIG, f"../{CONFIG}")] if (run_dir / CONFIG).is_file() else []  # index.html's links beside the CSVs
    atomic_write_folder(out, lambda tmp: write_files(result, header_lines(result, runs, "`cycles.parquet`"), tmp,
                                                     links=links),
                        then=f"run `run_bench.py report {run_dir}` (the results are complete)")
    return out / "report.md"


def headline(result: Analysis) -> list[str]:
    """The primary verdicts, one console line each, for the end of a run."""
    several = result.cycles["dataset"].nunique() > 1
    primary = result.verdicts[result.verdicts["family"] == verdicts.PRIMARY]
    lines = [f"primary   {text.verdict_sentence(row, result, several)}" for _, row in primary.iterrows()]
    cautions = {dataset: _chance_sentence(result, dataset) for dataset in sorted(set(primary["dataset"]))}
    lines += [f"caution   {caution}" + (f" ({dataset})" if several else "")
              for dataset, caution in cautions.items() if caution]
    if result.plan is not None:
        lines.append(f"seeds     --seeds auto: {verdicts.stop_reason(result.history, result.plan)}")
    return lines


def write_files(result: Analysis, header: list[str], out: Path, unit: str = "dataset",
                links: list[tuple[str, str]] | None = None) -> None:
    """report.md (header, then the primary verdicts, a section per setting, and what holds across settings),
    tables/ and plots/ into the (empty) folder out, then index.html (links: its (label, relative href) of the files
    beside the report); `unit` names a setting in headings."""
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
    primary = result.verdicts[result.verdicts["family"] == verdicts.PRIMARY]
    where = [f"{unit} {d}" for d in primary["dataset"]] if len(datasets) > 1 else None
    html.write_page(out, html.verdict_cards(primary, result.plan, where), result.margin, links or [])


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
    shape = ", ".join([text.count(cycles["dataset"].nunique(), unit),
                       text.count(cycles["strategy"].nunique(), "strategy", "strategies"),
                       text.count(cycles["seed"].nunique(), "seed")])
    per_setting = f" and {unit}" if cycles["dataset"].nunique() > 1 else ""
    dropped = cycles.attrs.get("rows_without_accuracy", 0)
    left_out = f"; {text.count(dropped, 'row')} without a finite test accuracy left out" if dropped else ""
    return [
        f"# Active-learning benchmark report: {', '.join(runs)}",
        "",
        f"Computed from {source} ({text.count(len(cycles), 'row')}: {shape}{left_out}). Baseline: "
        f"`{result.baseline}`" + ("" if result.baseline in set(cycles["strategy"]) else " (not in these results: "
                                   "every pair of strategies is compared)") +
        ". Comparisons pair strategies by seed (same seed = same initial labeled set and "
        "weights). The primary endpoint is the AULC: each verdict is better, worse, equivalent within "
        f"±{text.margin_text(result.margin)}, or undecided, read from an interval that carries the family's "
        f"correction (one family over every strategy{per_setting} compared). Per-budget tests are a secondary, "
        "exploratory family (paired t-test, Holm); other intervals are 95% Student-t intervals over seeds. "
        "Accuracies are in percent, differences in percentage points. Tables are also in `tables/` as CSV "
        "(full precision), Markdown and LaTeX." + (" The pairing is statistical, not exact: the run used CUDA's "
                                                  "nondeterministic kernels (--nondeterministic), so strategies that "
                                                  "are identical by design at a seed differ by noise."
                                                  if result.tolerance else ""),
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
    lines += [f"- {text.design_text(result, primary, against, unit)}"]
    for dataset in datasets:
        rows = dataset_rows(primary, dataset)
        if rows.empty:
            continue
        if len(datasets) > 1:
            lines += ["", f"### {unit.capitalize()} `{dataset}`", ""]
        lines += [f"- {text.verdict_sentence(row, result, bold=True)}." for _, row in rows.iterrows()]
        caution = _chance_sentence(result, dataset)
        lines += [f"- **Caution.** {caution}."] if caution else []
        comparisons = dataset_rows(result.comparisons, dataset)
        if not comparisons.empty:
            several = len(datasets) > 1
            lines += [f"- {text.secondary_sentence(comparisons, result.baseline, unit, several, result.tolerance)}"]
        lines += [""]
        if not against and len(set(rows["strategy"]) | set(rows["other"])) > 2:  # every pair: the matrix, at a glance
            lines += figure(out, f"pairwise_{slugs[dataset]}", "Pairwise AULC differences",
                             lambda ax, rows=rows, dataset=dataset: plots.pairwise(ax, rows, dataset),
                             size=_matrix_size(rows))
        lines += write_table(out, f"primary_{slugs[dataset]}", rows, verdict_display(rows, result.plan),
                             _verdict_caption(result, verdicts.PRIMARY, _across(datasets, unit)))
    if result.plan is not None:
        lines += _looks_part(result, out)
    return lines + _all_pairs_part(result, datasets, slugs, out)


def _chance_sentence(result: Analysis, dataset: str) -> str:
    cycles = result.cycles[result.cycles["dataset"] == dataset]
    return text.chance_sentence(dataset_rows(result.near_chance, dataset), cycles["cycle"].nunique())


def _verdict_caption(result: Analysis, family: str, across: str) -> str:
    if family == verdicts.PRIMARY and result.plan is not None:
        return ("Primary endpoint: AULC of the strategy minus the other's, paired by seed (percentage points), with "
                "the repeated confidence interval of the look that decided it (or of the last look).")
    name = {verdicts.PRIMARY: "Primary endpoint", verdicts.CONTEXT: "Context"}.get(family, "Every pair")
    return (f"{name}: AULC of the strategy minus the "
            f"other's, paired by seed (percentage points); Holm over the family{across}; the interval is at the "
            "level Holm tests the comparison at; TOST p: the two one-sided tests of a difference of at least "
            f"±{100 * result.margin:g} points (before correction).")


def _looks_part(result: Analysis, out: Path) -> list[str]:
    history = pd.DataFrame([{"seeds": h["seeds"], "decided": "; ".join(h["decided"]) or text.DASH,
                             "still undecided": ", ".join(h["undecided"]) or text.DASH} for h in result.history],
                           columns=["seeds", "decided", "still undecided"])
    reason = verdicts.stop_reason(result.history, result.plan).capitalize()
    caption = ("Each look: the comparisons it decided and those left for the next round (only their strategies ran "
               "more seeds).")
    return (["### The looks of `--seeds auto`", "", f"{reason}.", ""]
            + write_table(out, "looks", history, history.astype(str), caption))


def _all_pairs_part(result: Analysis, datasets: list[str], slugs: dict[str, str], out: Path) -> list[str]:
    family = verdicts.CONTEXT if (result.verdicts["family"] == verdicts.CONTEXT).any() else verdicts.ALL_PAIRS
    pairs = result.verdicts[result.verdicts["family"] == family]
    if pairs.empty:
        return []
    rounds = ("; with `--seeds auto` it is the fixed design on the seeds the rounds ran, so read it as "
              "exploratory." if result.plan is not None else ".")
    lines = (["## Every pair of strategies", "",
              f"- A family of its own beside the primary one: every pair of strategies on the AULC, paired by seed, "
              f"Holm over the {text.count(len(pairs), 'pair')}, so each pair has one verdict whatever the baseline"
              + rounds, ""] if family == verdicts.ALL_PAIRS else
             ["## Context: the folder's other comparisons", "",
              "- The run asked only the primary family's comparisons; the folder's other strategies are context: "
              f"every other pair on the AULC, paired by seed, Holm over the {text.count(len(pairs), 'pair')} as a "
              "family of its own" + rounds, ""])
    for dataset in datasets:
        rows = dataset_rows(pairs, dataset)
        if rows.empty:
            continue
        if len(datasets) > 1:
            lines += [f"### `{dataset}`", ""]
        decided = rows[rows["verdict"] != verdicts.UNDECIDED]
        lines += [f"- {text.verdict_sentence(row, result)}." for _, row in decided.iterrows()]
        lines += [f"- Undecided: {text.count(len(rows) - len(decided), 'pair')} of {len(rows)}.", ""]
        stem = "pairwise" if family == verdicts.ALL_PAIRS else "context"  # beside the primary family's pairwise_
        lines += figure(out, f"{stem}_{slugs[dataset]}", "Pairwise AULC differences",
                         lambda ax, rows=rows, dataset=dataset: plots.pairwise(ax, rows, dataset),
                         size=_matrix_size(rows))
        lines += write_table(out, f"pairs_{slugs[dataset]}", rows, verdict_display(rows, result.plan),
                             _verdict_caption(result, family, ""))
    return lines


def _matrix_size(pairs: pd.DataFrame) -> tuple[float, float]:
    k = len(set(pairs["strategy"]) | set(pairs["other"]))
    return 3.5 + 0.8 * k, 2.8 + 0.6 * k


def _across(datasets: list[str], unit: str) -> str:
    return f" in all {len(datasets)} {unit}s together" if len(datasets) > 1 else ""


# ---------------------------------------------------------------- a section per dataset


def _dataset_section(result: Analysis, dataset: str, slug: str, out: Path, unit: str) -> list[str]:
    cycles = result.cycles[result.cycles["dataset"] == dataset]
    has_baseline = result.baseline in set(cycles["strategy"])
    lines = [f"## {unit.capitalize()} `{dataset}`", "", "### Findings", ""]
    lines += [f"- {s}" for s in text.findings(result, dataset, cycles, has_baseline)]
    lines += [""] + _curves_part(result, dataset, slug, out)
    if has_baseline:
        lines += _comparisons_part(result, dataset, slug, out)
    lines += _aulc_part(result, dataset, slug, out)
    if dataset in result.penalties:
        checkpoints = penalty.badge_checkpoints(cycles, result.baseline)
        stop = (f"stopping before {result.baseline}'s mean passes 0.99 of its final mean" if has_baseline else
                f"up to the largest size ({result.baseline} is not in this run, so no saturation stop)")
        lines += _penalty_part(result.penalties[dataset], checkpoints, dataset, slug, out, stop)
    if has_baseline:
        lines += _savings_part(result, dataset, slug, out)
    lines += _cost_part(result, dataset, slug, out)
    return lines


def _curves_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    summary = dataset_rows(result.summary, dataset)
    return (["### Learning curves", ""]
            + figure(out, f"learning_curves_{slug}", "Learning curves",
                      lambda ax: plots.learning_curves(ax, summary, palette(result), dataset), size=(8.0, 4.2))
            + _compute_figure(result, dataset, slug, out)
            + write_table(out, f"learning_curve_{slug}", summary, learning_curve_display(summary),
                          "Test accuracy (%), mean ± half-width of the 95% t-interval over seeds; columns are "
                          "labeled examples."))


def _compute_figure(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    """Accuracy against cumulative compute, beside accuracy against labels (machine-dependent, never a verdict)."""
    compute = dataset_rows(result.compute, dataset)
    if compute.empty or not compute["compute_s"].notna().any():
        return []
    return figure(out, f"compute_{slug}", "Accuracy against cumulative compute (machine-dependent)",
                  lambda ax: plots.compute_curves(ax, compute, palette(result), dataset), size=(8.0, 4.2))


def _comparisons_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    comparisons = dataset_rows(result.comparisons, dataset)
    comparisons = comparisons[comparisons["metric"] == "test_acc"].reset_index(drop=True)
    if comparisons.empty:
        return []
    return ([f"### Difference to {result.baseline} at each budget (secondary, exploratory)", ""]
            + figure(out, f"difference_{slug}", f"Difference to {result.baseline}",
                      lambda ax: plots.differences(ax, comparisons, palette(result), dataset), size=(8.0, 4.2))
            + write_table(out, f"comparisons_{slug}", comparisons, comparison_display(comparisons),
                          f"Strategy minus {result.baseline}, paired by seed (percentage points); Holm over the "
                          "strategy-budget pairs of the secondary family; budgets \"left out\" are identical for "
                          "every strategy and not tested."))


def _aulc_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    aulc_seeds = dataset_rows(result.aulc_seeds, dataset)
    aulc_summary = dataset_rows(result.aulc_summary, dataset)
    return (["### Area under the learning curve", ""]
            + figure(out, f"aulc_{slug}", "AULC per strategy",
                      lambda ax: plots.aulc(ax, aulc_seeds, aulc_summary, palette(result), dataset), size=(8.0, 4.2))
            + write_table(out, f"aulc_{slug}", aulc_summary, aulc_display(aulc_summary),
                          "Trapezoid area under accuracy over labeled examples, divided by the label range (%), "
                          "over seeds with every cycle."))


def _penalty_part(matrix: pd.DataFrame, checkpoints: list[float], dataset: str, slug: str,
                  out: Path, stop: str) -> list[str]:
    raw = matrix.rename_axis(index="row beats column", columns=None).reset_index()
    return (["### Penalty matrix", ""]
            + figure(out, f"penalty_{slug}", "Penalty matrix", lambda ax: plots.penalty(ax, matrix, dataset),
                      size=(4.0 + 0.75 * len(matrix), 2.8 + 0.6 * len(matrix)))
            + write_table(out, f"penalty_{slug}", raw, penalty_display(matrix),
                          f"Share of the {text.count(len(checkpoints), 'checkpoint')} "
                          f"({text.label_list(pd.Series(checkpoints))} "
                          f"labels: the initial size, then initial + 2^(k-1) x budget, {stop}) at which the row "
                          "strategy is significantly better than the column strategy, as in the released aggregation "
                          "script of Ash et al. 2020 (BADGE): "
                          "one-sample t-test of the paired differences, p < 0.05, no correction. We pair by seed "
                          "where BADGE pairs runs by file order, capped at 5 runs. The last row sums each column: "
                          "how often that strategy is beaten, lower is better."))


def _savings_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    saved = dataset_rows(result.savings, dataset)
    if saved.empty:
        return []
    seeds = dataset_rows(result.savings_seeds, dataset)
    seeds.to_csv(out / "tables" / f"labels_saved_seeds_{slug}.csv", index=False)  # every seed's labels
    return ([f"### Labels saved against {result.baseline}", ""]
            + write_table(out, f"labels_saved_{slug}", saved, savings_display(saved),
                          text.savings_caption(result.baseline, f"tables/labels_saved_seeds_{slug}.csv")))


def _cost_part(result: Analysis, dataset: str, slug: str, out: Path) -> list[str]:
    cost = dataset_rows(result.cost, dataset)
    if cost.empty:
        return []
    return (["### What a pick costs (machine-dependent)", ""]
            + write_table(out, f"cost_{slug}", cost, cost_display(cost), text.COST_CAPTION))


# ---------------------------------------------------------------- across settings


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
    lines += [f"- {text.rank_test_sentence(result.rank_test, unit)}"]
    if not result.wins.empty:
        lines += [f"- {text.wins_sentence(result.wins, n, unit)}"]
    lines += [""]
    display = pd.DataFrame({"strategy": ranks["strategy"], "mean rank": ranks["mean_rank"].map(lambda v: f"{v:.2f}"),
                            f"{unit}s": ranks["n_datasets"].astype(str)})
    lines += write_table(out, "mean_rank", ranks, display, f"Rank of each strategy by mean AULC per {unit}, averaged "
                         f"over the {unit}s it was run on.")
    if result.rank_test is not None:
        test = result.rank_test
        lines += figure(out, "critical_difference", "Mean ranks with the Nemenyi critical difference",
                         lambda ax: plots.critical_difference(ax, test, palette(result), unit),
                         size=(7.0, 1.2 + 0.45 * len(test.mean_ranks)))
    if not result.wins.empty:
        wins = result.wins
        lines += write_table(out, "win_tie_loss", wins, wins.drop(columns="baseline").astype(str),
                             f"Against {result.baseline} on the primary endpoint, over the {unit}s: significantly "
                             f"better (Holm over every strategy and {unit}), not significant, significantly worse, "
                             "untested.")
    if len(result.penalties) > 1:
        total = penalty.summed_penalties(list(result.penalties.values()))
        raw = total.rename_axis(index="row beats column", columns=None).reset_index()
        lines += (["### Penalty matrix summed over " + f"{unit}s", ""]
                  + figure(out, "penalty_summed", "Summed penalty matrix",
                            lambda ax: plots.penalty(ax, total, f"{len(result.penalties)} {unit}s",
                                                     vmax=float(len(result.penalties))),
                            size=(4.0 + 0.75 * len(total), 2.8 + 0.6 * len(total)))
                  + write_table(out, "penalty_summed", raw, penalty_display(total),
                                f"Sum over the {len(result.penalties)} {unit}s of their penalty matrices (each entry "
                                f"of a {unit} is the share of its BADGE checkpoints at which the row strategy "
                                "significantly beats the column one), as Ash et al. 2020 sum over settings; the last "
                                "row sums each column: lower is better."))
    return lines
