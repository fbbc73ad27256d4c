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
from bench.analysis.record import at_chance_undecided, dataset_rows, in_order, load_cycles, stored_design
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


def grid_verdicts(parent: Path) -> tuple[dict, pd.DataFrame, verdicts.SequentialPlan | None, pd.DataFrame,
                                       dict[str, int]] | None:
    """grid.json, the grid's verdict rows ("dataset" = the setting), --seeds auto's plan (None: fixed seeds) and the
    budgets near chance (curves.near_chance, each setting at its own config.json's chance level); None when no
    setting has a finished cycle. Each setting's comparisons are those among the strategies it has rows for (a
    setting that dropped a strategy makes none of its comparisons); where the models barely beat guessing at every
    budget of a setting, no comparison there is called equivalent (record.at_chance_undecided, as a run's report).
    The last item: each setting's number of budgets."""
    record = read_json(parent / GRID)
    if not isinstance(record, dict) or not isinstance(record.get("labels"), dict):
        raise UserError(f"{parent / GRID} is not a grid this harness wrote: run the --vary command again.")
    frames, plan, chance, held = [], None, {}, {}
    for slug in setting_order(record):
        folder = parent / slug
        if (folder / CYCLES).exists():
            rows, design = load_cycles(folder).assign(dataset=slug), stored_design(folder)
            frames.append(rows)
            plan = plan or design.plan
            if design.chance is not None:
                chance[slug] = design.chance
            listed = design.order or tuple(record["strategies"])
            held[slug] = in_order(set(rows["strategy"]) & set(listed), [*record["strategies"], *listed])
    if not frames:
        return None
    cycles = pd.concat(frames, ignore_index=True)
    baseline = record["baseline"]
    pairs = {slug: families(names, names, baseline)[PRIMARY] for slug, names in held.items()}
    plan = plan if record.get("design") == "sequential" else None
    found, _ = grid_stats.grid_verdicts(curves.aulc_per_seed(cycles), pairs, float(record["margin"]), plan)
    near = curves.near_chance(cycles, chance)
    budgets = {str(k): int(v) for k, v in cycles.groupby("dataset")["cycle"].nunique().items()}
    return record, at_chance_undecided(found, near, cycles), plan, near, budgets


def chance_lines(near: pd.DataFrame, settings: list[str], budgets: dict[str, int]) -> list[str]:
    """'setting SLUG: At 30, 60 labels (every budget) the models barely beat guessing ...' per setting near chance."""
    return [f"setting {s}: {text.chance_sentence(rows, budgets[s])}." for s in settings
            if not (rows := dataset_rows(near, s)).empty]


def setting_order(record: dict) -> list[str]:
    """The settings in the grid's order (the last field varying fastest), as grid.json lists them."""
    order = record.get("grid", {}).get("settings") if isinstance(record.get("grid"), dict) else None
    return [s for s in order if s in record["labels"]] if isinstance(order, list) else list(record["labels"])


# ---------------------------------------------------------------- words


def robustness_sentence(row: pd.Series) -> str:
    """'entropy better than random in 3 of 4 settings, undecided in 1; never worse' (a row of verdict_counts); the
    settings that did not make the comparison (a strategy they do not run) are not among them, and are named
    after ('; not run in 1')."""
    n, counts = int(row["settings"]), {o: int(row[o]) for o in grid_stats.OUTCOMES}
    missing = int(row.get("not_run", 0))
    if n == 0:
        return f"{row['strategy']} vs {row['other']}: not run in any of the {text.count(missing, 'setting')}"
    decided = [o for o in (verdicts.BETTER, verdicts.WORSE, verdicts.EQUIVALENT) if counts[o]]
    lead = max(decided, key=lambda o: counts[o]) if decided else verdicts.UNDECIDED
    settings = text.count(n, "setting")
    where = f"in all {settings}" if counts[lead] == n and n > 1 else f"in {counts[lead]} of {settings}"
    rest = [f"{o} in {counts[o]}" for o in grid_stats.OUTCOMES if o != lead and counts[o]]
    never = [w for w, o in (("better", verdicts.BETTER), ("worse", verdicts.WORSE))
             if not counts[o] and lead != verdicts.UNDECIDED and counts[lead] < n]
    return (f"{row['strategy']} {PHRASE[lead]} {row['other']} {where}" + "".join(f", {r}" for r in rest)
            + (f"; never {' or '.join(never)}" if never else "") + (f"; not run in {missing}" if missing else ""))


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


def design_sentence(found: pd.DataFrame, margin: float, plan: verdicts.SequentialPlan | None) -> str:
    """The grid's family (the comparisons made, setting by setting) and how it is corrected."""
    k, per = len(found), found.groupby("dataset", sort=False).size()
    settings = text.count(int(per.size), "setting")
    family = (f"one family of {text.count(int(per.iloc[0]), 'comparison')} x {settings} = {k}"
              if per.nunique() <= 1 else f"one family of the {k} comparisons made over {settings} "
              f"({', '.join(f'{s} {n}' for s, n in per.items())})")
    if plan is None:
        how = ("Holm over all of them at once, each interval at the level Holm decided it at")
    else:
        how = (f"--seeds auto per setting, looks at {', '.join(map(str, plan.looks))} seeds: each comparison's "
               f"repeated confidence interval at Pocock's nominal level {plan.nominal:.5f} for alpha / "
               f"{plan.comparisons} (Bonferroni over the grid), a setting stopping once its comparisons are decided")
        if plan.comparisons < k:
            how += (f"; the plan counted {plan.comparisons} comparisons, fewer than the {k} made, so the bound below "
                    "does not hold: run the grid again with --strategies naming the strategies every setting runs")
        elif plan.comparisons > k:
            how += f" (the plan counted {plan.comparisons}, more than the {k} made: stricter than the bound needs)"
    return (f"Verdicts within ±{text.margin_text(margin)}; {family}, {how}: with no true "
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
    record, found, plan, near, budgets = made
    labels, names = record["labels"], list(record["names"])
    settings = [s for s in setting_order(record) if s in budgets]
    counts = grid_stats.verdict_counts(found, settings)
    changes = grid_stats.verdict_changes(grid_stats.made(found), labels, names)
    robust = [robustness_sentence(row) for _, row in counts.iterrows()]
    cautions = chance_lines(near, settings, budgets)
    missing = [s for s in setting_order(record) if s not in settings]
    lines = [f"# Robustness across protocol settings: {parent.name}", "",
             *[f"**{sentence}.**" for sentence in robust], "",
             *[f"> **Caution**, {line}" for line in cautions], *([""] if cautions else []),
             design_sentence(found, float(record["margin"]), plan)
             + (f" Settings without results yet: {', '.join(missing)}." if missing else ""), ""]

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
    return parent / "report.md", ([f"robust    {sentence}" for sentence in robust]
                                  + [f"caution   {line}" for line in cautions])


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
