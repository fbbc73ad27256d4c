"""bench.report.tables: each *_display frame from hand-made analysis frames, cell by cell; Markdown and LaTeX escaping;
write_table's CSV at full precision beside the shown .md and .tex."""

from __future__ import annotations

import math

import pandas as pd

from bench.analysis.verdicts import PRIMARY, SequentialPlan
from bench.report import tables
from bench.report.tables import latex_table, markdown_table
from bench.report.text import DASH

NAN = math.nan


def test_learning_curve_display_is_one_row_per_strategy_one_column_per_budget():
    summary = pd.DataFrame({"strategy": ["random", "random", "ll"], "cycle": [0, 1, 0],
                            "n_labeled": [100.0, 1100.0, 100.0], "mean": [0.5, 0.6123, 0.5],
                            "ci_low": [0.49, 0.60, NAN], "ci_high": [0.51, 0.62, NAN]})
    shown = tables.learning_curve_display(summary)
    assert shown.columns.tolist() == ["strategy", "100", "1,100"]
    assert shown.values.tolist() == [["ll", "50.0", DASH],  # one seed: no interval; cycle 1 not run
                                     ["random", "50.0 ± 1.0", "61.2 ± 1.0"]]


def test_comparison_display_shows_points_intervals_p_values_and_verdicts():
    comparisons = pd.DataFrame({
        "strategy": ["ll", "ll"], "metric": ["aulc", "test_acc"], "n_labeled": [NAN, 1100.0], "n_pairs": [5, 4],
        "mean_diff": [0.021, -0.0049], "ci_low": [0.012, -0.01], "ci_high": [0.034, 0.0002],
        "t_p": [0.0004, 0.0612], "p_holm": [0.0008, 0.1224], "wilcoxon_p": [0.0625, NAN],
        "significant": [True, False], "family": [PRIMARY, "secondary"]})
    shown = tables.comparison_display(comparisons)
    assert shown.columns.tolist() == ["strategy", "labels", "pairs", "diff (pts)", "95% CI (pts)", "t-test p",
                                      "Holm p", "Wilcoxon p", "significant", "family"]
    assert shown.values.tolist() == [
        ["ll", "AULC", "5", "+2.1", "+1.2 to +3.4", "<0.001", "<0.001", "0.062", "yes", PRIMARY],
        ["ll", "1,100", "4", "-0.5", "-1.0 to +0.0", "0.061", "0.122", DASH, "no", "secondary"]]


def test_aulc_display():
    aulc = pd.DataFrame({"strategy": ["ll"], "n_seeds": [5], "mean": [0.7234], "ci_low": [0.71],
                         "ci_high": [0.7368], "std": [0.0121]})
    assert tables.aulc_display(aulc).values.tolist() == [["ll", "5", "72.3", "71.0 to 73.7", "1.2"]]


def test_savings_display_shows_the_interval_and_counts_the_censored_seeds():
    saved = pd.DataFrame({
        "strategy": ["ll", "ll"], "baseline": ["random"] * 2, "target": ["final", "95%"], "n_seeds": [5, 5],
        "n_paired": [4, 1], "n_censored": [1, 2], "n_baseline_censored": [0, 1], "n_neither": [0, 1],
        "mean_saving": [41.4, -12.0], "ci_low": [12.2, NAN], "ci_high": [70.6, NAN],
        "mean_baseline_labels": [168.0, 150.0], "percent_saved": [24.64, -8.0]})
    shown = tables.savings_display(saved)
    assert shown.columns.tolist() == ["strategy", "target", "seeds (paired / run)", "labels saved", "95% CI",
                                      "baseline labels", "saved (%)", "censored", "baseline censored", "neither"]
    assert shown.values.tolist() == [
        ["ll", "random's final accuracy at each seed", "4 / 5", "+41", "+12 to +71", "168", "+25", "1", "0", "0"],
        ["ll", "95% test accuracy", "1 / 5", "-12", DASH, "150", "-8", "2", "1", "1"]]


def test_cost_display_says_n_a_where_a_folder_lacks_a_column():
    cost = pd.DataFrame({"strategy": ["badge", "random"], "n_seeds": [5, 5], "select_mean_s": [0.41234, 0.0012],
                         "select_max_s": [0.9, 0.002], "train_mean_s": [12.345, 12.0], "train_total_s": [74.07, 72.0],
                         "peak_mb": [1234.4, NAN], "rise_mb": [210.06, NAN], "memory": ["rss", ""]})
    shown = tables.cost_display(cost)
    assert shown.values.tolist() == [
        ["badge", "5", "0.412", "0.900", "12.35", "74.1", "1,234", "210.1", "rss"],
        ["random", "5", "0.001", "0.002", "12.00", "72.0", "n/a", "n/a", "n/a"]]


