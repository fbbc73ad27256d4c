"""bench.report.suite: write_suite on synthetic run folders, and `run_bench.py report A B --out S`, its refusals
included. The statistics across settings are tests/analysis/test_across.py's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.report.suite import write_suite
from conftest import cycles_of


def run_folder(root: Path, name: str, cycles: pd.DataFrame) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    cycles.to_parquet(folder / "cycles.parquet", index=False)
    return folder


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


def test_write_suite_names_settings_that_share_a_name_by_their_parent_and_records_them(tmp_path):
    folders = [run_folder(tmp_path / parent, "quick", cycles_of("quick", {"good": 0.03}, seed=i))
               for i, parent in enumerate(("p", "q"))]
    report, headline = write_suite(folders, "random", tmp_path / "suite", margin=0.02)
    assert report == tmp_path / "suite" / "report.md" and report.is_file()
    assert json.loads((tmp_path / "suite" / "suite.json").read_text()) == {
        "baseline": "random", "margin": 0.02, "folders": [str(f) for f in folders], "settings": ["p/quick", "q/quick"]}
    settings = pd.read_csv(tmp_path / "suite" / "tables" / "settings.csv")
    assert settings["setting"].tolist() == ["p/quick", "q/quick"] and settings["labels"].tolist() == ["100..400"] * 2
    assert settings["seeds"].tolist() == [5, 5] and settings["folder"].tolist() == [str(f) for f in folders]
    # one primary line per setting: good against random, Holm over the two
    primary = [x for x in headline if x.startswith("primary")]
    assert [x.split(": ")[0] for x in primary] == ["primary   good vs random on p/quick",
                                                  "primary   good vs random on q/quick"]
