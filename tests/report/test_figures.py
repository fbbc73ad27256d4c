"""bench.report.figures: a figure is drawn and saved where its report.md line points, at the report's DPI, and a
figure matplotlib cannot save is one line that says the results are complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from bench.core.errors import UserError
from bench.report import figures


def test_a_figure_is_saved_where_its_line_points(tmp_path: Path):
    (tmp_path / "plots").mkdir()
    lines = figures.figure(tmp_path, "curve", "A curve", lambda ax: ax.plot([0, 1], [0, 1]), size=(2.0, 1.5))
    assert lines == ["![A curve](plots/curve.png)", ""]
    pixels = imread(tmp_path / "plots" / "curve.png")
    assert pixels.shape[:2] == (round(1.5 * figures.DPI), round(2.0 * figures.DPI))


def test_a_figure_matplotlib_cannot_save_is_one_line(tmp_path: Path, monkeypatch):
    def refuse(self, path, **kwargs):  # what Agg says of an image over 2**16 pixels a side
        raise ValueError("Image size of 84000x120 pixels is too large.\nIt must be less than 2^16 in each direction.")

    monkeypatch.setattr(Figure, "savefig", refuse)
    (tmp_path / "plots").mkdir()
    said = r"^Cannot save the plot plots/huge.png \(ValueError: Image size of 84000x120 pixels is too large.\)"
    with pytest.raises(UserError, match=said + r"; the report was not written .* the results are complete"):
        figures.figure(tmp_path, "huge", "Too big", lambda ax: ax.plot([0, 1]))
