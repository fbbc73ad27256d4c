"""--track mlflow against the real MLflow client on a temporary store: every job a child run of the folder's parent,
every cycle one step whose values are cycles.parquet's, a resumed or widened run adding to the same runs without a
step twice, a --vary grid one run over a parent per setting with the grid's verdicts as tags, a store that does not
answer costing one warning line and nothing else, and bad flags one line."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import UserError
from bench.runner import tracking
from bench.runner.resolve import RunOptions, build_config, job_specs
from conftest import TINY, one_line

mlflow = pytest.importorskip("mlflow")  # the dev extra holds it; a venv without it skips here, not fails
from mlflow import MlflowClient  # noqa: E402

TWO = ["--strategies", "random", "entropy", *TINY]
COLUMNS = {"test_acc": "test_acc", "test_loss": "test_loss", "n_labeled": "n_labeled",
           "train_seconds": "train_seconds", "select_seconds": "select_seconds"}


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri: str) -> tuple[object, list]:
    """The store's one parent run and its children (every run of every experiment, so a stray one is seen)."""
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1  # no run outside the family
    return parents[0], children


def _assert_mirrors(uri: str, folder: Path) -> dict[tuple[str, int], str]:
    """Every job of folder's cycles.parquet is one child run with its params, and each of its metrics holds one step
    per cycle with the row's value; returns {(strategy, seed): run id}."""
    parent, children = _runs(uri)
    by_job = _assert_jobs(MlflowClient(uri), children, folder)
    stored = json.loads((folder / "config.json").read_text())
    assert parent.data.params["protocol.cycles"] == str(stored["protocol"]["cycles"])
    return {job: run.info.run_id for job, run in by_job.items()}


def _assert_jobs(client: MlflowClient, children: list, folder: Path) -> dict[tuple[str, int], object]:
    """children are folder's jobs, one run each, with their params and one step per cycle of cycles.parquet."""
    rows = pd.read_parquet(folder / "cycles.parquet")
    stored = json.loads((folder / "config.json").read_text())
    by_job = {(r.data.params["strategy"], int(r.data.params["seed"])): r for r in children}
    assert len(by_job) == len(children)  # no job twice
    assert set(by_job) == set(zip(rows["strategy"], rows["seed"].astype(int), strict=True))
    for (strategy, seed), run in by_job.items():
        job = rows[(rows["strategy"] == strategy) & (rows["seed"] == seed)].sort_values("cycle")
        assert run.data.params["job_hash"] == job["config_hash"].iloc[0] == stored["job_hashes"][strategy]
        assert run.data.tags["al_bench.job_hash"] == run.data.params["job_hash"]
        for field, value in stored["protocol"].items():  # the protocol config.json records, field by field
            assert run.data.params[f"protocol.{field}"] == str(tuple(value) if isinstance(value, list) else value)
        for key, value in stored["strategy_params"].get(strategy, {}).items():
            assert run.data.params[f"{strategy}.{key}"] == str(value)
        assert run.info.status == "FINISHED"
        for metric, column in COLUMNS.items():
            history = client.get_metric_history(run.info.run_id, metric)
            steps = sorted(m.step for m in history)
            assert steps == job["cycle"].tolist(), (strategy, seed, metric)  # one step per cycle, none twice
            values = [m.value for m in sorted(history, key=lambda m: m.step)]
            assert values == [float(v) for v in job[column]], (strategy, seed, metric)
    return by_job


def test_a_tracked_run_is_a_parent_with_a_child_per_job_holding_every_cycle(cli, tmp_path):
    uri, out_dir = _store(tmp_path), tmp_path / "run"
    status, _, err = cli(*TWO, "--out", out_dir, "--track", "mlflow", "--tracking-uri", uri)
    assert status == 0, err
    assert "--track" not in err  # nothing went wrong, so nothing is said
    _assert_mirrors(uri, out_dir)
    client = MlflowClient(uri)
    parent, _ = _runs(uri)
    assert parent.info.status == "FINISHED"
    primary = pd.read_csv(out_dir / "report" / "tables" / "primary_digits.csv")
    for row in primary.to_dict("records"):  # the verdicts as tags, read against the report's own table
        tag = parent.data.tags[f"verdict.{row['strategy']} vs {row['other']}"]
        assert tag.startswith(f"{row['verdict']}: {100 * row['mean_diff']:+.2f} AULC points")
        assert f"{row['n_pairs']} seeds" in tag
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.json", "cycles.parquet", "report"} <= top
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in report
    # the artifacts are the folder's files, byte for byte
    local = Path(client.download_artifacts(parent.info.run_id, "cycles.parquet", str(tmp_path)))
    assert local.read_bytes() == (out_dir / "cycles.parquet").read_bytes()
    for key in tracking.HTTP_LIMITS:  # set around the tracker's calls only
        assert key not in os.environ


