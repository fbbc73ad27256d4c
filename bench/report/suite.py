"""A suite report: several run folders (settings: a dataset, a model, a protocol each) compared in one report.

Each folder's rows become one setting, named by the folder. The suite asks the primary question once per
strategy and setting (Holm over all of them), ranks the strategies per setting (Friedman's test, Nemenyi's
critical difference), counts wins, ties and losses against the baseline, and sums BADGE's penalty matrices.
Settings must compare the same strategies against the same baseline; anything else is refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.analysis.record import Design, analyse, load_cycles, stored_design
from bench.core.errors import UserError
from bench.report.layout import header_lines, headline, write_files
from bench.report.tables import markdown_table
from bench.results.store import CONFIG, CYCLES, RunStore, atomic_write_folder, write_json

MARKER = "suite.json"  # names the folders of a suite report; only a folder holding it is ever replaced


def setting_names(folders: list[Path]) -> list[str]:
    """The folders' names, or parent/name where names repeat. A folder given twice is refused."""
    resolved = [folder.resolve() for folder in folders]
    for i, folder in enumerate(resolved):
        if folder in resolved[:i]:
            raise UserError(f"{folders[i]} is given twice: a suite compares distinct run folders.")
    names = [folder.name for folder in resolved]
    if len(set(names)) < len(names):
        names = [f"{folder.parent.name}/{folder.name}" for folder in resolved]
    if len(set(names)) < len(names):
        raise UserError("Two run folders share their name and their parent's name: rename one of them.")
    return names


def suite_cycles(folders: list[Path], names: list[str], baseline: str) -> pd.DataFrame:
    """Every folder's rows, its setting's name (names[i]) in the "dataset" column (the dataset itself kept in
    "source_dataset"); refuses settings that lack the baseline or compare other strategies."""
    frames = []
    for folder, name in zip(folders, names, strict=True):
        cycles = load_cycles(folder)
        if cycles["dataset"].nunique() > 1:
            raise UserError(f"{folder} holds several datasets ({', '.join(sorted(cycles['dataset'].unique()))}); "
                            "a suite takes one setting per folder.")
        if baseline not in set(cycles["strategy"]):
            raise UserError(f"{folder} has no results for the baseline {baseline!r} (it has "
                            f"{', '.join(sorted(cycles['strategy'].unique()))}): run it there, or choose "
                            "another --baseline.")
        frames.append(cycles.assign(source_dataset=cycles["dataset_spec"], dataset=name,
                                    rows_without_accuracy=cycles.attrs["rows_without_accuracy"]))
    union = set().union(*(set(f["strategy"]) for f in frames))
    missing = [f"{f['dataset'].iloc[0]} lacks {', '.join(sorted(union - set(f['strategy'])))}"
               for f in frames if set(f["strategy"]) != union]
    if missing:
        raise UserError(f"The settings compare different strategies ({'; '.join(missing)}): a suite ranks the same "
                        "strategies in every setting; widen those runs, or leave the folder out.")
    cycles = pd.concat(frames, ignore_index=True)
    cycles.attrs["rows_without_accuracy"] = int(sum(f["rows_without_accuracy"].iloc[0] for f in frames))
    return cycles.drop(columns="rows_without_accuracy")


def check_out(out: Path, folders: list[Path]) -> None:
    """The suite's folder may replace only an earlier suite report (or nothing): never a run's results, and never
    inside a run's folder."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"Cannot write {out}: it is a file, not a folder; choose another --out.")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise UserError(f"{out} exists and is not a suite report (no {MARKER}); choose another --out, an empty "
                            "or new folder.")
    inside = [f for f in folders if out.resolve() in (f.resolve(), *f.resolve().parents)]
    if inside:
        raise UserError(f"--out {out} holds the run folder {inside[0]}; choose another --out.")
    run = next((p for p in out.resolve().parents if (p / CYCLES).exists() or (p / CONFIG).exists()), None)
    if run is not None:
        raise UserError(f"--out {out} lies inside the run folder {run}; choose a folder outside every run's.")


def suite_margin(folders: list[Path], designs: list[Design], margin: float | None) -> float:
    """The one margin of a suite's verdicts: the one given, else the folders' own where they agree. A folder
    whose verdicts come from --seeds auto's rounds is refused: the suite's fixed test across the settings would
    re-test its seeds with no word of its looks."""
    for folder, design in zip(folders, designs, strict=True):
        if design.plan is not None:
            raise UserError(f"{folder}'s verdicts come from --seeds auto's rounds (a sequential design), which a "
                            "suite's fixed test across settings would replace with no word of its looks: report it "
                            "on its own, or make the suite of folders run with fixed seeds (--seeds N).")
    margins = {design.margin for design in designs}
    if margin is None and len(margins) > 1:
        shown = ", ".join(f"{folder} ±{100 * d.margin:g}" for folder, d in zip(folders, designs, strict=True))
        raise UserError(f"The folders were run with different margins ({shown} AULC points): give --margin POINTS "
                        "for the suite's verdicts.")
    return margin if margin is not None else margins.pop()


def write_suite(folders: list[Path], baseline: str, out: Path, margin: float | None = None,
                target: float | None = None) -> tuple[Path, list[str]]:
    """Write the suite report of `folders` into `out` (report.md, tables/, plots/, suite.json); returns
    report.md's path and the headline (primary verdicts, seed planning) for the console. margin: the verdicts'
    (None: the folders' own, where they agree); target: --target-accuracy (0..1), labels saved to reach it too."""
    folders = [Path(f) for f in folders]
    check_out(out, folders)
    names = setting_names(folders)
    designs = [stored_design(folder) for folder in folders]
    margin = suite_margin(folders, designs, margin)
    cycles = suite_cycles(folders, names, baseline)
    levels = {name: design.chance for design, name in zip(designs, names, strict=True)}
    result = analyse(cycles, baseline, margin,
                     chance={name: level for name, level in levels.items() if level is not None}, target=target)
    settings = _settings_table(folders, names, cycles)
    header = header_lines(result, names, f"the `cycles.parquet` of {len(folders)} run folders", unit="setting")
    header += ["## Settings", "", markdown_table(settings), ""]

    def write(tmp: Path) -> None:
        write_files(result, header, tmp, unit="setting")
        settings.to_csv(tmp / "tables" / "settings.csv", index=False)
        write_json(tmp / MARKER, {"baseline": baseline, "margin": margin, "folders": [str(f) for f in folders],
                                  "settings": names})

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_folder(out, write, then="run the same `run_bench.py report` command again")
    return out / "report.md", headline(result)


def _settings_table(folders: list[Path], names: list[str], cycles: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for folder, name in zip(folders, names, strict=True):
        own = cycles[cycles["dataset"] == name]
        config = RunStore(folder).read_config() or {}
        protocol = config.get("protocol", {}) if isinstance(config.get("protocol"), dict) else {}
        rows.append({
            "setting": name,
            "dataset": str(own["source_dataset"].iloc[0]),
            "model": str(own["model"].iloc[0]) if "model" in own else str(protocol.get("model", "?")),
            "labels": f"{int(own['n_labeled'].min())}..{int(own['n_labeled'].max())}",
            "epochs": str(protocol.get("epochs", "?")),
            "seeds": str(own["seed"].nunique()),
            "folder": str(folder),
        })
    return pd.DataFrame(rows)
