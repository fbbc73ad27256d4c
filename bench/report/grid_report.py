"""The report of a `--vary` grid: PARENT/report.md answers first, one line per comparison, whether its verdict holds
across the grid's settings ("entropy better than random in 3 of 4 settings, undecided in 1; never worse"), then
the verdicts setting by setting (a table and a drawing), which field changes a verdict where one does, and the
settings. Its figures and tables lie in PARENT/report/. Reads only grid.json and each setting's cycles.parquet (and
config.json's design); the numbers come from bench.analysis.grid_stats.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from bench.analysis import curves, grid_stats, verdicts
from bench.analysis.families import PRIMARY, families
from bench.analysis.record import load_cycles, stored_design
from bench.core.errors import UserError
from bench.core.files import atomic_write
from bench.report import html, text
from bench.report.figures import figure
from bench.report.plots import VERDICT_MARKS
from bench.report.tables import write_table
from bench.results.store import CYCLES, REPORT, atomic_write_folder, read_json

GRID = "grid.json"  # the parent's record of the grid (bench.runner.grid writes it)
# A verdict's colour in the grid's drawing: green better, red worse, blue equivalent, grey undecided.
VERDICT_COLOURS = {verdicts.BETTER: (0.30, 0.69, 0.42), verdicts.WORSE: (0.87, 0.37, 0.33),
                   verdicts.EQUIVALENT: (0.55, 0.68, 0.88), verdicts.UNDECIDED: (0.88, 0.88, 0.88)}
PHRASE = {verdicts.BETTER: "better than", verdicts.WORSE: "worse than", verdicts.EQUIVALENT: "equivalent to",
          verdicts.UNDECIDED: "undecided against"}


# ---------------------------------------------------------------- numbers from the folders


def grid_verdicts(parent: Path) -> tuple[dict, pd.DataFrame, verdicts.SequentialPlan | None] | None:
    """grid.json, the grid's verdict rows ("dataset" = the setting) and --seeds auto's plan (None: fixed seeds);
    None when no setting has a finished cycle."""
    record = read_json(parent / GRID)
    if not isinstance(record, dict) or not isinstance(record.get("labels"), dict):
        raise UserError(f"{parent / GRID} is not a grid this harness wrote: run the --vary command again.")
    frames, plan = [], None
    for slug in setting_order(record):
        folder = parent / slug
        if (folder / CYCLES).exists():
            frames.append(load_cycles(folder).assign(dataset=slug))
            plan = plan or stored_design(folder).plan
    if not frames:
        return None
    cycles = pd.concat(frames, ignore_index=True)
    strategies, baseline = record["strategies"], record["baseline"]
    pairs = {slug: families(strategies, strategies, baseline)[PRIMARY] for slug in cycles["dataset"].unique()}
    plan = plan if record.get("design") == "sequential" else None
    found, _ = grid_stats.grid_verdicts(curves.aulc_per_seed(cycles), pairs, float(record["margin"]), plan)
    return record, found, plan


def setting_order(record: dict) -> list[str]:
    """The settings in the grid's order (the last field varying fastest), as grid.json lists them."""
    order = record.get("grid", {}).get("settings") if isinstance(record.get("grid"), dict) else None
    return [s for s in order if s in record["labels"]] if isinstance(order, list) else list(record["labels"])


# ---------------------------------------------------------------- words


def robustness_sentence(row: pd.Series) -> str:
    """'entropy better than random in 3 of 4 settings, undecided in 1; never worse' (a row of verdict_counts)."""
    n, counts = int(row["settings"]), {o: int(row[o]) for o in grid_stats.OUTCOMES}
    decided = [o for o in (verdicts.BETTER, verdicts.WORSE, verdicts.EQUIVALENT) if counts[o]]
    lead = max(decided, key=lambda o: counts[o]) if decided else verdicts.UNDECIDED
    settings = text.count(n, "setting")
    where = f"in all {settings}" if counts[lead] == n else f"in {counts[lead]} of {settings}"
    rest = [f"{o} in {counts[o]}" for o in grid_stats.OUTCOMES if o != lead and counts[o]]
    never = [w for w, o in (("better", verdicts.BETTER), ("worse", verdicts.WORSE))
             if not counts[o] and lead != verdicts.UNDECIDED and counts[lead] < n]
    return (f"{row['strategy']} {PHRASE[lead]} {row['other']} {where}" + "".join(f", {r}" for r in rest)
            + (f"; never {' or '.join(never)}" if never else ""))


