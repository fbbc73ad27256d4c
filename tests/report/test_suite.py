"""Suites of runs: the statistics across settings checked against scipy and hand-worked cases, and
`run_bench.py report A B --out S` on synthetic run folders, its refusals included."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import across, paired, penalty

LABELS = [100, 200, 300, 400]


def cycles_of(setting: str, effects: dict[str, float], seeds: int = 5, noise: float = 0.004,
              seed: int = 0) -> pd.DataFrame:
    """A setting's rows: every strategy is random's curve plus its effect (accuracy) and noise after cycle 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        base = 0.5 + 0.05 * np.arange(len(LABELS)) + rng.normal(0, 0.01, len(LABELS))  # [n_cycles]
        for strategy, effect in {"random": 0.0, **effects}.items():
            shift = np.r_[0.0, np.full(len(LABELS) - 1, effect)] + np.r_[0.0, rng.normal(0, noise, len(LABELS) - 1)]
            if strategy == "random":
                shift[:] = 0.0
            for cycle, acc in enumerate(base + shift):
                rows.append({"run": setting, "dataset": "digits", "model": "cnn", "strategy": strategy, "seed": s,
                             "cycle": cycle, "n_labeled": float(LABELS[cycle]), "test_acc": float(acc)})
    return pd.DataFrame(rows)


def run_folder(root: Path, name: str, cycles: pd.DataFrame) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    cycles.to_parquet(folder / "cycles.parquet", index=False)
    return folder


# ---------------------------------------------------------------------------------------------- statistics


def test_primary_family_spans_the_settings_and_the_secondary_stays_within_one():
    a = cycles_of("a", {"good": 0.03, "meh": 0.002}, seed=1)
    b = cycles_of("b", {"good": 0.02, "meh": -0.001}, seed=2).assign(dataset="letters")
    comparisons = across.holm_across_datasets(paired.compare_to_baseline(pd.concat([a, b]), "random"))
    primary = comparisons[comparisons["family"] == paired.PRIMARY]
    p = primary["t_p"].to_numpy()
    assert len(p) == 4
    ranked = np.sort(p)
    holm_by_hand = {q: min(1.0, max((4 - k) * ranked[k] for k in range(int(np.searchsorted(ranked, q)) + 1)))
                    for q in p}
    assert primary["p_holm"].tolist() == pytest.approx([holm_by_hand[q] for q in p])
    # the secondary family is untouched: Holm over the strategy-budget pairs of one dataset only
    for dataset in ("digits", "letters"):
        alone = paired.compare_to_baseline(pd.concat([a, b]).query("dataset == @dataset"), "random")
        secondary = comparisons[(comparisons["dataset"] == dataset) & (comparisons["family"] == paired.SECONDARY)]
        expected = alone[alone["family"] == paired.SECONDARY]["p_holm"].to_numpy()
        assert secondary["p_holm"].to_numpy() == pytest.approx(expected)


def test_win_tie_loss_by_hand():
    comparisons = pd.DataFrame({
        "strategy": ["x", "x", "x", "y", "y", "y"], "baseline": "random",
        "family": [paired.PRIMARY] * 6, "t_p": [0.001, 0.001, 0.5, 0.001, math.nan, 0.2],
        "mean_diff": [0.02, -0.01, 0.01, 0.03, 0.0, -0.02],
        "significant": [True, True, False, True, False, False],
    })
    table = across.win_tie_loss(comparisons).set_index("strategy")
    assert table.loc["x", ["wins", "ties", "losses", "untested"]].tolist() == [1, 1, 1, 0]
    assert table.loc["y", ["wins", "ties", "losses", "untested"]].tolist() == [1, 1, 0, 1]


def test_friedman_matches_scipy_and_the_critical_difference_demsar_s_table():
    # mean AULC of 3 strategies in 4 settings; Demsar (2006) Table 5: q_0.05 = 2.343 for 3 classifiers
    means = {"a": [0.80, 0.70, 0.60, 0.90], "b": [0.78, 0.71, 0.55, 0.85], "c": [0.70, 0.60, 0.50, 0.80]}
    summary = pd.DataFrame([{"dataset": f"s{i}", "strategy": name, "mean": value}
                            for name, values in means.items() for i, value in enumerate(values)])
    test = across.friedman_nemenyi(summary)
    statistic, p = sps.friedmanchisquare(*means.values())
    assert (test.statistic, test.p) == pytest.approx((statistic, p))
    assert test.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    # ranks by hand: a is first in 3 settings and second in one (b leads s1)
    assert test.mean_ranks == pytest.approx({"a": 1.25, "b": 1.75, "c": 3.0})
    assert list(test.mean_ranks) == ["a", "b", "c"]
    assert across.friedman_nemenyi(summary[summary["strategy"] != "c"]) is None  # 2 strategies: undefined
    assert across.friedman_nemenyi(summary[summary["dataset"] == "s0"]) is None  # 1 setting: undefined


def test_summed_penalties_add_what_each_setting_tested():
    one = pd.DataFrame([[math.nan, 0.5], [0.0, math.nan]], index=["a", "b"], columns=["a", "b"])
    two = pd.DataFrame([[math.nan, 0.25, 1.0], [0.0, math.nan, math.nan], [0.0, math.nan, math.nan]],
                       index=["a", "b", "c"], columns=["a", "b", "c"])
    total = penalty.summed_penalties([one, two])
    assert total.loc["a", "b"] == 0.75 and total.loc["a", "c"] == 1.0 and total.loc["b", "c"] == 0.0
    assert all(math.isnan(total.loc[n, n]) for n in "abc")


