"""The report's plots: a fixed style (colour, marker, dashes) per strategy, and one pure drawing function per
figure. Each draws on the matplotlib Axes it is given and returns None; saving, sizes and file names belong to
bench.report.layout. The numbers arrive already computed (bench.analysis.curves, bench.analysis.verdicts' rows).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from bench.analysis import across, paired

Color = tuple[float, float, float]  # RGB in [0, 1]

# No "*" (the significance star) and no "D" (the black mean diamond): a strategy's marker never reads as either.
MARKERS = ("o", "s", "^", "v", "P", "X", "d", "<", ">", "p", "h")
# seaborn's first dash patterns (on, off, ... in line widths); "" is solid. 11 markers and 5 patterns: the first
# 55 strategies have distinct (marker, dashes) pairs, so any two are told apart without colour.
DASHES: tuple[tuple[float, ...] | str, ...] = ("", (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1))
# A style is a slot: slot i takes colour i % 20, marker i % 11 and dashes i % 5, so any 20 slots differ in colour
# (seaborn's colorblind palette first, then husl hues) and any 55 in (marker, dashes). The shipped strategies own
# the first slots, baseline first; any other name hashes to a slot of its own (see strategy_styles).
PALETTE: tuple[Color, ...] = tuple(tuple(float(c) for c in color) for color in
                                   [*sns.color_palette("colorblind", 10), *sns.color_palette("husl", 10)])
SHIPPED = ("random", "entropy", "margin", "least-confidence", "learning-loss", "core-set", "badge", "bald")
LINE_WIDTH = 1.6  # wide enough that the dash patterns survive printing
MARKER_SIZE = 5.5
SEED_LINE = {"color": "0.55", "linewidth": 0.8, "alpha": 0.8}  # the thin grey line joining one seed's AULCs
# The mark of a pairwise verdict, read "row is <verdict> than column"; MIRROR: the column's view of the same pair.
VERDICT_MARKS = {"better": "▲", "worse": "▼", "equivalent": "≈", "undecided": "?"}
MIRROR = {"better": "worse", "worse": "better", "equivalent": "equivalent", "undecided": "undecided"}
DASH = "–"  # a pair that could not be tested
MINUS = "−"  # typographic minus for annotations (matplotlib's ticks use it too)


@dataclass(frozen=True)
class Style:
    """How one strategy is drawn in every plot; marker and dashes tell strategies apart in greyscale."""

    color: Color
    marker: str  # a matplotlib marker
    dashes: tuple[float, ...] | str  # matplotlib dash sequence in line widths; "" for a solid line


def strategy_styles(strategies: Iterable[object]) -> dict[str, Style]:
    """A style per strategy that is the same in every report and suite, whichever strategies share it: a
    shipped strategy's slot is its place in SHIPPED; any other name's is a hash of the name (crc32, the same in
    every process), moved on to the next slot free in this report only where two names would share a colour
    (among 20 strategies) or a (marker, dashes) pair (among 55). Keys in sorted order."""
    names = sorted({str(s) for s in strategies})
    slots = {name: SHIPPED.index(name) for name in names if name in SHIPPED}
    for name in (n for n in names if n not in SHIPPED):
        slot = len(SHIPPED) + zlib.crc32(name.encode()) % (len(MARKERS) * len(DASHES) - len(SHIPPED))
        while not _free(slot, slots.values()):
            slot += 1
        slots[name] = slot
    return {name: Style(color=PALETTE[slots[name] % len(PALETTE)], marker=MARKERS[slots[name] % len(MARKERS)],
                        dashes=DASHES[slots[name] % len(DASHES)]) for name in names}


def _free(slot: int, taken: Iterable[int]) -> bool:
    """Whether slot differs from every taken one in colour (while colours last) and in (marker, dashes)."""
    taken = list(taken)
    pairs = len(MARKERS) * len(DASHES)
    colour_free = len(taken) >= len(PALETTE) or all((slot - t) % len(PALETTE) for t in taken)
    return colour_free and (len(taken) >= pairs or all((slot - t) % pairs for t in taken))


def _line(ax: Axes, x: np.ndarray, y: np.ndarray, style: Style, label: str) -> None:
    ax.plot(x, y, color=style.color, marker=style.marker, dashes=style.dashes, linewidth=LINE_WIDTH,
            markersize=MARKER_SIZE, label=label)


def _legend_outside(ax: Axes, **kwargs: object) -> None:
    """The legend right of the axes, where it hides no point."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, handlelength=3.0, **kwargs)


def learning_curves(ax: Axes, summary: pd.DataFrame, styles: dict[str, Style], dataset: str) -> None:
    """Mean test accuracy over seeds per strategy (curves.summarize_cycles rows), with 95% t-interval bands."""
    for name, curve in summary.sort_values("n_labeled").groupby("strategy", sort=True):
        x = curve["n_labeled"].to_numpy(float)
        ax.fill_between(x, 100 * curve["ci_low"], 100 * curve["ci_high"], color=styles[name].color, alpha=0.2,
                        linewidth=0)
        _line(ax, x, 100 * curve["mean"].to_numpy(float), styles[name], str(name))
    _legend_outside(ax, title="strategy")
    ax.set(xlabel="labeled examples", ylabel="test accuracy (%)",
           title=f"{dataset}: mean over seeds, 95% t-interval bands")