def test_a_widened_and_repeated_run_adds_to_the_same_runs_and_never_logs_a_cycle_twice(cli, tmp_path):
    uri, out_dir = _store(tmp_path), tmp_path / "run"
    args = ["--out", out_dir, "--track", "mlflow", "--tracking-uri", uri]
    assert cli(*TWO, *args)[0] == 0
    first = _assert_mirrors(uri, out_dir)
    parent = _runs(uri)[0].info.run_id
    status, _, err = cli(*TWO[:-2], "--seeds", "2", *args)  # one seed more: two jobs more
    assert status == 0, err
    second = _assert_mirrors(uri, out_dir)
    assert len(second) == 4 and {k: second[k] for k in first} == first  # seed 0's runs are the same runs
    assert _runs(uri)[0].info.run_id == parent
    assert cli(*TWO[:-2], "--seeds", "2", *args)[0] == 0  # nothing left to run: nothing logged again
    assert _assert_mirrors(uri, out_dir) == second


def test_a_cycle_redone_after_a_kill_is_not_logged_twice(tmp_path):
    """A kill between a row and its checkpoint has the resumed run redo that cycle, later: MLflow would keep both
    (their timestamps differ), the tracker logs the step once."""
    config = build_config(strategies=["random"], seeds=1, protocol={"cycles": 2}, out=tmp_path / "run")
    spec = job_specs(config)[0]
    uri = _store(tmp_path)
    row = {"cycle": 0, "test_acc": 0.5, "test_loss": 1.5, "n_labeled": 30, "train_seconds": 2.0, "select_seconds": 0.1,
           "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    first = tracking.MlflowTracker(uri)
    first.start(config, [spec], pd.DataFrame(), resumed=False)
    first.cycle(spec, row)
    again = tracking.MlflowTracker(uri)  # the command run again, in a new process
    again.start(config, [spec], pd.DataFrame(), resumed=True)
    again.cycle(spec, {**row, "test_acc": 0.5, "finished_at": datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)})
    again.cycle(spec, {**row, "cycle": 1, "n_labeled": 60})
    _, children = _runs(uri)
    assert len(children) == 1
    client = MlflowClient(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(children[0].info.run_id, "n_labeled")] == [
        (0, 30.0), (1, 60.0)]
    assert client.get_run(children[0].info.run_id).info.status == "FINISHED"  # its last cycle is in


def test_tracking_from_a_resume_on_logs_the_rows_the_folder_already_holds(cli, tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    assert cli(*TWO, "--out", out_dir)[0] == 0  # untracked
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    status, out, err = cli(*TWO, "--out", out_dir, "--track", "mlflow")  # MLflow's default store
    assert status == 0, err
    assert Path("mlflow.db").is_file()  # in the working folder (conftest gives each test an empty one)
    _assert_mirrors(f"sqlite:///{Path('mlflow.db').resolve()}", out_dir)


def test_a_folder_started_afresh_gets_a_new_parent_and_the_old_one_is_marked(cli, tmp_path):
    uri, out_dir = _store(tmp_path), tmp_path / "run"
    args = [*TWO, "--out", out_dir, "--track", "mlflow", "--tracking-uri", uri]
    assert cli(*args)[0] == 0
    old = _runs(uri)[0].info.run_id
    assert cli(*args, "--force")[0] == 0  # the old results moved aside: the folder starts again
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2
    earlier = next(r for r in parents if r.info.run_id == old)
    assert earlier.data.tags["al_bench.folder"].endswith("(an earlier run of the folder)")
    new = next(r for r in parents if r.info.run_id != old)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == new.info.run_id]
    assert len(kids) == 2 and all(len(client.get_metric_history(k.info.run_id, "test_acc")) == 3 for k in kids)


def test_seeds_auto_rounds_go_into_the_same_runs(cli, tmp_path):
    uri, out_dir = _store(tmp_path), tmp_path / "run"
    status, out, err = cli("--strategies", "random", "entropy", "--initial", "20", "--budget", "20", "--cycles", "3",
                           "--epochs", "2", "--seeds", "auto", "--max-seeds", "6", "--out", out_dir,
                           "--track", "mlflow", "--tracking-uri", uri)
    assert status == 0, err
    rows = pd.read_parquet(out_dir / "cycles.parquet")
    assert rows["seed"].nunique() > 1
    assert len(_assert_mirrors(uri, out_dir)) == len(rows.groupby(["strategy", "seed"]))


GRID = ["--strategies", "random", "entropy", "--seeds", "2", "--cycles", "3", "--epochs", "2", "--initial", "20",
        "--vary", "budget=10,20"]