def test_penalty_display_adds_the_column_sums_and_dashes_the_diagonal():
    matrix = pd.DataFrame([[NAN, 0.5, 0.25], [0.0, NAN, 0.125], [0.0, 0.0, NAN]],
                          index=["ll", "entropy", "random"], columns=["ll", "entropy", "random"])
    shown = tables.penalty_display(matrix)
    assert shown.columns.tolist() == ["better \\ worse", "ll", "entropy", "random"]
    assert shown.values.tolist() == [["ll", DASH, "0.50", "0.25"], ["entropy", "0.00", DASH, "0.12"],
                                     ["random", "0.00", "0.00", DASH], ["column sum", "0.00", "0.50", "0.38"]]


def verdict_rows(**changes: object) -> pd.DataFrame:
    row = {"strategy": "ll", "other": "random", "family": PRIMARY, "n_pairs": 6, "mean_diff": 0.021,
           "ci_low": 0.012, "ci_high": 0.034, "level": 0.05 / 3, "t_p": 0.0123, "p_holm": 0.0369,
           "tost_p": 0.9, "seeds_needed": NAN, "look": 4.0, "verdict": "better"}
    return pd.DataFrame([{**row, **changes}])


def test_verdict_display_shows_p_values_at_fixed_seeds_and_the_look_under_seeds_auto():
    fixed = tables.verdict_display(verdict_rows(), None)
    assert fixed.columns.tolist() == ["strategy", "other", "seeds", "AULC diff (pts)", "CI (pts)", "CI level",
                                      "t-test p", "Holm p", "TOST p", "seeds needed", "verdict"]
    assert fixed.values.tolist() == [["ll", "random", "6", "+2.1", "+1.2 to +3.4", "98.33%", "0.012", "0.037",
                                      "0.900", DASH, "better"]]
    plan = SequentialPlan(looks=(4, 8), comparisons=1, alpha=0.05, margin=0.01, nominal=0.0294)
    sequential = tables.verdict_display(verdict_rows(), plan)
    assert sequential.columns.tolist() == ["strategy", "other", "seeds", "AULC diff (pts)", "CI (pts)", "CI level",
                                           "decided at", "verdict"]
    assert sequential["decided at"].tolist() == ["4"]
    # a family beside the primary one was tested at fixed seeds: its rows show p-values, not looks
    mixed = pd.concat([verdict_rows(), verdict_rows(family="all pairs", seeds_needed=12.0)], ignore_index=True)
    assert tables.verdict_display(mixed, plan)["seeds needed"].tolist() == [DASH, "12"]


def test_markdown_and_latex_helpers_escape():
    frame = pd.DataFrame({"name": ["a|b", "c_d"], "acc (%)": ["61.2 ± 1.3", "50 & up"]})
    assert markdown_table(frame).splitlines() == [
        "| name | acc (%) |",
        "| :--- | ---: |",
        r"| a\|b | 61.2 ± 1.3 |",
        "| c_d | 50 & up |",
    ]
    tex = latex_table(frame)
    assert r"name & acc (\%) \\" in tex
    assert r"c\_d & 50 \& up \\" in tex and r"61.2 $\pm$ 1.3" in tex


def test_latex_escapes_every_special_character_and_frames_a_booktabs_tabular():
    assert tables.latex_escape(r"\&%$#_{}~^±–x") == (
        r"\textbackslash{}\&\%\$\#\_\{\}\textasciitilde{}\textasciicircum{}$\pm$--x")
    frame = pd.DataFrame({"a": ["x"], "b": ["1"], "c": ["2"]})
    assert latex_table(frame).splitlines() == [
        r"\begin{tabular}{lrr}", r"\toprule", r"a & b & c \\", r"\midrule", r"x & 1 & 2 \\", r"\bottomrule",
        r"\end{tabular}"]


def test_write_table_writes_the_raw_numbers_at_full_precision_and_the_shown_frame(tmp_path):
    (tmp_path / "tables").mkdir()
    raw = pd.DataFrame({"strategy": ["ll", "random"], "mean": [0.1 + 0.2, 2 / 3]})
    shown = pd.DataFrame({"strategy": ["ll", "random"], "AULC (%)": ["30.0", "66.7"]})
    lines = tables.write_table(tmp_path, "aulc", raw, shown, "Mean AULC")
    back = pd.read_csv(tmp_path / "tables" / "aulc.csv")
    assert back["mean"].tolist() == [0.1 + 0.2, 2 / 3]  # every digit: 0.30000000000000004, not 0.3
    assert back["strategy"].tolist() == ["ll", "random"] and back.columns.tolist() == ["strategy", "mean"]
    assert (tmp_path / "tables" / "aulc.md").read_text() == markdown_table(shown) + "\n"
    assert (tmp_path / "tables" / "aulc.tex").read_text() == latex_table(shown) + "\n"
    assert lines == ["Mean AULC (`tables/aulc.csv`)", "", markdown_table(shown), ""]
