"""bench.report.plots on small hand-made frames: what each plot draws is read back from the Axes (lines, collections,
texts) and checked against the input, not against the plot's own code."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from bench.analysis import curves, paired
from bench.report import plots

NAMES = ["badge", "coreset", "entropy", "ll", "margin", "random"]


def new_axes() -> Axes:
    return Figure(figsize=(8.0, 4.2), layout="constrained").subplots()


def legend_labels(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


# ---------------------------------------------------------------- styles


def test_styles_are_fixed_by_sorted_names():
    one = plots.strategy_styles(["random", "entropy", "ll"])
    other = plots.strategy_styles(["ll", "random", "entropy", "ll"])
    assert one == other and list(one) == ["entropy", "ll", "random"]


def _curves(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"strategy": name, "n_labeled": n, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
                         for name in names for n in (100, 200)])


def test_a_strategy_keeps_its_style_whichever_strategies_share_the_report():
    # entropy was orange in a report of random and entropy and blue in one of entropy and margin (sorted position)
    subsets = [["random", "entropy"], ["entropy", "margin"], ["badge", "core-set", "entropy", "my-idea"],
               ["my-idea", "entropy", "zz-other"]]
    for name in ("entropy", "my-idea"):
        styles = [plots.strategy_styles(subset)[name] for subset in subsets if name in subset]
        assert len(styles) >= 2 and all(style == styles[0] for style in styles), (name, styles)
    drawn = []
    for subset in subsets[:2]:
        ax = new_axes()
        plots.learning_curves(ax, _curves(subset), plots.strategy_styles(subset), "digits")
        line = next(line for line in ax.get_lines() if line.get_label() == "entropy")
        drawn.append((to_rgb(line.get_color()), line.get_marker()))
    assert drawn[0] == drawn[1]
    styles = plots.strategy_styles(["random", "entropy", "margin", "my-idea", "zz-other"])
    assert len({s.color for s in styles.values()}) == 5  # still one colour each within a report
    assert len({(s.marker, s.dashes) for s in styles.values()}) == 5


def test_twelve_strategies_have_distinct_styles_and_the_first_ten_differ_without_colour():
    names = [f"strategy{i:02d}" for i in range(12)]
    styles = plots.strategy_styles(reversed(names))
    triples = {(s.color, s.marker, s.dashes) for s in styles.values()}
    assert len(triples) == 12
    assert len({s.color for s in styles.values()}) == 12  # husl beyond 10: still one colour each
    for a, b in itertools.combinations(names[:10], 2):
        assert (styles[a].marker, styles[a].dashes) != (styles[b].marker, styles[b].dashes), (a, b)


def test_entropy_and_random_are_told_apart_in_greyscale():
    # Today's complaint: two near-identical oranges and nothing else; marker and dashes must separate them.
    styles = plots.strategy_styles(NAMES)
    entropy, random = styles["entropy"], styles["random"]
    assert entropy.marker != random.marker and entropy.dashes != random.dashes


def test_learning_curves_draw_each_strategy_in_its_style():
    rows = [{"strategy": name, "n_labeled": n, "mean": 0.5 + 0.01 * i + 0.001 * n / 100, "ci_low": 0.4,
             "ci_high": 0.7} for i, name in enumerate(NAMES) for n in (300, 100, 200)]
    summary = pd.DataFrame(rows)
    styles = plots.strategy_styles(NAMES)
    ax = new_axes()
    plots.learning_curves(ax, summary, styles, "digits")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == NAMES and legend_labels(ax) == NAMES
    for i, name in enumerate(NAMES):
        line, style = lines[name], styles[name]
        assert line.get_marker() == style.marker and to_rgb(line.get_color()) == pytest.approx(style.color)
        assert line.get_linestyle() == ("-" if style.dashes == "" else "--")
        assert list(line.get_xdata()) == [100, 200, 300]  # sorted by budget
        assert line.get_ydata() == pytest.approx([100 * (0.5 + 0.01 * i + 0.001 * n) for n in (1, 2, 3)])


def test_compute_curves_put_each_accuracy_at_the_compute_spent_by_then():
    rows = [{"strategy": name, "cycle": c, "compute_s": 10.0 * (c + 1) * (i + 1), "mean": 0.5 + 0.1 * c}
            for i, name in enumerate(("badge", "random")) for c in (2, 0, 1)]
    styles = plots.strategy_styles(["badge", "random"])
    ax = new_axes()
    plots.compute_curves(ax, pd.DataFrame(rows), styles, "digits")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["badge", "random"]
    assert list(lines["random"].get_xdata()) == [20, 40, 60]  # in cycle order
    assert lines["random"].get_ydata() == pytest.approx([50, 60, 70])
    assert to_rgb(lines["badge"].get_color()) == pytest.approx(styles["badge"].color)
    assert "machine-dependent" in ax.get_title() and "seconds" in ax.get_xlabel()


# ---------------------------------------------------------------- differences


def comparisons(significant: dict[tuple[str, int], bool]) -> pd.DataFrame:
    rows = []
    for name in ("entropy", "margin"):
        for n in (100, 200, 300):
            rows.append({"strategy": name, "baseline": "random", "metric": "test_acc", "n_labeled": float(n),
                         "mean_diff": 0.01 * n / 100, "ci_low": 0.0, "ci_high": 0.03,
                         "significant": significant.get((name, n), False), "family": paired.SECONDARY})
    rows.append({"strategy": "entropy", "baseline": "random", "metric": "aulc", "n_labeled": math.nan,
                 "mean_diff": 0.02, "ci_low": 0.01, "ci_high": 0.03, "significant": True, "family": paired.PRIMARY})
    return pd.DataFrame(rows)


def scatter_points(ax: Axes) -> list[tuple[float, float]]:
    """Every point drawn by ax.scatter (fill_between's bands are collections too, but not PathCollections)."""
    return [(float(x), float(y)) for c in ax.collections if isinstance(c, PathCollection)
            for x, y in np.asarray(c.get_offsets()).reshape(-1, 2)]


def test_difference_plot_has_no_significance_entry_without_a_star():
    ax = new_axes()
    plots.differences(ax, comparisons({}), plots.strategy_styles(NAMES), "digits")
    assert scatter_points(ax) == []
    assert legend_labels(ax) == ["entropy", "margin"]  # the significant primary AULC row draws no star


def test_difference_plot_names_the_star_when_one_is_drawn():
    ax = new_axes()
    plots.differences(ax, comparisons({("margin", 200): True}), plots.strategy_styles(NAMES), "digits")
    assert scatter_points(ax) == [(200.0, 2.0)]
    labels = legend_labels(ax)
    assert labels[:2] == ["entropy", "margin"] and len(labels) == 3 and "significant" in labels[2]


# ---------------------------------------------------------------- AULC per seed


def test_aulc_plot_joins_exactly_each_seeds_values():
    rng = np.random.default_rng(0)
    rows = [{"dataset": "digits", "strategy": name, "seed": seed, "n_cycles": 4, "complete": True,
             "aulc": float(rng.uniform(0.5, 0.7))} for name in ("entropy", "margin", "random") for seed in range(4)]
    seeds = pd.DataFrame(rows)
    seeds.loc[(seeds["strategy"] == "margin") & (seeds["seed"] == 2), "complete"] = False  # left out
    seeds = seeds[~((seeds["strategy"] == "random") & (seeds["seed"] == 3))]  # a missing job
    summary = curves.summarize_aulc(seeds[seeds["complete"]])
    ax = new_axes()
    plots.aulc(ax, seeds, summary, plots.strategy_styles(NAMES), "digits")

    position = {t.get_text(): x for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)}
    assert sorted(position) == ["entropy", "margin", "random"]
    lines = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith("_seed ")}
    assert sorted(lines) == [f"_seed {s}" for s in range(4)]
    for seed in range(4):
        line = lines[f"_seed {seed}"]
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        drawn = {float(a): float(b) for a, b in zip(x, y, strict=True) if np.isfinite(b)}  # x -> AULC (%)
        mine = seeds[(seeds["seed"] == seed) & seeds["complete"]]
        assert drawn == pytest.approx({position[s]: 100 * v for s, v in zip(mine["strategy"], mine["aulc"],
                                                                            strict=True)})
    # Every seed's point sits where its line passes: no jitter.
    points = {(float(a), round(float(b), 9)) for a, b in scatter_points(ax)}
    for line in lines.values():
        for a, b in zip(line.get_xdata(), line.get_ydata(), strict=True):
            if np.isfinite(b):
                assert (float(a), round(float(b), 9)) in points
    assert "mean, 95% t-interval" in legend_labels(ax)