def compute_curves(ax: Axes, compute: pd.DataFrame, styles: dict[str, Style], dataset: str) -> None:
    """Mean test accuracy against the mean compute spent by then (cost.compute_curves rows: training seconds and
    the selection seconds before each evaluation, summed over cycles), one line per strategy. The seconds are the
    run's machine's, under its load: a reading of cost, never of which strategy is better."""
    for name, curve in compute.sort_values("cycle").groupby("strategy", sort=True):
        _line(ax, curve["compute_s"].to_numpy(float), 100 * curve["mean"].to_numpy(float), styles[name], str(name))
    _legend_outside(ax, title="strategy")
    ax.set(xlabel="cumulative compute: train + select seconds (this machine)", ylabel="test accuracy (%)",
           title=f"{dataset}: accuracy against compute (machine-dependent)")


def differences(ax: Axes, comparisons: pd.DataFrame, styles: dict[str, Style], dataset: str) -> None:
    """Each strategy minus the baseline at each budget (paired.compare_to_baseline rows), 95% t-interval bands,
    a star where the secondary family (Holm) calls the difference significant."""
    rows = comparisons[comparisons["metric"] == "test_acc"].sort_values("n_labeled")
    starred = False
    for name, curve in rows.groupby("strategy", sort=True):
        style = styles[name]
        x = curve["n_labeled"].to_numpy(float)
        ax.fill_between(x, 100 * curve["ci_low"], 100 * curve["ci_high"], color=style.color, alpha=0.2,
                        linewidth=0)
        _line(ax, x, 100 * curve["mean_diff"].to_numpy(float), style, str(name))
        hits = curve[curve["significant"].astype(bool) & (curve["family"] == paired.SECONDARY)]
        ax.scatter(hits["n_labeled"], 100 * hits["mean_diff"], marker="*", s=160, color=style.color,
                   edgecolor="black", linewidth=0.6, zorder=3)
        starred |= not hits.empty
    if starred:  # a legend entry for a mark that appears nowhere would suggest one was missed
        ax.scatter([], [], marker="*", s=160, color="white", edgecolor="black",
                   label="significant\n(secondary family,\nHolm)")
    ax.axhline(0, color="black", linewidth=0.8)
    baseline = rows["baseline"].iloc[0] if len(rows) else "baseline"
    ax.set(xlabel="labeled examples", ylabel=f"difference to {baseline} (percentage points)",
           title=f"{dataset}: paired difference, 95% t-interval bands")
    _legend_outside(ax, title="strategy")


def penalty(ax: Axes, matrix: pd.DataFrame, dataset: str, vmax: float = 1.0) -> None:
    """BADGE's penalty matrix (penalty_matrix): share of checkpoints at which the row beats the column."""
    sums = matrix.sum(axis=0, skipna=True)
    sns.heatmap(matrix.astype(float), annot=True, fmt=".2f", annot_kws={"size": 9}, vmin=0, vmax=vmax, cmap="Reds",
                square=True, linewidths=0.5, cbar_kws={"label": "share of checkpoints row beats column"}, ax=ax)
    ax.set_xticklabels([f"{name} (sum {sums[name]:.2f})" for name in matrix.columns], rotation=35, ha="right",
                       rotation_mode="anchor")
    ax.set_yticklabels(list(matrix.index), rotation=0)
    ax.grid(False)
    ax.set(xlabel="worse strategy (column sum: lower is better)", ylabel="better strategy",
           title=f"{dataset}: pairwise penalty matrix")


def aulc(
    ax: Axes, aulc_seeds: pd.DataFrame, aulc_summary: pd.DataFrame, styles: dict[str, Style], dataset: str
) -> None:
    """The AULC of every complete seed (curves.aulc_per_seed), a thin grey line joining one seed's values across
    strategies (same seed = same initial set and weights: the paired evidence), and each strategy's mean with
    its 95% t-interval (curves.summarize_aulc)."""
    names = sorted(aulc_summary["strategy"].unique())
    position = {name: i for i, name in enumerate(names)}
    seeds = aulc_seeds[aulc_seeds["complete"].astype(bool) & aulc_seeds["strategy"].isin(names)]
    for seed, rows in seeds.groupby("seed", sort=True):
        y = np.full(len(names), np.nan)  # [n_strategies]; NaN breaks the line where this seed has no value
        y[rows["strategy"].map(position).to_numpy(int)] = 100 * rows["aulc"].to_numpy(float)
        ax.plot(np.arange(len(names)), y, zorder=1, label=f"_seed {seed}", **SEED_LINE)  # "_": not in the legend
    for name, rows in seeds.groupby("strategy", sort=True):
        ax.scatter(np.full(len(rows), position[name]), 100 * rows["aulc"], s=36, color=styles[name].color,
                   edgecolor="white", linewidth=0.5, zorder=2)
    if names:
        summary = aulc_summary.set_index("strategy").loc[names]
        mean = 100 * summary["mean"].to_numpy(float)  # [n_strategies]
        spread = 100 * (summary["ci_high"].to_numpy(float) - summary["mean"].to_numpy(float))  # [n_strategies]
        # Beside the seeds' column rather than on it, so the diamond hides no seed.
        interval = ax.errorbar(np.arange(len(names)) + 0.2, mean, yerr=np.nan_to_num(spread), fmt="D",
                               color="black", markersize=5, capsize=4, zorder=3, label="mean, 95% t-interval")
        seed_line = Line2D([], [], **SEED_LINE, label="one seed (paired)")
        ax.legend(handles=[seed_line, interval], loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.3)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set(xlabel="strategy", ylabel="area under learning curve (% accuracy)",
           title=f"{dataset}: AULC per seed (a grey line joins one seed) and mean")