def change_sentence(comparison: str, changes: pd.DataFrame) -> str:
    """Which field changes one comparison's verdict (rows of verdict_changes for it)."""
    alone = changes[changes["alone"]]
    if len(alone):
        row = alone.iloc[0]
        by = "; ".join(f"{row['field']} {value}: {v}" for value, v in row["by_value"].items())
        return f"{comparison}: the verdict changes only along {row['field']} ({by})."
    moving = changes[changes["changes"] > 0]
    if moving.empty:
        return f"{comparison}: the same verdict in every setting."
    parts = [f"{r['field']} ({r['changes']} of {r['neighbours']} pairs of settings that differ in it alone)"
             for _, r in moving.iterrows()]
    return f"{comparison}: the verdict changes along {' and '.join(parts)}."


def design_sentence(record: dict, found: pd.DataFrame, plan: verdicts.SequentialPlan | None) -> str:
    k = len(found)
    family = (f"one family of {text.count(int(record['comparisons']), 'comparison')} x "
              f"{text.count(found['dataset'].nunique(), 'setting')} = {k}")
    if plan is None:
        how = ("Holm over all of them at once, each interval at the level Holm decided it at")
    else:
        how = (f"--seeds auto per setting, looks at {', '.join(map(str, plan.looks))} seeds: each comparison's "
               f"repeated confidence interval at Pocock's nominal level {plan.nominal:.5f} for alpha / "
               f"{plan.comparisons} (Bonferroni over the grid), a setting stopping once its comparisons are decided")
    return (f"Verdicts within ±{text.margin_text(float(record['margin']))}; {family}, {how}: with no true "
            "difference anywhere, the chance of any better or worse verdict in the grid is at most 5% "
            "(docs/statistics.md, \"Robustness across settings\").")


# ---------------------------------------------------------------- the drawing


def verdict_cells(found: pd.DataFrame, settings: list[str]) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """The drawing's columns (comparisons), and per setting each cell's verdict and label ('▲ +1.2')."""
    comparisons = list(dict.fromkeys(f"{a} vs {b}" for a, b in zip(found["strategy"], found["other"], strict=True)))
    keyed = {(r["dataset"], f"{r['strategy']} vs {r['other']}"): r for _, r in found.iterrows()}
    kinds = [[keyed[(s, c)]["verdict"] if (s, c) in keyed else verdicts.UNDECIDED for c in comparisons]
             for s in settings]
    marks = [[f"{VERDICT_MARKS[keyed[(s, c)]['verdict']]} {text.points(keyed[(s, c)]['mean_diff'])}"
              if (s, c) in keyed else "–" for c in comparisons] for s in settings]
    return comparisons, kinds, marks


def verdict_grid(ax: Axes, found: pd.DataFrame, settings: list[str]) -> None:
    """Settings (rows) x comparisons (columns), each cell coloured by its verdict and labelled with its mark and
    the mean AULC difference in points (▲ better, ▼ worse, ≈ equivalent, ? undecided)."""
    comparisons, kinds, marks = verdict_cells(found, settings)
    ax.imshow(np.array([[VERDICT_COLOURS[k] for k in row] for row in kinds]), aspect="auto")
    for i, row in enumerate(marks):
        for j, mark in enumerate(row):
            ax.text(j, i, mark, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(comparisons)), comparisons)
    ax.set_yticks(range(len(settings)), settings)
    ax.set_title("Verdicts (AULC difference, points)")
    ax.grid(False)