# ---------------------------------------------------------------- pairwise matrix


PAIRS = pd.DataFrame([
    {"strategy": "entropy", "other": "random", "mean_diff": 0.012, "verdict": "better"},
    {"strategy": "entropy", "other": "margin", "mean_diff": -0.008, "verdict": "worse"},
    {"strategy": "margin", "other": "random", "mean_diff": 0.001, "verdict": "equivalent"},
    {"strategy": "badge", "other": "random", "mean_diff": 0.004, "verdict": "undecided"},
    {"strategy": "badge", "other": "entropy", "mean_diff": math.nan, "verdict": "undecided"},
])


def cell_readers(ax: Axes) -> tuple[dict[float, str], dict[float, str]]:
    """Row name by y centre, column name by x centre, from the tick labels."""
    rows = {round(float(y), 6): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)}
    columns = {round(float(x), 6): t.get_text() for x, t in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)}
    return rows, columns


def test_pairwise_matrix_is_antisymmetric_in_points_with_mirrored_verdicts():
    ax = new_axes()
    plots.pairwise(ax, PAIRS, "digits")
    rows, columns = cell_readers(ax)
    names = ["badge", "entropy", "margin", "random"]
    assert sorted(rows.values()) == names and sorted(columns.values()) == names

    mesh = ax.collections[0].get_array()
    values = np.ma.filled(np.ma.masked_invalid(mesh.reshape(len(names), len(names))), np.nan)  # [row, column]
    drawn = {(rows[i + 0.5], columns[j + 0.5]): values[i, j] for i in range(len(names)) for j in range(len(names))}
    texts = {(rows[round(t.get_position()[1], 6)], columns[round(t.get_position()[0], 6)]): t.get_text()
             for t in ax.texts}

    expected = {}
    for pair in PAIRS.itertuples(index=False):
        expected[(pair.strategy, pair.other)] = 100 * pair.mean_diff
        expected[(pair.other, pair.strategy)] = -100 * pair.mean_diff
    for key, value in drawn.items():
        if math.isnan(expected.get(key, math.nan)):
            assert math.isnan(value), key  # diagonal, untested or untestable: no colour
        else:
            assert value == pytest.approx(expected[key]), key
    assert drawn[("entropy", "random")] == pytest.approx(1.2) and drawn[("random", "entropy")] == pytest.approx(-1.2)

    assert texts[("entropy", "random")] == "+1.2 ▲" and texts[("random", "entropy")] == "−1.2 ▼"
    assert texts[("entropy", "margin")] == "−0.8 ▼" and texts[("margin", "entropy")] == "+0.8 ▲"
    assert texts[("margin", "random")] == "+0.1 ≈" and texts[("random", "margin")] == "−0.1 ≈"
    assert texts[("badge", "random")] == "+0.4 ?" and texts[("random", "badge")] == "−0.4 ?"
    assert texts[("badge", "entropy")] == texts[("entropy", "badge")] == "–"
    assert not any(r == c for r, c in texts)  # the diagonal is blank
    assert ax.get_title() == "digits: AULC difference, row minus column (points)"
    assert all(mark in ax.get_xlabel() for mark in "▲▼≈?–")


def test_pairwise_colours_are_centred_at_zero():
    ax = new_axes()
    plots.pairwise(ax, PAIRS, "digits")
    mesh = ax.collections[0]
    assert mesh.norm.vmin == pytest.approx(-1.2) and mesh.norm.vmax == pytest.approx(1.2)
    white = np.asarray(mesh.cmap(mesh.norm(0.0))[:3])
    assert white == pytest.approx([0.97, 0.97, 0.97], abs=0.03)  # RdBu's middle: a zero difference is neutral


def test_pairwise_refuses_an_unknown_verdict():
    bad = PAIRS.assign(verdict=["better", "worse", "equivalent", "undecided", "maybe"])
    with pytest.raises(ValueError, match="Unknown verdict 'maybe'"):
        plots.pairwise(new_axes(), bad, "digits")


def test_the_shipped_slots_name_registered_strategies():
    import strategies

    assert set(plots.SHIPPED) <= set(strategies.STRATEGIES.names()) and plots.SHIPPED[0] == "random"
