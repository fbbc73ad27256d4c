"""bench.report.grid_report: the robustness line of each comparison, the sentence on the field that changes a
verdict, and the drawing of the verdicts over the grid, each against a hand-written case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bench.analysis import grid_stats
from bench.report.grid_report import VERDICT_COLOURS, change_sentence, robustness_sentence, verdict_grid


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
