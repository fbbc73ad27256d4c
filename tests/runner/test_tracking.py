"""--track mlflow against the real MLflow client on a temporary store: every job a child run of the folder's parent,
every cycle one step whose values are cycles.parquet's, a resumed or widened run adding to the same runs without a
step twice, a store that does not answer costing one warning line and nothing else, and bad flags one line."""

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
    client = MlflowClient(uri)
    rows = pd.read_parquet(folder / "cycles.parquet")
    stored = json.loads((folder / "config.json").read_text())
    parent, children = _runs(uri)
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
    assert parent.data.params["protocol.cycles"] == str(stored["protocol"]["cycles"])
    return {job: run.info.run_id for job, run in by_job.items()}


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
