"""bench.report on a synthetic cycles.parquet whose truth is known: one strategy clearly better than random,
one identical to it, one noisy and missing a seed."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.report import ReportInputError, latex_table, markdown_table, strategy_palette, write_report

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
    for stem in ("learning_curve", "comparisons", "aulc", "penalty", "label_efficiency"):
        for ext in ("csv", "md", "tex"):
            assert (out / "tables" / f"{stem}_digits.{ext}").stat().st_size > 0, (stem, ext)
    for stem in ("learning_curves", "difference", "aulc", "penalty"):
        assert (out / "plots" / f"{stem}_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tex = (out / "tables" / "comparisons_digits.tex").read_text()
    assert tex.startswith(r"\begin{tabular}") and r"\bottomrule" in tex


def test_report_embeds_plots_by_relative_path(run_dir: Path, report_text: str):
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report_text)
    assert len(images) == 4
    for relative in images:
        assert not Path(relative).is_absolute() and (run_dir / "report" / relative).is_file()


def test_clearly_better_strategy_is_reported_significant(report_text: str):
    lines = findings(report_text)
    assert any(line.startswith(f"- **better** beats random at {len(LABELS)} of {len(LABELS)} budgets after Holm")
               for line in lines)
    aulc = next(line for line in lines if "(AULC) better" in line)
    assert aulc.endswith("): significant.")


def test_identical_strategy_is_not_significant(report_text: str):
    lines = findings(report_text)
    assert any(line.startswith(f"- **same** beats random at 0 of {len(LABELS)} budgets") for line in lines)
    aulc = next(line for line in lines if "(AULC) same" in line)
    assert aulc.endswith("not significant.") and "+0.0 points" in aulc


def test_comparison_csv_matches_truth(run_dir: Path):
    table = pd.read_csv(run_dir / "report" / "tables" / "comparisons_digits.csv")
    assert table.loc[table["strategy"] == "better", "significant"].all()
    assert not table.loc[table["strategy"] == "same", "significant"].any()
    assert (table.loc[table["strategy"] == "noisy", "n_pairs"] == 4).all()
    assert (table.loc[table["strategy"] == "better", "n_pairs"] == 5).all()


def test_missing_seed_is_said(report_text: str):
    assert "noisy has no results for seed 4, so noisy and random are compared on the 4 seeds both have" in report_text


def test_detectable_difference_sentence_matches_an_independent_computation(report_text: str):
    cycles = synthetic_cycles()
    acc = cycles.pivot_table(index=["cycle", "seed"], columns="strategy", values="test_acc")
    weighted, dof = 0.0, 0
    for strategy in ("better", "noisy"):  # "same" has zero-variance differences and is left out
        for _, at_cycle in (acc[strategy] - acc["random"]).dropna().groupby(level="cycle"):
            weighted += np.var(at_cycle, ddof=1) * (len(at_cycle) - 1)
            dof += len(at_cycle) - 1
    mdd = sps.t.ppf(0.975, 4) * math.sqrt(weighted / dof) / math.sqrt(5)
    assert f"With 5 seeds, differences under about {100 * mdd:.1f} points cannot be detected" in report_text


def test_label_efficiency_sentence(report_text: str):
    assert re.search(r"- better reaches random's final mean accuracy of [\d.]+% with about [\d,]+ labels, "
                     r"[\d,]+ fewer than random's 400", report_text)


def test_absent_baseline_is_said_and_comparisons_skipped(run_dir: Path, tmp_path: Path):
    shutil.copy(run_dir / "cycles.parquet", tmp_path / "cycles.parquet")
    text = write_report(tmp_path, baseline="margin").read_text()
    assert "The baseline `margin` is not in this dataset's results" in text
    assert "beats margin" not in text
    assert not (tmp_path / "report" / "plots" / "difference_digits.png").exists()
    assert (tmp_path / "report" / "plots" / "penalty_digits.png").exists()


def test_missing_file_is_a_one_line_input_error(tmp_path: Path):
    with pytest.raises(ReportInputError, match="does not exist") as caught:
        write_report(tmp_path)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_unreadable_or_foreign_file_is_an_input_error(tmp_path: Path):
    (tmp_path / "cycles.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(ReportInputError, match="Cannot read"):
        write_report(tmp_path)
    pd.DataFrame({"strategy": ["a"], "seed": [0]}).to_parquet(tmp_path / "cycles.parquet")
    with pytest.raises(ReportInputError, match="lacks the column"):
        write_report(tmp_path)


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


def test_palette_is_fixed_by_sorted_names():
    one = strategy_palette(["random", "entropy", "ll"])
    other = strategy_palette(["ll", "random", "entropy", "ll"])
    assert one == other and list(one) == ["entropy", "ll", "random"]
    assert len(set(one.values())) == 3
