"""The report's figures: each drawn by a function of bench.report.plots on a fresh Agg-backed figure (no pyplot
state) and saved at once as plots/STEM.png, in the process that writes the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.analysis.record import Analysis
from bench.core.errors import UserError
from bench.report import plots

DPI = 120


def palette(result: Analysis) -> dict[str, plots.Style]:
    """Strategy -> colour, marker and dashes, the same in every plot (fixed by the sorted names of all strategies)."""
    return plots.strategy_styles(result.cycles["strategy"].unique())


def figure(out: Path, stem: str, alt: str, draw: Callable[[Axes], None],
           size: tuple[float, float] = (6.4, 4.2)) -> list[str]:
    """Draw plots/STEM.png into the report folder `out` and save it; return its report.md lines."""
    with sns.axes_style("whitegrid"):
        drawn = Figure(figsize=size, layout="constrained")
        draw(drawn.subplots())
    save(drawn, out / "plots" / f"{stem}.png")
    return [f"![{alt}](plots/{stem}.png)", ""]


def save(drawn: Figure, path: Path) -> None:
    try:
        drawn.savefig(path, dpi=DPI)
    except (ValueError, RuntimeError) as err:  # matplotlib refuses, e.g. an image over 2**16 pixels a side
        reason = (str(err).strip().splitlines() or [""])[0]
        raise UserError(f"Cannot save the plot plots/{path.name} ({type(err).__name__}: {reason}); the report was "
                        "not written (the previous one is left as it was) and the results are complete.") from None
