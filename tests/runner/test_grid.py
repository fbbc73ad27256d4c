"""bench.runner.grid: a --vary run on digits (2 x 2 settings, two strategies, a tiny protocol) with its robustness
line on the console and first in PARENT/report.md; a run killed by SIGTERM that resumes to the same verdicts;
--seeds auto per setting on the grid's plan; the dry run; and the refusals of a grid, each one line."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from launch import run_cli, start_cli

from bench.analysis import curves, verdicts
from bench.analysis.record import load_cycles
from bench.core.vary import parse_vary, vary_fields
from bench.runner.grid import GRID, resolve_grid
from conftest import one_line

FAULTS = Path(__file__).resolve().parents[1] / "guarantees" / "reliability" / "fault_injection.py"
TINY = ["--strategies", "random", "entropy", "--seeds", "2", "--cycles", "3", "--epochs", "2"]
VARY = ["--vary", "initial=20,40", "budget=10,20"]
SETTINGS = ["initial-20_budget-10", "initial-20_budget-20", "initial-40_budget-10", "initial-40_budget-20"]


def _verdicts(parent: Path) -> pd.DataFrame:
    table = pd.read_csv(parent / "report" / "tables" / "grid_verdicts.csv")
    return table[["dataset", "strategy", "other", "n_pairs", "mean_diff", "ci_low", "ci_high", "verdict"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, str]:
    parent = tmp_path_factory.mktemp("grid") / "ref"
    done = run_cli(*TINY, *VARY, "--out", parent)
    assert done.returncode == 0, done.stderr
    return parent, done.stdout


def test_a_grid_runs_every_setting_into_its_folder_and_answers_first(reference):
    parent, stdout = reference
    robust = [line for line in stdout.splitlines() if line.startswith("robust    ")]
    assert robust == [line for line in robust if line.startswith("robust    entropy ") and " random " in line]
    assert len(robust) == 1
    report = (parent / "report.md").read_text().splitlines()
    assert report[0].startswith("# Robustness") and report[2] == f"**{robust[0].removeprefix('robust    ')}.**"
    assert stdout.splitlines()[0].startswith("grid      4 settings (initial 20, 40 x budget 10, 20)")
    record = json.loads((parent / GRID).read_text())
    assert record["grid"]["settings"] == SETTINGS and record["design"] == "fixed"
    for slug, (initial, budget) in zip(SETTINGS, [(20, 10), (20, 20), (40, 10), (40, 20)], strict=True):
        rows = load_cycles(parent / slug)
        assert sorted(rows["n_labeled"].unique()) == [initial, initial + budget, initial + 2 * budget]
        assert set(rows["strategy"]) == {"random", "entropy"} and set(rows["seed"]) == {0, 1}
    # the verdicts are Holm over the 4 settings' comparisons, as verdicts.fixed_verdicts makes them from the rows
    cycles = pd.concat([load_cycles(parent / s).assign(dataset=s) for s in SETTINGS], ignore_index=True)
    expected = verdicts.fixed_verdicts(curves.aulc_per_seed(cycles), {s: [("entropy", "random")] for s in SETTINGS},
                                       "primary", verdicts.MARGIN)
    found = _verdicts(parent).set_index("dataset").loc[SETTINGS]
    assert found["ci_low"].to_numpy() == pytest.approx(expected["ci_low"].to_numpy())
    assert list(found["verdict"]) == list(expected["verdict"])


def test_a_grid_killed_by_sigterm_resumes_to_the_same_verdicts(reference, tmp_path):
    parent = tmp_path / "grid"
    run = start_cli(tmp_path / "logs", *TINY, *VARY, "--out", parent)
    _wait(parent / SETTINGS[1] / "cycles.parquet", run)  # the first setting done, the second under way
    run.proc.send_signal(signal.SIGTERM)
    code, _, err = run.finish()
    lines = err.strip().splitlines()
    assert code == 143 and len(lines) == 1 and lines[0].startswith("interrupted by SIGTERM"), err
    assert len(pd.read_parquet(parent / SETTINGS[0] / "cycles.parquet")) == 12  # 2 strategies x 2 seeds x 3 cycles
    assert not (parent / "report.md").exists()
    again = run_cli(*TINY, *VARY, "--out", parent)
    assert again.returncode == 0, again.stderr
    assert "resume    4 of 4 jobs already finished" in again.stdout  # the first setting is not run again
    pd.testing.assert_frame_equal(_verdicts(parent), _verdicts(reference[0]))
    for slug in SETTINGS:  # every number but the timings, as the uninterrupted run's
        ours, theirs = (_untimed(pd.read_parquet(p / slug / "cycles.parquet"))
                        .sort_values(["strategy", "seed", "cycle"], ignore_index=True) for p in (parent, reference[0]))
        pd.testing.assert_frame_equal(ours, theirs)
    robust = [line for line in again.stdout.splitlines() if line.startswith("robust    ")]
    assert robust == [line for line in reference[1].splitlines() if line.startswith("robust    ")]


def test_seeds_auto_looks_per_setting_on_the_grids_plan(tmp_path):
    parent = tmp_path / "auto"
    done = run_cli("--strategies", "random", "entropy", "--seeds", "auto", "--max-seeds", "6", "--cycles", "3",
                   "--epochs", "2", "--initial", "20", "--vary", "budget=10,20", "--out", parent)
    assert done.returncode == 0, done.stderr
    assert "nominal level" in done.stdout and "over the grid's 2 comparisons" in done.stdout
    for slug in ("budget-10", "budget-20"):
        analysis = json.loads((parent / slug / "config.json").read_text())["analysis"]
        plan = verdicts.SequentialPlan.from_json(analysis["sequential"])
        assert plan.comparisons == 2 and plan.looks == (5, 6)  # the family: 1 comparison x 2 settings
        seeds = set(pd.read_parquet(parent / slug / "cycles.parquet")["seed"])
        history = analysis["sequential"]["history"]
        # a setting decided at its first look stops there; an undecided one goes on to 6 seeds
        assert seeds == (set(range(5)) if not history[0]["undecided"] else set(range(6)))
    report = (parent / "report.md").read_text()
    assert "Pocock's nominal level" in report and "alpha / 2" in report
    assert "robust    entropy" in done.stdout


def test_the_dry_run_lists_every_setting_and_its_jobs(cli, tmp_path):
    status, out, err = cli(*TINY, *VARY, "--out", tmp_path / "g", "--dry-run")
    assert status == 0, err
    assert [line.split()[2] for line in out.splitlines() if line.startswith("setting ")] == SETTINGS
    assert sum(line.startswith("job       ") for line in out.splitlines()) == 4 * 4
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(("extra", "says"), [
    (["--vary", "inital=20,40"], "did you mean 'initial'"),
    (["--vary", "initial=20,abc"], "initial 'abc' is not a value it takes"),
    (["--vary", "initial=20"], "varies nothing"),
    (["--vary", "initial20,40"], "must read FIELD=VALUE"),
    (["--initial", "20", "--vary", "initial=20,40"], "its own flag both set 'initial'"),
    (["--cold-start", "--vary", "start=warm,cold"], "its own flag both set 'start'"),
    (["--vary", "initial=20,2000"], "setting initial-2000"),
    (["--vary", "imbalance=1,500"], "setting imbalance-500"),
])
def test_a_bad_grid_is_one_line_exit_2(cli, tmp_path, extra, says):
    status, _, err = cli(*TINY, *extra, "--out", tmp_path / "g")
    assert status == 2 and says in one_line(err)


def test_a_grid_folder_refuses_another_grid_or_protocol(reference, cli, tmp_path):
    parent = tmp_path / "copy"
    status, _, err = cli(*TINY, "--vary", "initial=20,30", "--out", reference[0])
    assert status == 2 and "holds another grid" in one_line(err)
    before = {p: p.read_bytes() for p in reference[0].rglob("*") if p.is_file()}
    status, _, err = cli(*TINY[:-1], "3", *VARY, "--out", reference[0])  # --epochs 3
    assert status == 2 and "another configuration" in one_line(err) and "epochs" in one_line(err)
    assert {p: p.read_bytes() for p in reference[0].rglob("*") if p.is_file()} == before  # refused before any write
    # more seeds widen a fixed-seeds grid as they widen a run; a grid of seeds in rounds keeps its question
    copy = tmp_path / "widened"
    shutil.copytree(reference[0], copy)
    status, out, err = cli(*TINY[:4], "3", *TINY[5:], *VARY, "--out", copy)
    assert status == 0, err
    assert all(set(pd.read_parquet(copy / s / "cycles.parquet")["seed"]) == {0, 1, 2} for s in SETTINGS)
    assert (_verdicts(copy)["n_pairs"] == 3).all()
    record = json.loads((copy / GRID).read_text())
    status, _, err = cli(*TINY[:4], "auto", "--max-seeds", "6", *TINY[5:], *VARY, "--out", copy)
    assert status == 2 and "holds another grid (its design" in one_line(err), record
    assert not parent.exists()


def test_a_grid_parent_reports_again(reference, cli):
    before = (reference[0] / "report.md").read_text()
    status, out, err = cli("report", reference[0])
    assert status == 0, err
    assert (reference[0] / "report.md").read_text() == before and out.startswith("robust    entropy")
    status, _, err = cli("report", reference[0] / SETTINGS[0])  # a setting alone would be corrected alone
    assert status == 2 and f"run `run_bench.py report {reference[0]}`" in one_line(err)


def test_resolve_grid_builds_each_setting_on_the_fixed_protocol(tmp_path):
    from bench.cli import build_parser

    grid = parse_vary(["start=warm,cold", "imbalance=1,4"], vary_fields(build_parser()))
    run = resolve_grid(grid, "quick", ["random", "entropy"], 2, {"epochs": 10}, out=tmp_path / "p")
    assert [s.slug for s, _ in run.settings] == ["start-warm_imbalance-1", "start-warm_imbalance-4",
                                                 "start-cold_imbalance-1", "start-cold_imbalance-4"]
    protocols = [c.protocol for _, c in run.settings]
    assert [(p.warm_start, p.imbalance, p.epochs, p.milestones) for p in protocols] == [
        (True, 1.0, 10, (8,)), (True, 4.0, 10, (8,)), (False, 1.0, 10, (8,)), (False, 4.0, 10, (8,))]
    assert run.settings[1][1].out == tmp_path / "p" / "start-warm_imbalance-4"
    # an imbalanced setting is another job; the whole pool keeps the hash of a run without the field
    hashes = [c.job_hash("random") for _, c in run.settings]
    assert len(set(hashes)) == 4


WINE = ["--dataset", "wine", "--model", "linear", "--strategies", "random", "entropy", "--cycles", "2"]


@pytest.mark.parametrize("design", [["--seeds", "auto", "--max-seeds", "4"], ["--seeds", "2"]])
@pytest.mark.parametrize("on_existing", ["force", "fresh"])
def test_force_and_fresh_recompute_every_setting_of_a_grid(tmp_path, design, on_existing):
    from bench.cli import build_parser
    from bench.runner.grid import run_grid
    from bench.runner.resolve import RunOptions

    parent, slugs = tmp_path / "g", ("budget-10", "budget-20")
    auto = design[1] == "auto"

    def grid(epochs: int, again: str) -> None:
        run = resolve_grid(parse_vary(["budget=10,20"], vary_fields(build_parser())), "quick", ["random", "entropy"],
                           4 if auto else 2, {"dataset": "wine", "model": "linear", "cycles": 2, "epochs": epochs},
                           out=parent)
        written, failures = run_grid(run, RunOptions(on_existing=again, max_seeds=4 if auto else None))
        assert written is not None and not failures

    grid(2, "resume")
    old = {s: pd.read_parquet(parent / s / "cycles.parquet") for s in slugs}
    grid(3, on_existing)  # the old rows decided (or reached) every look: they must not answer for epochs 3
    for slug in slugs:
        stored = json.loads((parent / slug / "config.json").read_text())
        rows = pd.read_parquet(parent / slug / "cycles.parquet")
        assert stored["protocol"]["epochs"] == 3
        assert set(rows["config_hash"]) == set(stored["job_hashes"].values())
        assert not set(rows["config_hash"]) & set(old[slug]["config_hash"])  # recomputed, not kept
        assert set(rows["seed"]) == set(range(4 if auto else 2))
        aside = sorted((parent / slug).glob("previous-*"))
        if on_existing == "force":  # moved aside whole, as --force promises
            assert len(aside) == 1
            pd.testing.assert_frame_equal(pd.read_parquet(aside[0] / "cycles.parquet"), old[slug])
        else:
            assert aside == []


def test_a_vectors_grid_run_again_unchanged_resumes_with_nothing_to_run(cli, tmp_path):
    args = [*WINE, "--seeds", "2", "--vary", "budget=10,20", "--out", tmp_path / "g"]
    status, _, err = cli(*args)
    assert status == 0, err
    before = {s: pd.read_parquet(tmp_path / "g" / s / "cycles.parquet") for s in ("budget-10", "budget-20")}
    status, out, err = cli(*args)
    assert status == 0, err
    assert out.count("resume    4 of 4 jobs already finished") == 2
    for slug, rows in before.items():  # the same rows, finished_at included: nothing ran again
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "g" / slug / "cycles.parquet"), rows)


def test_a_setting_its_run_would_refuse_is_refused_before_any_setting_runs(cli, tmp_path):
    status, _, err = cli(*WINE, "--seeds", "2", "--vary", "precision=fp32,bf16", "--out", tmp_path / "g")
    assert status == 2 and one_line(err).startswith("error: setting precision-bf16: --precision bf16 has no meaning")
    assert not (tmp_path / "g").exists()


def _untimed(rows: pd.DataFrame) -> pd.DataFrame:
    """cycles.parquet without what the machine decides: seconds, megabytes and the time a row was written."""
    return rows.drop(columns=[c for c in rows if c.endswith(("_seconds", "_mb")) or c == "finished_at"])


def _wait(path: Path, started, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert started.proc.poll() is None, started.err.read_text()[-2000:]
        assert time.monotonic() < deadline, "the setting was not reached in time"
        time.sleep(0.01)


def test_the_seeds_auto_plan_counts_each_settings_own_comparisons(tmp_path):
    from bench.cli import build_parser
    from bench.runner.grid import grid_line, plan_for
    from bench.runner.resolve import RunOptions

    # learning loss reads the mlp's hidden layers and is refused on linear: the linear setting makes one comparison
    # fewer, and the family is the sum over settings, whichever setting comes first
    grid = parse_vary(["model=linear,mlp"], vary_fields(build_parser()))
    run = resolve_grid(grid, "quick", None, 3, {"dataset": "wine", "epochs": 2}, out=tmp_path / "p")
    made = {s.slug: len(c.strategies) - 1 for s, c in run.settings}  # each strategy against random
    assert made["model-linear"] == made["model-mlp"] - 1
    options = RunOptions(max_seeds=6)
    assert plan_for(run, options).comparisons == sum(made.values())
    assert f"one family of {sum(made.values())} comparisons over 2 settings (model-linear {made['model-linear']}, " \
           f"model-mlp {made['model-mlp']})" in grid_line(run, options)
