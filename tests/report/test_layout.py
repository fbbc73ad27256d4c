"""bench.report.layout on a synthetic cycles.parquet whose truth is known: one strategy clearly better than random,
one identical to it, one noisy and missing a seed."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats as sps

from bench.analysis import paired
from bench.report import plots
from bench.report.layout import report_folder, write_report
from bench.results.store import ResultsError

LABELS = [100, 200, 300, 400]
SEEDS = range(5)


def synthetic_cycles() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for seed in SEEDS:
        random_curve = 0.5 + 0.08 * np.arange(len(LABELS)) + rng.normal(0, 0.01, len(LABELS))  # [n_cycles]
        curves = {
            "random": random_curve,
            "better": random_curve + 0.06 + rng.normal(0, 0.005, len(LABELS)),  # 6 points ahead
            "same": random_curve.copy(),  # identical to random: no difference at all
            "noisy": random_curve + rng.normal(0, 0.01, len(LABELS)),
        }
        for strategy, accs in curves.items():
            if strategy == "noisy" and seed == 4:
                continue  # a failed job
            for cycle, acc in enumerate(accs):
                rows.append({
                    "run": "synthetic", "dataset": "digits", "model": "cnn", "strategy": strategy,
                    "seed": seed, "cycle": cycle, "n_labeled": LABELS[cycle], "test_acc": float(acc),
                    "test_loss": 1.0, "train_seconds": 1.0, "select_seconds": 0.1, "config_hash": "abc",
                    "finished_at": "2025-01-01T00:00:00", "ll_spearman": math.nan,
                })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    synthetic_cycles().to_parquet(folder / "cycles.parquet", index=False)
    write_report(folder)
    return folder


@pytest.fixture(scope="module")
def report_text(run_dir: Path) -> str:
    return (run_dir / "report" / "report.md").read_text()


def findings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("- ")]


def test_writes_report_tables_and_plots(run_dir: Path):
    out = run_dir / "report"
    assert write_report(run_dir) == out / "report.md"
    for stem in ("learning_curve", "comparisons", "aulc", "penalty", "labels_saved", "cost"):
        for ext in ("csv", "md", "tex"):
            assert (out / "tables" / f"{stem}_digits.{ext}").stat().st_size > 0, (stem, ext)
    for stem in ("learning_curves", "compute", "difference", "aulc", "penalty"):
        assert (out / "plots" / f"{stem}_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tex = (out / "tables" / "comparisons_digits.tex").read_text()
    assert tex.startswith(r"\begin{tabular}") and r"\bottomrule" in tex


def test_report_embeds_plots_by_relative_path(run_dir: Path, report_text: str):
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report_text)
    assert len(images) == 6  # the pairwise matrix too (random and 3 others), and accuracy against compute
    for relative in images:
        assert not Path(relative).is_absolute() and (run_dir / "report" / relative).is_file()


def headline(text: str) -> str:
    """The primary-endpoint section: everything between the header and the first dataset section."""
    return text.split("\n## Primary endpoint", 1)[1].split("\n## Dataset", 1)[0]


def aulc_differences(strategy: str) -> np.ndarray:
    cycles = synthetic_cycles()
    area = {(name, seed): np.trapezoid(curve["test_acc"], curve["n_labeled"]) / (LABELS[-1] - LABELS[0])
            for (name, seed), curve in cycles.sort_values("n_labeled").groupby(["strategy", "seed"])}
    seeds = [s for s in SEEDS if (strategy, s) in area]
    return np.array([area[strategy, s] - area["random", s] for s in seeds])


def says(text: str, *facts: str) -> bool:
    """Whether text carries each fact (a name, a number, a verdict word), in this order: the wording around them
    is free to change."""
    at = 0
    for fact in facts:
        at = text.find(fact, at)
        if at < 0:
            return False
        at += len(fact)
    return True


def line_with(text: str, *facts: str) -> str:
    """The one line of text that carries the facts, in order."""
    found = [line for line in text.splitlines() if says(line, *facts)]
    assert len(found) == 1, (facts, found)
    return found[0]


def verdict_part(line: str) -> str:
    """What follows a finding's last colon: the verdict it reads."""
    return line.rsplit(":", 1)[1]