# ---------------------------------------------------------------- the report


def write_grid_report(parent: Path) -> tuple[Path, list[str]] | None:
    """Write PARENT/report.md (and PARENT/report/: tables and the drawing); returns its path and the console's
    robustness lines; None when no setting has a finished cycle."""
    made = grid_verdicts(parent)
    if made is None:
        return None
    record, found, plan = made
    labels, names = record["labels"], list(record["names"])
    settings = [s for s in setting_order(record) if s in set(found["dataset"])]
    counts = grid_stats.verdict_counts(found)
    changes = grid_stats.verdict_changes(found, labels, names)
    robust = [robustness_sentence(row) for _, row in counts.iterrows()]
    missing = [s for s in setting_order(record) if s not in settings]
    lines = [f"# Robustness across protocol settings: {parent.name}", "",
             *[f"**{sentence}.**" for sentence in robust], "",
             design_sentence(record, found, plan) + (f" Settings without results yet: {', '.join(missing)}."
                                                     if missing else ""), ""]

    def write(tmp: Path) -> None:
        for folder in (tmp / "tables", tmp / "plots"):
            folder.mkdir()
        body = ["## Verdicts over the grid", ""]
        body += write_table(tmp, "grid_verdicts", found.assign(**{n: [labels[s][n] for s in found["dataset"]]
                                                                  for n in names}),
                            _display(found, labels, names, settings), "Verdict per setting")
        body += figure(tmp, "grid_verdicts", "verdicts over the grid", lambda ax: verdict_grid(ax, found, settings),
                       size=(4.0 + 2.2 * counts.shape[0], 1.2 + 0.45 * len(settings)))
        body += ["## What changes the verdict", ""]
        body += [f"- {change_sentence(f'{a} vs {b}', rows)}"
                 for (a, b), rows in changes.groupby(["strategy", "other"], sort=False)] + [""]
        body += ["## Settings", "", *[f"- `{s}`: " + ", ".join(f"{n} {labels[s][n]}" for n in names)
                                      + f" ([its run folder]({s}/))" for s in setting_order(record)], ""]
        (tmp / "report.md").write_text("\n".join(lines + body).rstrip() + "\n")
        # index.html sits in report/, one level below the settings' folders that report.md links to
        page = re.sub(r"\]\(([\w.-]+)/\)", r"](../\1/)", "\n".join(lines + body))
        where = [", ".join(f"{n} {labels[s][n]}" for n in names) for s in found["dataset"]]
        html.write_page(tmp, html.verdict_cards(found, plan, where), float(record["margin"]),
                        [(GRID, f"../{GRID}")], source=page)

    atomic_write_folder(parent / REPORT, write, then="run `run_bench.py report` on the grid's folder again")
    inner = (parent / REPORT / "report.md").read_text()
    shown = inner.replace("(tables/", f"({REPORT}/tables/").replace("(plots/", f"({REPORT}/plots/").replace(
        "`tables/", f"`{REPORT}/tables/")
    atomic_write(parent / "report.md", lambda tmp: tmp.write_text(shown))
    return parent / "report.md", [f"robust    {sentence}" for sentence in robust]


def _display(found: pd.DataFrame, labels: dict, names: list[str], settings: list[str]) -> pd.DataFrame:
    rows = []
    for s in settings:
        own = found[found["dataset"] == s]
        row = {"setting": s, **{n: labels[s][n] for n in names}}
        for _, r in own.iterrows():
            interval = f"[{text.points(r['ci_low'])}, {text.points(r['ci_high'])}]"
            row[f"{r['strategy']} vs {r['other']}"] = f"{r['verdict']} {text.points(r['mean_diff'])} {interval}"
        row["seeds"] = str(int(own["n_pairs"].max()))
        rows.append(row)
    return pd.DataFrame(rows)
