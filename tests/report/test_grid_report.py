"""bench.report.grid_report: the robustness line of each comparison, the sentence on the field that changes a
verdict, and the drawing of the verdicts over the grid, each against a hand-written case."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bench.analysis import grid_stats
from bench.analysis.record import AT_CHANCE, analyse
from bench.report.grid_report import (
    VERDICT_COLOURS,
    change_sentence,
    robustness_sentence,
    verdict_grid,
    write_grid_report,
)
from conftest import cycles_of


def _counts(**counts: int) -> pd.Series:
    row = {"strategy": "entropy", "other": "learning-loss", **dict.fromkeys(grid_stats.OUTCOMES, 0), **counts}
    row["settings"] = sum(counts.values())
    return pd.Series(row)


@pytest.mark.parametrize(("counts", "line"), [
    (dict(better=6, equivalent=1, undecided=1),
     "entropy better than learning-loss in 6 of 8 settings, equivalent in 1, undecided in 1; never worse"),
    (dict(better=4), "entropy better than learning-loss in all 4 settings"),
    (dict(worse=2, better=1, undecided=1), "entropy worse than learning-loss in 2 of 4 settings, better in 1, "
                                           "undecided in 1"),
    (dict(equivalent=3, undecided=1),
     "entropy equivalent to learning-loss in 3 of 4 settings, undecided in 1; never better or worse"),
    (dict(undecided=2), "entropy undecided against learning-loss in all 2 settings"),
    (dict(better=1, worse=1), "entropy better than learning-loss in 1 of 2 settings, worse in 1"),
])
def test_the_robustness_line(counts, line):
    assert robustness_sentence(_counts(**counts)) == line


def test_the_field_that_changes_a_verdict_is_named():
    alone = pd.DataFrame([
        {"field": "initial", "neighbours": 2, "changes": 0, "alone": False, "by_value": {}},
        {"field": "budget", "neighbours": 2, "changes": 2, "alone": True,
         "by_value": {"10": "better", "30": "undecided"}},
    ])
    assert change_sentence("entropy vs random", alone) == (
        "entropy vs random: the verdict changes only along budget (budget 10: better; budget 30: undecided).")
    both = alone.assign(changes=[1, 1], alone=[False, False])
    assert change_sentence("a vs b", both) == (
        "a vs b: the verdict changes along initial (1 of 2 pairs of settings that differ in it alone) and budget "
        "(1 of 2 pairs of settings that differ in it alone).")
    assert change_sentence("a vs b", both.assign(changes=0)) == "a vs b: the same verdict in every setting."


def test_the_drawing_colours_each_cell_by_its_verdict_and_labels_it():
    found = pd.DataFrame([
        {"dataset": "s1", "strategy": "entropy", "other": "random", "verdict": "better", "mean_diff": 0.012},
        {"dataset": "s2", "strategy": "entropy", "other": "random", "verdict": "worse", "mean_diff": -0.02},
        {"dataset": "s1", "strategy": "margin", "other": "random", "verdict": "equivalent", "mean_diff": 0.001},
        {"dataset": "s2", "strategy": "margin", "other": "random", "verdict": "undecided", "mean_diff": 0.004},
    ])
    ax = Figure().subplots()
    verdict_grid(ax, found, ["s1", "s2"])
    image = ax.get_images()[0].get_array()  # [settings, comparisons, RGB]
    assert np.allclose(image[0, 0], VERDICT_COLOURS["better"]) and np.allclose(image[1, 0], VERDICT_COLOURS["worse"])
    assert np.allclose(image[0, 1], VERDICT_COLOURS["equivalent"])
    assert np.allclose(image[1, 1], VERDICT_COLOURS["undecided"])
    assert [t.get_text() for t in ax.texts] == ["▲ +1.2", "≈ +0.1", "▼ -2.0", "? +0.4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["entropy vs random", "margin vs random"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["s1", "s2"]


def _grid(tmp_path, settings: dict, strategies: list[str]) -> None:
    """A fixed-seeds grid over `settings` ({slug: (rows, config.json)}) whose grid.json names `strategies`."""
    labels = {slug: {"budget": slug} for slug in settings}
    (tmp_path / "grid.json").write_text(json.dumps({
        "grid": {"settings": list(labels)}, "strategies": strategies, "baseline": "random", "margin": 0.01,
        "design": "fixed", "comparisons": len(strategies) - 1, "labels": labels, "names": ["budget"]}))
    for slug, (rows, config) in settings.items():
        (tmp_path / slug).mkdir()
        rows.to_parquet(tmp_path / slug / "cycles.parquet", index=False)
        (tmp_path / slug / "config.json").write_text(json.dumps(config))


def test_a_setting_at_chance_at_every_budget_is_never_equivalent_and_the_report_cautions(tmp_path):
    # bald is random's curve: equivalent where the models learn; at 10 classes, accuracies of 12..17% are near
    # chance (below 19%) at every budget, where record.analyse calls the same rows undecided
    alike = cycles_of("s", {"bald": 0.0}, seeds=6, noise=0.002)
    low = alike.assign(test_acc=alike["test_acc"] * 0.25)
    config = {"strategies": ["random", "bald"], "dataset": {"classes": [str(i) for i in range(10)]}}
    _grid(tmp_path, {"learns": (alike, config), "chance": (low, config)}, ["random", "bald"])
    single = analyse(low.assign(dataset="chance"), chance={"chance": 0.1}).verdicts
    assert list(single["verdict"]) == ["undecided"] and list(single["note"]) == [AT_CHANCE]
    report, console = write_grid_report(tmp_path)
    found = pd.read_csv(tmp_path / "report" / "tables" / "grid_verdicts.csv").set_index("dataset")
    assert found.loc["learns", "verdict"] == "equivalent"
    assert found.loc["chance", "verdict"] == "undecided" and found.loc["chance", "note"] == AT_CHANCE
    assert "bald equivalent to random in 1 of 2 settings, undecided in 1" in report.read_text()
    assert "Caution**, setting chance: At 100, 200, 300, 400 labels (every budget)" in report.read_text()
    assert [line.split(":")[0] for line in console if line.startswith("caution")] == ["caution   setting chance"]


def test_a_strategy_a_setting_never_ran_is_not_counted_there(tmp_path):
    # `--vary model=mlp,linear` drops a strategy in one setting: margin runs only in the first
    both = cycles_of("s", {"entropy": 0.05, "margin": -0.05}, seeds=6, noise=0.002)
    _grid(tmp_path, {"mlp": (both, {"strategies": ["random", "entropy", "margin"]}),
                     "linear": (both[both["strategy"] != "margin"], {"strategies": ["random", "entropy"]})},
          ["random", "entropy", "margin"])
    report, console = write_grid_report(tmp_path)
    found = pd.read_csv(tmp_path / "report" / "tables" / "grid_verdicts.csv")
    assert sorted(zip(found["dataset"], found["strategy"], strict=True)) == [
        ("linear", "entropy"), ("mlp", "entropy"), ("mlp", "margin")]
    assert console[:2] == ["robust    entropy better than random in all 2 settings",
                           "robust    margin worse than random in 1 of 1 setting; not run in 1"]
    # Holm over the 3 comparisons made, not 2 x 2
    assert "one family of the 3 comparisons made over 2 settings (mlp 2, linear 1)" in report.read_text()


def test_counts_leave_out_a_comparison_without_a_paired_seed():
    found = pd.DataFrame([{"dataset": "a", "strategy": "x", "other": "r", "verdict": "better", "n_pairs": 5},
                          {"dataset": "b", "strategy": "x", "other": "r", "verdict": "undecided", "n_pairs": 0}])
    row = grid_stats.verdict_counts(found, ["a", "b", "c"]).iloc[0]
    assert (row["settings"], row["better"], row["undecided"], row["not_run"]) == (1, 1, 0, 2)
    assert robustness_sentence(row) == "x better than r in 1 of 1 setting; not run in 2"