def critical_difference(ax: Axes, test: across.RankTest, styles: dict[str, Style], unit: str) -> None:
    """Each strategy's mean rank with a bar of +-CD/2: two strategies differ (Nemenyi) when their bars do not
    overlap."""
    names = list(test.mean_ranks)  # best first
    ranks = np.array([test.mean_ranks[n] for n in names])  # [n_strategies]
    y = np.arange(len(names))[::-1]
    for i, name in enumerate(names):
        ax.errorbar(ranks[i], y[i], xerr=test.critical_difference / 2, fmt=styles[name].marker,
                    color=styles[name].color, markersize=MARKER_SIZE + 1, capsize=4)
    ax.set_yticks(y, names)
    ax.set_xlim(0.5, len(names) + 0.5)
    ax.set(xlabel=f"mean AULC rank over {test.n_settings} {unit}s (1 = best); bars +-CD/2, "
                  f"CD = {test.critical_difference:.2f}",
           title="Nemenyi: strategies whose bars do not overlap differ (alpha 0.05)")


def pairwise_matrix(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The strategies x strategies AULC difference, row minus column in points (antisymmetric, NaN on the
    diagonal and for untestable pairs), and the verdict from the row's point of view ("" on the diagonal).
    `pairs`: one row per unordered pair, columns strategy, other, mean_diff (a fraction), verdict."""
    names = sorted({str(s) for s in pairs["strategy"]} | {str(s) for s in pairs["other"]})
    points = pd.DataFrame(np.nan, index=names, columns=names)
    verdicts = pd.DataFrame("", index=names, columns=names)
    for row in pairs.itertuples(index=False):
        if row.verdict not in MIRROR:
            raise ValueError(f"Unknown verdict {row.verdict!r} for {row.strategy} vs {row.other}; expected one of "
                             f"{', '.join(MIRROR)}.")
        a, b = str(row.strategy), str(row.other)
        points.loc[a, b], points.loc[b, a] = 100 * row.mean_diff, -100 * row.mean_diff
        verdicts.loc[a, b], verdicts.loc[b, a] = row.verdict, MIRROR[row.verdict]
    return points, verdicts


def _pairwise_label(points: float, verdict: str) -> str:
    """'+1.2 ▲', '−0.8 ▼', '+0.1 ≈', '+0.3 ?'; '–' for a pair that could not be tested."""
    if pd.isna(points):
        return DASH
    number = f"{points:+.1f}" if round(points, 1) != 0 else "0.0"  # never "+0.0" on one side, "−0.0" on the other
    return number.replace("-", MINUS) + f" {VERDICT_MARKS[verdict]}"


def pairwise(ax: Axes, pairs: pd.DataFrame, dataset: str) -> None:
    """Every pair of strategies: AULC of the row minus the column in points, coloured on a diverging scale
    centred at 0, annotated with the difference and the row's verdict (see pairwise_matrix)."""
    points, verdicts = pairwise_matrix(pairs)
    names = list(points.index)
    values = points.to_numpy(float)  # [n_strategies, n_strategies]
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0  # every difference 0: any symmetric scale shows white
    sns.heatmap(points, mask=~np.isfinite(values), cmap="RdBu", center=0, vmin=-vmax, vmax=vmax, square=True,
                linewidths=0.5, linecolor="white", cbar_kws={"label": "row minus column (AULC points)"}, ax=ax)
    for r, row_name in enumerate(names):
        for c, column_name in enumerate(names):
            if r == c:
                continue
            value = values[r, c]
            dark = np.isfinite(value) and abs(value) > 0.6 * vmax  # RdBu's ends are dark: write in white there
            ax.text(c + 0.5, r + 0.5, _pairwise_label(value, verdicts.loc[row_name, column_name]), ha="center",
                    va="center", fontsize=9, color="white" if dark else ("black" if np.isfinite(value) else "0.4"))
    ax.set_xticks(np.arange(len(names)) + 0.5, names, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(names)) + 0.5, names, rotation=0)
    ax.set_facecolor("0.9")  # the diagonal and untestable pairs: grey, unlike a difference of 0 (white)
    ax.grid(False)
    ax.set(xlabel=f"row vs column: ▲ better, ▼ worse, ≈ equivalent, ? undecided, {DASH} not testable", ylabel="",
           title=f"{dataset}: AULC difference, row minus column (points)")