def _grid_runs(uri: str, parent: Path) -> tuple[object, dict[str, object], dict[str, list]]:
    """The store's one grid run, its settings' parents by setting, and each setting's job runs; every run is one of
    them (a run duplicated or left outside the tree fails here)."""
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    tops = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(tops) == 1 and tops[0].data.tags["al_bench.out"] == str(parent.resolve()), tops
    grid = tops[0]
    settings = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == grid.info.run_id]
    by_setting = {r.data.tags["al_bench.setting"]: r for r in settings}
    assert len(by_setting) == len(settings)  # one parent per setting
    jobs = {slug: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
            for slug, run in by_setting.items()}
    assert 1 + len(settings) + sum(map(len, jobs.values())) == len(runs)
    return grid, by_setting, jobs


def _verdict_text(row: dict) -> str:
    return f"{row['verdict']}: {100 * row['mean_diff']:+.2f} AULC points (interval {100 * row['ci_low']:+.2f} to " \
           f"{100 * row['ci_high']:+.2f}), {row['n_pairs']} seeds"


def test_a_tracked_grid_is_one_run_over_a_parent_per_setting_with_the_grids_verdicts_and_resumes_into_them(
        cli, tmp_path):
    uri, parent = _store(tmp_path), tmp_path / "grid"
    args = [*GRID, "--out", parent, "--track", "mlflow", "--tracking-uri", uri]
    status, _, err = cli(*args)
    assert status == 0, err
    assert "--track" not in err
    client = MlflowClient(uri)
    grid, settings, jobs = _grid_runs(uri, parent)
    assert sorted(settings) == ["budget-10", "budget-20"] and grid.info.status == "FINISHED"
    assert len({client.get_run(r.info.run_id).info.experiment_id for r in [grid, *settings.values()]}) == 1
    for slug, run in settings.items():  # each setting's parent holds its folder's jobs, every cycle of them
        assert run.info.status == "FINISHED" and run.data.params["protocol.budget"] == slug.split("-")[1]
        assert len(_assert_jobs(client, jobs[slug], parent / slug)) == 4  # 2 strategies x 2 seeds
    table = pd.read_csv(parent / "report" / "tables" / "grid_verdicts.csv")
    assert sorted(table["dataset"]) == sorted(settings)
    for row in table.to_dict("records"):  # the grid's verdicts, read against its report's own table
        key = f"{row['strategy']} vs {row['other']}"
        own = settings[row["dataset"]].data.tags[f"verdict.{key}"]
        assert own.startswith(_verdict_text(row)) and own == grid.data.tags[f"verdict.{row['dataset']}.{key}"]
    for (a, b), rows in table.groupby(["strategy", "other"]):
        counts = rows["verdict"].value_counts()
        assert grid.data.tags[f"robust.{a} vs {b}"] == ", ".join(
            f"{o} {counts[o]}" for o in ("better", "worse", "equivalent", "undecided") if o in counts) + \
            f" (of {len(rows)} settings)"
    assert {"report", "report.md", "grid.json"} <= {a.path for a in client.list_artifacts(grid.info.run_id)}
    before = {r.info.run_id for r in [grid, *settings.values(), *sum(jobs.values(), [])]}
    steps = {r.info.run_id: len(client.get_metric_history(r.info.run_id, "test_acc")) for js in jobs.values()
             for r in js}
    status, out, err = cli(*args)  # the same command again: a resumed grid with nothing left to run
    assert status == 0, err
    assert out.count("resume    4 of 4 jobs already finished") == 2
    again, settings_again, jobs_again = _grid_runs(uri, parent)
    assert {r.info.run_id for r in [again, *settings_again.values(), *sum(jobs_again.values(), [])]} == before
    assert {r: len(client.get_metric_history(r, "test_acc")) for r in steps} == steps  # no cycle logged twice
    assert again.info.status == "FINISHED"
    status, _, err = cli(*[("3" if a == "2" and GRID[i - 1] == "--seeds" else a) for i, a in enumerate(args)])
    assert status == 0, err  # one seed more: each setting's parent gains its two jobs, the others are the same runs
    wider, settings_wider, jobs_wider = _grid_runs(uri, parent)
    assert wider.info.run_id == grid.info.run_id
    assert {s: r.info.run_id for s, r in settings_wider.items()} == {s: r.info.run_id for s, r in settings.items()}
    table = pd.read_csv(parent / "report" / "tables" / "grid_verdicts.csv")
    for slug, run in settings_wider.items():
        assert len(_assert_jobs(client, jobs_wider[slug], parent / slug)) == 6
        assert {r.info.run_id for r in jobs[slug]} < {r.info.run_id for r in jobs_wider[slug]}
        row = table[table["dataset"] == slug].iloc[0].to_dict()
        assert row["n_pairs"] == 3 and run.data.tags["verdict.entropy vs random"].startswith(_verdict_text(row))