def _holm(raw: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Holm written out: sorted p times m, m-1, ... with a running maximum; and the level each is decided at."""
    order = sorted(raw, key=raw.get)
    m = len(order)
    adjusted, levels, running, stopped = {}, {}, 0.0, None
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[name]))
        adjusted[name] = running
        if stopped is None and raw[name] >= 0.05 / (m - rank):
            stopped = 0.05 / (m - rank)
        levels[name] = stopped if stopped is not None else 0.05 / (m - rank)
    return adjusted, levels


def test_primary_endpoint_is_the_headline(report_text: str):
    first_section = report_text.split("\n## ", 2)[1]
    assert says(first_section.splitlines()[0], "area under the learning curve", "random")
    lines = findings(headline(report_text))
    raw = {name: sps.ttest_1samp(aulc_differences(name), 0).pvalue if name != "same" else 1.0
           for name in ("better", "noisy", "same")}
    adjusted, levels = _holm(raw)
    d = aulc_differences("noisy")
    low, high = sps.t.interval(1 - levels["noisy"], len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    noisy = next(line for line in lines if line.startswith("- **noisy** vs random"))
    confidence = f"{round(100 * (1 - levels['noisy']), 2):g}%"
    assert (f"{100 * d.mean():+.1f} AULC points (Holm-adjusted {confidence} CI {100 * low:+.1f} to "
            f"{100 * high:+.1f}), Holm p = {adjusted['noisy']:.3f}, 4 seeds: ") in noisy
    expected = "equivalent" if -0.01 < low and high < 0.01 else "better" if low > 0 else "worse" if high < 0 else \
        "undecided"
    assert noisy.split("4 seeds: ")[1].startswith("noisy better" if expected == "better" else expected)
    better = next(line for line in lines if line.startswith("- **better** vs random"))
    assert adjusted["better"] < 0.05 and "better" in verdict_part(better)
    same = next(line for line in lines if line.startswith("- **same** vs random"))
    assert "+0.0 AULC points" in same and says(verdict_part(same), "equivalent", "1 point")


def test_families_are_stated_once_each(report_text: str):
    lines = findings(headline(report_text))
    primary = next(line for line in lines if line.startswith("- Primary family:"))
    assert says(primary, "random", "3 comparisons", "Holm")
    secondary = next(line for line in lines if line.startswith("- Secondary (exploratory):"))
    assert says(secondary, "paired t-test", "random", "each budget", "Holm", f"{3 * len(LABELS)} strategy-budget",
                "no budget left out")
    pairs = report_text.split("\n## Every pair of strategies", 1)[1].split("\n## ", 1)[0]
    assert says(pairs, "Holm", "6 pairs")


def test_seeds_needed_match_a_direct_power_computation(run_dir: Path):
    primary = pd.read_csv(run_dir / "report" / "tables" / "primary_digits.csv").set_index("strategy")
    undecided = primary[primary["verdict"] == "undecided"]
    assert (primary.loc[primary["verdict"] != "undecided", "seeds_needed"].isna()).all()
    for name, row in undecided.iterrows():
        sd, level = aulc_differences(name).std(ddof=1), row["level"]

        def power(n: int, sd: float = sd, level: float = level) -> float:
            t_crit = sps.t.ppf(1 - level / 2, n - 1)
            nc = 0.01 / sd * math.sqrt(n)
            return sps.nct.sf(t_crit, n - 1, nc) + sps.nct.sf(t_crit, n - 1, -nc)

        assert row["seeds_needed"] == next(n for n in range(2, 1000) if power(n) >= 0.8), name


def test_clearly_better_strategy_is_reported_significant(report_text: str):
    lines = findings(report_text)
    assert any(says(line, "**better**", "random", f"{len(LABELS)} of {len(LABELS)}", "budgets", "secondary")
               for line in lines)


def test_identical_strategy_is_not_significant(report_text: str):
    lines = findings(report_text)
    assert any(says(line, "**same**", "random", f"0 of {len(LABELS)}", "budgets") for line in lines)


def test_comparison_csv_matches_truth(run_dir: Path):
    primary = pd.read_csv(run_dir / "report" / "tables" / "primary_digits.csv").set_index("strategy")
    assert primary.loc["better", "verdict"] == "better" and primary.loc["same", "verdict"] == "equivalent"
    assert (primary["family"] == "primary").all() and (primary["other"] == "random").all()
    table = pd.read_csv(run_dir / "report" / "tables" / "comparisons_digits.csv")
    assert (table["family"] == "secondary").all() and (table["metric"] == "test_acc").all()
    assert table.loc[table["strategy"] == "better", "significant"].all()
    assert not table.loc[table["strategy"] == "same", "significant"].any()
    assert (table.loc[table["strategy"] == "noisy", "n_pairs"] == 4).all()
    assert (table.loc[table["strategy"] == "better", "n_pairs"] == 5).all()


def test_missing_seed_is_said(report_text: str):
    line_with(report_text, "noisy", "seed 4", "noisy and random", "4 seeds")


def test_labels_saved_sentence_and_table_beside_the_verdicts(run_dir: Path, report_text: str):
    assert re.search(r"- better against random, labels to reach random's final accuracy at each seed: \+[\d,]+ labels "
                     r"saved, mean over 5 paired seeds \(95% CI \+[\d,]+ to \+[\d,]+; random needs [\d,]+ on "
                     r"average, so \d+% fewer\)\.", report_text)
    assert "labels saved" not in headline(report_text).lower()  # beside the verdicts, not inside them
    seeds = pd.read_csv(run_dir / "report" / "tables" / "labels_saved_seeds_digits.csv")
    assert set(seeds["strategy"]) == {"better", "same", "noisy"} and len(seeds) == 5 + 5 + 4


def test_the_cost_table_says_n_a_for_an_old_folder_and_is_marked_machine_dependent(run_dir: Path, report_text: str):
    section = report_text.split("### What a pick costs (machine-dependent)", 1)[1].split("\n#", 1)[0]
    assert "never enter a verdict" in section
    rows = [line for line in section.splitlines() if line.startswith("| better ")]
    # the synthetic rows predate the memory columns: n/a, not 0; the timings they hold are shown
    assert rows == ["| better | 5 | 0.100 | 0.100 | 1.00 | 4.0 | n/a | n/a | n/a |"]


def test_absent_baseline_is_said_and_comparisons_skipped(run_dir: Path, tmp_path: Path):
    shutil.copy(run_dir / "cycles.parquet", tmp_path / "cycles.parquet")
    text = write_report(tmp_path, baseline="margin").read_text()
    assert "The baseline `margin` is not in this dataset's results" in text
    assert "beats margin" not in text
    assert not (tmp_path / "report" / "plots" / "difference_digits.png").exists()
    assert (tmp_path / "report" / "plots" / "penalty_digits.png").exists()


def test_missing_file_is_a_one_line_input_error(tmp_path: Path):
    with pytest.raises(ResultsError, match="does not exist") as caught:
        write_report(tmp_path)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_unreadable_or_foreign_file_is_an_input_error(tmp_path: Path):
    (tmp_path / "cycles.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(ResultsError, match="is unreadable as parquet"):
        write_report(tmp_path)
    pd.DataFrame({"strategy": ["a"], "seed": [0]}).to_parquet(tmp_path / "cycles.parquet")
    with pytest.raises(ResultsError, match="lacks the column"):
        write_report(tmp_path)


def test_palette_is_fixed_by_sorted_names():
    one = plots.strategy_styles(["random", "entropy", "ll"])
    other = plots.strategy_styles(["ll", "random", "entropy", "ll"])
    assert one == other and list(one) == ["entropy", "ll", "random"]
    assert len(set(one.values())) == 3


def test_identical_budget_is_left_out_and_said(tmp_path: Path):
    cycles = synthetic_cycles()
    at_zero = cycles["cycle"] == 0
    random_at_zero = cycles[at_zero & (cycles["strategy"] == "random")].set_index("seed")["test_acc"]
    cycles.loc[at_zero, "test_acc"] = cycles.loc[at_zero, "seed"].map(random_at_zero)  # same start for all
    cycles.to_parquet(tmp_path / "cycles.parquet", index=False)
    text = write_report(tmp_path).read_text()
    line_with(text, f"Holm over {3 * (len(LABELS) - 1)} strategy-budget", "100 labels", "left out", "random",
              "every seed")
    table = pd.read_csv(tmp_path / "report" / "tables" / "comparisons_digits.csv")
    left_out = table[table["family"] == "left out"]
    assert sorted(left_out["cycle"].unique()) == [0] and left_out["p_holm"].isna().all()
    line_with(text, "**better**", "random", f"{len(LABELS) - 1} of {len(LABELS) - 1}", "budgets")


def test_penalty_caption_names_the_badge_rules(report_text: str):
    caption = next(line for line in report_text.splitlines() if line.startswith("Share of the"))
    assert says(caption, "t-test", "paired differences", "p < 0.05")
    assert says(caption, "seed", "BADGE", "file order", "5 runs")


def test_difference_plot_legend_is_outside_the_data_area():
    cycles = synthetic_cycles()
    comparisons = paired.compare_to_baseline(cycles)
    figure = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = figure.subplots()
    plots.differences(ax, comparisons, plots.strategy_styles(cycles["strategy"].unique()), "digits")
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the axes: hides no point
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("secondary family" in label for label in labels)


def test_headline_has_one_primary_family_per_dataset(tmp_path: Path):
    one = synthetic_cycles()
    two = one[one["strategy"] != "noisy"].assign(dataset="letters")
    pd.concat([one, two]).to_parquet(tmp_path / "cycles.parquet", index=False)
    text = headline(write_report(tmp_path).read_text())
    assert "### Dataset `digits`" in text and "### Dataset `letters`" in text
    families = [line for line in findings(text) if line.startswith("- Primary family:")]
    # the primary question is asked once per strategy and dataset: one Holm family over all five
    assert len(families) == 1 and "(5 comparisons over 2 datasets)" in families[0]
    tables = [pd.read_csv(tmp_path / "report" / "tables" / f"primary_{d}.csv") for d in ("digits", "letters")]
    primary = pd.concat(tables, ignore_index=True)
    p = primary["t_p"].to_numpy()
    order = np.argsort(p)
    expected = np.empty(5)
    expected[order] = np.minimum(1, np.maximum.accumulate([(5 - k) * p[i] for k, i in enumerate(order)]))
    assert primary["p_holm"].to_numpy() == pytest.approx(expected)


def test_a_dataset_given_by_path_is_labelled_by_its_name(tmp_path: Path):
    cycles = synthetic_cycles().assign(dataset="npz:/a/very/long/path/to/the/cifar10-slice.npz")
    cycles.to_parquet(tmp_path / "cycles.parquet", index=False)
    text = write_report(tmp_path).read_text()
    assert "/a/very/long/path" not in text and "## Dataset `cifar10-slice`" in text
    assert (tmp_path / "report" / "plots" / "learning_curves_cifar10-slice.png").is_file()
    table = pd.read_csv(tmp_path / "report" / "tables" / "primary_cifar10-slice.csv")
    assert set(table["dataset"]) == {"cifar10-slice"}
    from bench.analysis.record import dataset_labels

    two = dataset_labels(["npz:/a/x.npz", "npz:/b/x.npz", "digits", "imagefolder:/data/pets"])
    assert two == {"npz:/a/x.npz": "npz:/a/x.npz", "npz:/b/x.npz": "npz:/b/x.npz", "digits": "digits",
                   "imagefolder:/data/pets": "pets"}


def _folder(tmp_path: Path, cycles: pd.DataFrame, config: dict) -> Path:
    tmp_path.mkdir(exist_ok=True)
    cycles.to_parquet(tmp_path / "cycles.parquet", index=False)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_pair_without_the_baseline_is_named_as_the_run_named_it(tmp_path: Path):
    cycles = synthetic_cycles()
    cycles = cycles[cycles["strategy"].isin(["better", "same"])]
    for order in (["same", "better"], ["better", "same"]):
        folder = _folder(tmp_path / "-".join(order), cycles, {"strategies": order})
        _, lines = report_folder(folder, "random")
        first, second = order
        diff = aulc_differences(first) - aulc_differences(second)  # both minus random: first minus second
        assert len(lines) == 1 and lines[0].startswith(f"primary   {first} vs {second}: {100 * diff.mean():+.1f} ")
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    cycles.to_parquet(unnamed / "cycles.parquet", index=False)
    assert report_folder(unnamed, "random")[1][0].startswith("primary   better vs same: ")  # no config: sorted


@pytest.mark.parametrize("classes", [2, 10])
def test_budgets_where_the_models_barely_beat_chance_are_said_beside_the_verdicts(tmp_path: Path, classes: int):
    cycles = synthetic_cycles()  # means from 0.5 at 100 labels up: near chance for 2 classes, not for 10
    config = {"strategies": ["random", "better", "same", "noisy"], "dataset": {"classes": list(range(classes))}}
    path, lines = report_folder(_folder(tmp_path, cycles, config), "random")
    chance = 1 / classes
    means = cycles.groupby("n_labeled")["test_acc"].mean()
    near = means[means < chance + 0.1 * (1 - chance)]
    cautions = [line for line in lines if line.startswith("caution   ")]
    text = headline(path.read_text())
    if classes == 10:
        assert near.empty and not cautions and "Caution" not in text
        return
    assert list(near.index) == [100]  # the case is what it is meant to be
    assert len(cautions) == 1
    assert says(cautions[0], "At 100 labels (1 of the 4 budgets)", f"{100 * near.iloc[0]:.1f}%", "50.0% by chance")
    assert says(line_with(text, "**Caution.**"), "At 100 labels", f"{100 * near.iloc[0]:.1f}%", "--epochs")
