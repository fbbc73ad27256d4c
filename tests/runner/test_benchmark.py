"""The question asked, answered end to end: a run without the baseline compares the strategies named, a run
into a folder runs only the jobs asked, and --seeds auto records its looks and resumes to the same decision."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from launch import Started, start_cli

from bench.core.errors import UserError
from bench.runner.benchmark import dry_run, run_benchmark
from bench.runner.resolve import RunOptions, build_config
from conftest import TINY

AUTO = ["--initial", "20", "--budget", "20", "--cycles", "3", "--epochs", "2", "--seeds", "auto", "--max-seeds", "6"]


def _primary_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("primary   ")]


def test_two_strategies_without_the_baseline_get_a_verdict_between_them(cli, tmp_path):
    out_dir = tmp_path / "run"
    status, out, err = cli("--strategies", "ll", "entropy", "--seeds", "3", "--cycles", "3", "--epochs", "4",
                           "--out", out_dir)
    assert status == 0, err
    # the pair is named as the user named it: learning loss first, its AULC minus entropy's
    assert ("compare   random is not in this run: the report compares the 2 strategies with each other "
            "(1 comparison: learning-loss vs entropy); add random to compare against random sampling") in out
    lines = _primary_lines(out)
    assert len(lines) == 1 and lines[0].startswith("primary   learning-loss vs entropy: ")
    verdict = lines[0].removeprefix("primary   ")
    outcome = verdict.rsplit(": ", 1)[1]
    assert outcome.split(" (")[0] in ("entropy better", "learning-loss better", "equivalent within ±1 point",
                                      "undecided")
    report = (out_dir / "report" / "report.md").read_text()
    first_section = report.split("\n## ", 2)[1]
    assert first_section.startswith("Primary endpoint: area under the learning curve between the strategies run")
    assert f"- **learning-loss** vs entropy: {verdict.removeprefix('learning-loss vs entropy: ')}." in first_section
    table = pd.read_csv(out_dir / "report" / "tables" / "primary_digits.csv")
    assert table[["strategy", "other"]].values.tolist() == [["learning-loss", "entropy"]]
    # 4 epochs leave the first budgets near chance (10 classes: below 19%): said beside the verdict, where it is so
    rows = pd.read_parquet(out_dir / "cycles.parquet")
    means = rows.groupby("n_labeled")["test_acc"].mean()
    near = [f"{n:,}" for n, acc in means.items() if acc < 0.1 + 0.1 * 0.9]
    cautions = [line for line in out.splitlines() if line.startswith("caution   ")]
    if near:
        assert len(cautions) == 1 and cautions[0].startswith(f"caution   At {', '.join(near)} labels ")
        assert "**Caution.** At " in first_section
        if outcome.startswith("undecided"):  # no advice to run more seeds of a protocol that barely learns
            assert outcome.endswith("see the caution)") and "seeds would tell" not in verdict
    else:
        assert not cautions and "Caution" not in report
    assert "random's mean" not in report  # no sentence names a baseline the run lacks as if it were there
    assert json.loads((out_dir / "config.json").read_text())["analysis"] == {
        "baseline": "random", "margin": 0.01, "design": "fixed", "strategies": ["learning-loss", "entropy"]}


def test_a_run_into_a_folder_with_other_strategies_runs_only_the_jobs_asked(cli, tmp_path):
    out_dir = tmp_path / "run"
    status, _, err = cli("--strategies", "random", "entropy", *TINY, "--out", out_dir)
    assert status == 0, err
    status, out, err = cli("--strategies", "entropy", "margin", *TINY[:-2], "--seeds", "2", "--out", out_dir)
    assert status == 0, err
    rows = pd.read_parquet(out_dir / "cycles.parquet")
    jobs = set(zip(rows["strategy"], rows["seed"], strict=True))
    assert jobs == {("random", 0), ("entropy", 0), ("entropy", 1), ("margin", 0), ("margin", 1)}  # no random seed 1
    line = next(x for x in out.splitlines() if x.startswith("resume    "))
    assert "holds entropy, random (seeds 0)" in line and "asks entropy, margin for seeds 0, 1 and runs 3 jobs" in line
    assert "the report covers entropy, random (seeds 0) and what this run adds" in line
    # the comparisons said before any work are those of the report: the run's own question first, the folder's
    # random as context
    assert ("compare   this run asks (1 comparison: entropy vs margin), the primary family; the folder's other "
            "strategies (random) are context, 2 comparisons in a family of their own"
            in out.splitlines()[out.splitlines().index(line) + 1])
    assert [x for x in out.splitlines() if x.startswith("primary   ")][0].startswith("primary   entropy vs margin: ")
    # the dry run of the next command says what that run then does, and reads the folder without touching it
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*")}
    status, planned, err = cli("--strategies", "random", *TINY[:-2], "--seeds", "1", "--out", out_dir, "--dry-run")
    assert status == 0, err
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*")} == before
    status, out, err = cli("--strategies", "random", *TINY[:-2], "--seeds", "1", "--out", out_dir)
    assert status == 0, err
    said = [x for x in out.splitlines() if x.startswith(("resume    ", "compare   "))]
    assert len(said) == 2 and said == [x for x in planned.splitlines() if x.startswith(("resume    ", "compare   "))]
    line = next(x for x in out.splitlines() if x.startswith("resume    "))
    # each strategy's own seeds: random holds seed 0 only, though the folder holds seeds 0 and 1
    assert ("holds entropy (seeds 0, 1), margin (seeds 0, 1), random (seeds 0); this run asks random for seeds 0 "
            "and runs 0 jobs, no others; the report covers entropy (seeds 0, 1), margin (seeds 0, 1), random "
            "(seeds 0) and what") in line
    assert "nothing to compare" not in out  # random alone was named: the folder's question stands
    assert "compare   this run asks (1 comparison: entropy vs margin)" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert sorted(config["strategies"]) == ["entropy", "margin", "random"]


def test_dry_run_says_which_comparisons_the_report_makes(cli, tmp_path):
    status, out, _ = cli("--strategies", "random", "entropy", "margin", "--dry-run", "--margin", "0.5")
    assert status == 0
    assert ("compare   each strategy against random (2 comparisons), and every pair (3) as a family of its own; "
            "verdicts better, worse, equivalent within ±0.5 AULC points or undecided") in out


def test_run_benchmark_runs_every_job_asked_and_returns_its_folder_and_report(tmp_path, capsys):
    protocol = {"initial": 20, "budget": 20, "cycles": 3, "epochs": 3}
    config = build_config("quick", ["random", "entropy"], 1, protocol=protocol, out=tmp_path / "run")
    result = run_benchmark(config)
    assert (result.folder, result.failed, result.report) == (tmp_path / "run", (), tmp_path / "run" / "report" /
                                                             "report.md")
    assert result.report.is_file()
    rows = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    assert sorted(zip(rows["strategy"], rows["seed"], rows["cycle"], rows["n_labeled"], strict=True)) == [
        (s, 0, c, 20 + 20 * c) for s in ("entropy", "random") for c in range(3)]
    assert "primary   entropy vs random: " in capsys.readouterr().out
    # rounds are not run_benchmark's: refused before the folder exists
    with pytest.raises(UserError, match=r"benchmark_in_rounds\(config, options\)"):
        run_benchmark(dataclasses.replace(config, out=tmp_path / "auto"), RunOptions(max_seeds=4))
    assert not (tmp_path / "auto").exists()


def test_dry_run_names_every_job_and_the_rounds_to_come(tmp_path):
    config = build_config("quick", ["random", "entropy"], 2, out=tmp_path / "run")
    plan = dry_run(config, RunOptions(max_seeds=5)).splitlines()
    assert [x for x in plan if x.startswith("job       ")] == [  # seed by seed
        f"job       {s}/seed{n}" for n in (0, 1) for s in ("random", "entropy")]
    assert any(x.startswith("rounds    --seeds auto: ") and x.endswith("up to 5") for x in plan)
    assert not (tmp_path / "run").exists()


def test_bad_margin_and_max_seeds_are_one_line_exit_2(cli):
    for args in (["--margin", "0"], ["--margin", "nan"], ["--seeds", "auto", "--max-seeds", "2"], ["--seeds", "x"]):
        status, out, err = cli("--strategies", "random", "entropy", "--dry-run", *args)
        assert status == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), (args, err)


def _auto(out_dir: Path, logs: Path) -> Started:
    return start_cli(logs, "--strategies", "random", "entropy", *AUTO, "--jobs", "2", "--out", out_dir)


def test_seeds_auto_records_its_looks_and_a_killed_run_resumes_to_the_same_decision(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    first = _auto(whole, tmp_path / "whole")
    assert first.proc.wait(timeout=600) == 0, first.err.read_text()
    run = _auto(killed, tmp_path / "killed")
    deadline = time.monotonic() + 600
    while "look      5 seeds" not in run.err.read_text() + run.out.read_text():  # killed in the second round
        assert run.proc.poll() is None and time.monotonic() < deadline, run.err.read_text()
        time.sleep(0.2)
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(timeout=60)
    again = _auto(killed, tmp_path / "again")
    assert again.proc.wait(timeout=600) == 0, again.err.read_text()
    analysis = [json.loads((f / "config.json").read_text())["analysis"] for f in (whole, killed)]
    assert analysis[0] == analysis[1]
    sequential = analysis[0]["sequential"]
    assert analysis[0]["design"] == "sequential" and sequential["looks"] == [5, 6]
    assert [h["seeds"] for h in sequential["history"]] == [5, 6][:len(sequential["history"])]
    assert sequential["stopped"].startswith(("every primary comparison decided", "stopped at --max-seeds 6"))
    lines = [_primary_lines(r.out.read_text() + r.err.read_text()) for r in (first, again)]
    assert lines[0] == lines[1] and len(lines[0]) == 1
    tables = [pd.read_csv(f / "report" / "tables" / "primary_digits.csv") for f in (whole, killed)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    report = (whole / "report" / "report.md").read_text()
    assert "### The looks of `--seeds auto`" in report and sequential["stopped"].capitalize() in report


def test_report_with_another_baseline_says_so(cli, tmp_path):
    out_dir = tmp_path / "run"
    status, _, err = cli("--strategies", "random", "entropy", "margin", *TINY, "--seeds", "2", "--out", out_dir)
    assert status == 0, err
    status, out, _ = cli("report", out_dir, "--baseline", "entropy")
    assert status == 0
    assert "note      report/ is rewritten against entropy; the run's report compared against random" in out
    status, out, _ = cli("report", out_dir)
    assert status == 0 and "note" not in out and "primary   entropy vs random" in out