def test_a_grid_whose_store_does_not_answer_is_one_warning_and_its_report(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(tracking.HTTP_LIMITS, "MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setitem(tracking.HTTP_LIMITS, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = "http://127.0.0.1:9"
    status, _, err = cli(*GRID, "--out", tmp_path / "grid", "--track", "mlflow",
                         "--tracking-uri", uri)
    assert status == 0, err
    warned = [line for line in err.splitlines() if "--track mlflow" in line]
    assert len(warned) == 1 and warned[0].startswith("warning   --track mlflow: opening the grid's run at " + uri)
    assert (tmp_path / "grid" / "report" / "tables" / "grid_verdicts.csv").is_file()
    for slug in ("budget-10", "budget-20"):
        assert len(pd.read_parquet(tmp_path / "grid" / slug / "cycles.parquet")) == 12


@pytest.fixture
def silent_server():
    """A port that takes connections and never answers: a tracking server that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("where", ["refused", "silent"])
def test_a_store_that_does_not_answer_is_one_warning_and_the_same_rows(cli, tmp_path, monkeypatch, where,
                                                                       request):
    uri = "http://127.0.0.1:9" if where == "refused" else request.getfixturevalue("silent_server")
    monkeypatch.setitem(tracking.HTTP_LIMITS, "MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # a short wait, for the test
    monkeypatch.setitem(tracking.HTTP_LIMITS, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    status, _, err = cli(*TWO, "--out", tmp_path / "tracked", "--track", "mlflow", "--tracking-uri", uri)
    assert status == 0, err
    warned = [line for line in err.splitlines() if "--track mlflow" in line]
    assert len(warned) == 1 and warned[0].startswith("warning   --track mlflow: opening the runs at " + uri), err
    assert status == cli(*TWO, "--out", tmp_path / "plain")[0]
    tracked, plain = (pd.read_parquet(tmp_path / name / "cycles.parquet") for name in ("tracked", "plain"))
    same = ["strategy", "seed", "cycle", "n_labeled", "test_acc", "test_loss", "config_hash"]
    assert tracked[same].equals(plain[same])
    assert (tmp_path / "tracked" / "report" / "report.md").is_file()
    for key in tracking.HTTP_LIMITS:
        assert key not in os.environ


def test_an_error_inside_a_run_stops_tracking_with_one_warning(cli, tmp_path, monkeypatch):
    calls = []

    def broken(self, spec, record):
        calls.append(record["cycle"])
        raise RuntimeError("database is locked\n(second line)")

    monkeypatch.setattr(tracking.MlflowTracker, "_log", broken)
    uri = _store(tmp_path)
    status, _, err = cli(*TWO, "--out", tmp_path / "run", "--track", "mlflow", "--tracking-uri", uri)
    assert status == 0, err
    warned = [line for line in err.splitlines() if "--track mlflow" in line]
    assert len(warned) == 1 and "RuntimeError: database is locked (second line)" in warned[0]
    assert calls == [0]  # the first failure ended tracking: no call after it
    assert len(pd.read_parquet(tmp_path / "run" / "cycles.parquet")) == 6


def test_bad_tracking_flags_are_one_line_before_any_work(cli, tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    status, _, err = cli(*TWO, "--out", out_dir, "--track", "mlfow")
    assert status == 2 and "Unknown --track value 'mlfow' (did you mean 'mlflow'?)" in one_line(err)
    status, _, err = cli(*TWO, "--out", out_dir, "--tracking-uri", "sqlite:///x.db")
    assert status == 2 and "is for --track mlflow" in one_line(err)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    status, _, err = cli(*TWO, "--out", out_dir, "--track", "mlflow")
    assert status == 2 and "--track mlflow needs MLflow" in one_line(err)
    assert not out_dir.exists()  # refused before the folder was made
    status, _, err = cli(*TWO, "--out", out_dir)  # without --track, MLflow is never asked for
    assert status == 0, err


def test_run_options_check_the_tracking_fields():
    for fine in (RunOptions(), RunOptions(track="mlflow"), RunOptions(track="mlflow", tracking_uri="sqlite:///a.db")):
        fine.validate()
    for bad, message in [(RunOptions(track="MLflow"), "did you mean 'mlflow'"),
                         (RunOptions(track=None), "Unknown --track value 'None'"),
                         (RunOptions(track="mlflow", tracking_uri=" "), "'tracking_uri' parameter"),
                         (RunOptions(track="mlflow", tracking_uri=5), "Got 5 instead"),
                         (RunOptions(tracking_uri="http://h:5000"), "is for --track mlflow")]:
        with pytest.raises(UserError, match=message):
            bad.validate()


def test_a_password_in_the_uri_is_not_printed():
    shown = tracking.MlflowTracker("http://me:secret@host:5000/path")._where()
    assert shown == "http://me:***@host:5000/path" and "secret" not in shown