# ---------------------------------------------------------------------------------------------- the command


@pytest.fixture
def two_settings(tmp_path: Path) -> list[Path]:
    effects = {"good": 0.03, "meh": 0.0, "bad": -0.02}
    return [run_folder(tmp_path, "quick-digits", cycles_of("quick-digits", effects, seed=3)),
            run_folder(tmp_path, "quick-slice", cycles_of("quick-slice", effects, seed=4).assign(dataset="npz:x.npz"))]


def test_suite_report_has_a_section_per_setting_and_what_holds_across(cli, two_settings, tmp_path):
    status, out, err = cli("report", *two_settings, "--out", tmp_path / "suite")
    assert status == 0, err
    text = (tmp_path / "suite" / "report.md").read_text()
    assert "## Setting `quick-digits`" in text and "## Setting `quick-slice`" in text
    assert "## Settings" in text and "npz:x.npz" in text
    assert "## Across settings" in text and "Friedman's test of equal mean ranks over 2 settings" in text
    # with 2 settings and 4 strategies the critical difference exceeds any possible rank difference: said
    assert "no pair of strategies can be told apart by rank" in text
    assert "(6 comparisons over 2 settings)" in text and "Holm over the family" in text
    wins = pd.read_csv(tmp_path / "suite" / "tables" / "win_tie_loss.csv").set_index("strategy")
    assert wins.loc["good", "wins"] == 2 and wins.loc["bad", "losses"] == 2
    for name in ("critical_difference", "penalty_summed"):
        assert (tmp_path / "suite" / "plots" / f"{name}.png").is_file()
    summed = pd.read_csv(tmp_path / "suite" / "tables" / "penalty_summed.csv").set_index("row beats column")
    per_setting = [pd.read_csv(tmp_path / "suite" / "tables" / f"penalty_{n}.csv").set_index("row beats column")
                   for n in ("quick-digits", "quick-slice")]
    assert summed.loc["good", "bad"] == pytest.approx(sum(m.loc["good", "bad"] for m in per_setting))
    assert re.search(r"primary   good vs random on quick-digits: \+[0-9.]+ AULC points .*: good better", out)  # console
    assert f"report    {tmp_path / 'suite' / 'report.md'}" in out


def test_rewriting_a_suite_replaces_only_the_suite(cli, two_settings, tmp_path):
    suite = tmp_path / "suite"
    assert cli("report", *two_settings, "--out", suite)[0] == 0
    assert cli("report", *two_settings, "--out", suite)[0] == 0
    assert (suite / "suite.json").is_file()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["no-out", "out-is-a-run", "twice", "other-strategies", "no-baseline",
                                  "out-not-a-suite"])
def test_suite_refusals_are_one_line_and_change_nothing(cli, two_settings, tmp_path, case):
    a, b = two_settings
    folders, out = [a, b], tmp_path / "suite"
    if case == "out-is-a-run":
        out = a
    elif case == "twice":
        folders = [a, a]
    elif case == "other-strategies":
        rows = pd.read_parquet(b / "cycles.parquet")
        rows[rows["strategy"] != "meh"].to_parquet(b / "cycles.parquet", index=False)
    elif case == "no-baseline":
        rows = pd.read_parquet(b / "cycles.parquet")
        rows[rows["strategy"] != "random"].to_parquet(b / "cycles.parquet", index=False)
    elif case == "out-not-a-suite":
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    before = {f: snapshot(f) for f in (a, b, tmp_path)}
    argv = ["report", *folders] + ([] if case == "no-out" else ["--out", out])
    status, _, err = cli(*argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    expected = {"no-out": "give --out DIR", "out-is-a-run": "is not a suite report", "twice": "is given twice",
                "other-strategies": "quick-slice lacks meh", "no-baseline": "has no results for the baseline",
                "out-not-a-suite": "is not a suite report"}[case]
    assert expected in lines[0]
    assert {f: snapshot(f) for f in (a, b, tmp_path)} == before


def test_a_setting_near_chance_is_said_for_that_setting_alone(cli, two_settings, tmp_path):
    # curves start at 50%: chance for 2 classes (caution), far above it for 10
    for folder, classes in zip(two_settings, (2, 10), strict=True):
        (folder / "config.json").write_text(json.dumps({"dataset": {"classes": [str(c) for c in range(classes)]}}))
    status, out, err = cli("report", *two_settings, "--out", tmp_path / "suite")
    assert status == 0, err
    cautions = [line for line in out.splitlines() if line.startswith("caution   ")]
    means = pd.read_parquet(two_settings[0] / "cycles.parquet").groupby("n_labeled")["test_acc"].mean()
    near = ", ".join(f"{n:,.0f}" for n, acc in means.items() if acc < 0.5 + 0.1 * 0.5)  # chance + a tenth of the rest
    assert near and len(cautions) == 1, cautions
    assert cautions[0].startswith(f"caution   At {near} labels ") and cautions[0].endswith("(quick-digits)")
