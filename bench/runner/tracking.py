"""`--track mlflow`: a results folder mirrored into an MLflow experiment, never in the way of the run.

The folder is a parent run, found again by its identity (its place and the configuration its jobs share); each
(strategy, seed) job is a child run, found by its job hash and seed; each cycle is one step of the metrics test_acc,
test_loss, n_labeled, train_seconds and select_seconds. A resumed, widened or --seeds auto run adds to the same runs,
and a step already logged is never logged again. When the report is written, the primary verdicts become the
parent's tags and the report folder its artifacts.

A --vary grid is one run above its settings, in one experiment named after the grid: the grid's run, found again by
the grid's identity (its place and the question grid.json records), holds each setting's parent run, which holds its
(strategy, seed) jobs as above. When the grid's report is written, its verdicts (report/tables/grid_verdicts.csv)
become tags: each setting's on the setting's parent, all of them and a count per comparison on the grid's run.

The results folder stays the source of truth: any error from MLflow (a server that does not answer, a locked
database) is one warning line, tracking stops for the run, and the run goes on as if it had never been asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from bench.core.config import RunConfig, protocol_identity
from bench.core.errors import UserError
from bench.core.registry import unknown_name
from bench.results.store import CONFIG, CYCLES, REPORT
from bench.training.jobs import JobSpec

TRACKERS = ("none", "mlflow")  # --track: nothing, or an MLflow tracking store

METRICS = ("test_acc", "test_loss", "n_labeled", "train_seconds", "select_seconds")  # cycles.parquet's columns

# Tags that find the runs again (MLflow's own parentRunId links a child to its parent).
FOLDER, OUT, JOB, SEED, STRATEGY = "al_bench.folder", "al_bench.out", "al_bench.job_hash", "al_bench.seed", \
    "al_bench.strategy"
GRID, SETTING = "al_bench.grid", "al_bench.setting"  # a --vary grid's run, and a setting's parent within it
PARENT = "mlflow.parentRunId"
EARLIER = "(an earlier run of the folder)"  # appended to the identity tag of a folder's or grid's older runs
GRID_VERDICTS = Path(REPORT) / "tables" / "grid_verdicts.csv"  # bench.report.grid_report's table, under the grid
OUTCOMES = ("better", "worse", "equivalent", "undecided")  # the order a grid's count lists them in

# A tracking server that hangs costs the run seconds, once: each request waits at most 5 s and is tried 3 times,
# 1 s and 2 s apart. Set around the tracker's own calls only; a value the user exported wins.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}

BATCH = 100  # params or tags in one log_batch call: MLflow's limit


def check_tracking(track: object, uri: object) -> None:
    """--track and --tracking-uri checked before any work: one UserError each."""
    if not isinstance(track, str) or track not in TRACKERS:
        raise unknown_name("--track value", str(track), TRACKERS)
    if uri is not None and (not isinstance(uri, str) or not uri.strip()):
        raise UserError(f"The 'tracking_uri' parameter (--tracking-uri) must be an MLflow tracking URI (a folder, "
                        f"sqlite:///PATH/mlflow.db or http://HOST:PORT), or None. Got {uri!r} instead.")
    if uri is not None and track == "none":  # it would change nothing: said, not ignored
        raise UserError(f"--tracking-uri {uri} is for --track mlflow: add --track mlflow, or drop --tracking-uri.")
    if track == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise UserError("--track mlflow needs MLflow, which is not installed here: pip install -e \".[mlflow]\" "
                        "(or pip install mlflow), or leave --track out.")


def open_tracker(track: str, uri: str | None) -> Tracker:
    """The tracker --track names (none: one whose every hook does nothing)."""
    return MlflowTracker(uri) if track == "mlflow" else Tracker()


def folder_identity(config: RunConfig) -> str:
    """The parent run's key: the folder's place and what every job in it shares (the protocol, the dataset's
    content, the model, the device type and precision). More strategies or seeds keep it."""
    identity = {"out": str(Path(config.out).resolve()), "protocol": protocol_identity(config.protocol),
                "dataset": config.dataset_fingerprint, "model": dict(sorted(config.model_fingerprint.items())),
                "numerics": config.numerics()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def grid_identity(parent: Path, record: dict[str, Any]) -> str:
    """The grid run's key: the grid's place and what a resumed --vary must ask again (grid.json's grid, baseline,
    margin and design). More strategies or seeds keep it, as they keep a folder's."""
    identity = {"out": str(Path(parent).resolve()), **{k: record.get(k) for k in ("grid", "baseline", "margin",
                                                                                  "design")}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Tracker:
    """--track none: the hooks the driver calls, each doing nothing."""

    def start(self, config: RunConfig, specs: list[JobSpec], rows: pd.DataFrame, resumed: bool) -> None:
        """A round begins: config widened to the folder's jobs, specs the round's jobs, rows the folder's cycles
        so far, resumed whether the folder held anything before this run."""

    def cycle(self, spec: JobSpec, record: dict[str, Any]) -> None:
        """One cycle's row, just written to the folder."""

    def failed(self, spec: JobSpec) -> None:
        """A job failed (failures.json says why)."""

    def finish(self, folder: Path, report: Path | None, failed: bool) -> None:
        """The run is over and its report (None: no rows to report) written."""

    def start_grid(self, name: str, parent: Path, record: dict[str, Any], resumed: bool) -> None:
        """A --vary grid begins, before its first setting's start: name its experiment's, parent its folder, record
        what grid.json holds, resumed whether that folder held this grid before."""

    def finish_grid(self, parent: Path, failures: list[str]) -> None:
        """The grid is over and its report written (or not: no setting had a row); failures 'SETTING/JOB'."""


@dataclasses.dataclass
class _Child:
    run_id: str
    steps: set[int]  # the cycles this run holds
    finished: bool  # its status is FINISHED


class MlflowTracker(Tracker):
    """Every hook through MlflowClient (never MLflow's fluent API and its process-wide active run)."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri  # None: MLflow's default (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)
        self.stopped = False
        self.client: Any = None
        self.experiment = ""
        self.parent = ""
        self.identity = ""
        self.parents: dict[str, str] = {}  # folder identity -> its parent run, for the settings of a grid
        self.children: dict[tuple[str, str, int], _Child] = {}  # (parent, job hash, seed)
        self.experiment_name = ""  # a grid's: every setting's runs in one experiment (else each run's name)
        self.grid_run = ""

    # -- the hooks: each one safe ----------------------------------------------------------------------------

    def start(self, config: RunConfig, specs: list[JobSpec], rows: pd.DataFrame, resumed: bool) -> None:
        self._safely("opening the runs", lambda: self._start(config, specs, rows, resumed), opening=True)

    def cycle(self, spec: JobSpec, record: dict[str, Any]) -> None:
        self._safely(f"logging {spec.key} cycle {record.get('cycle')}", lambda: self._log(spec, record))

    def failed(self, spec: JobSpec) -> None:
        self._safely(f"marking {spec.key} failed",
                     lambda: self.client.set_terminated(self._child(spec).run_id, "FAILED"))

    def finish(self, folder: Path, report: Path | None, failed: bool) -> None:
        self._safely("logging the report", lambda: self._finish(Path(folder), report, failed))

    def start_grid(self, name: str, parent: Path, record: dict[str, Any], resumed: bool) -> None:
        self._safely("opening the grid's run", lambda: self._start_grid(name, Path(parent), record, resumed),
                     opening=True)

    def finish_grid(self, parent: Path, failures: list[str]) -> None:
        self._safely("logging the grid's report", lambda: self._finish_grid(Path(parent), failures))

    def _safely(self, what: str, work: Callable[[], None], opening: bool = False) -> None:
        """work(), with the HTTP limits set; any error is one warning line and the end of tracking for this run.
        KeyboardInterrupt and the signals' exits are not errors of MLflow: they pass. opening: start, the one
        hook that may run before the parent is known."""
        if self.stopped or not (opening or self.parent or self.grid_run):
            return
        saved = {key: os.environ.get(key) for key in HTTP_LIMITS}
        os.environ.update({key: value for key, value in HTTP_LIMITS.items() if saved[key] is None})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLflow's deprecation notes are not the run's to print
                work()
        except Exception as err:  # noqa: BLE001 - whatever MLflow raises, the run goes on
            self.stopped = True
            message = " ".join(f"{type(err).__name__}: {err}".split())
            print(f"warning   --track mlflow: {what} at {self._where()} failed ({message[:300]}); tracking stops "
                  "here, the run goes on and its folder holds every row", file=sys.stderr, flush=True)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)

    def _where(self) -> str:
        """The store's URI without a password (the warning may be pasted into an issue)."""
        uri = self.client.tracking_uri if self.client is not None else self.uri or "MLflow's default store"
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.hostname}"
                                         + (f":{parts.port}" if parts.port else "")))

    # -- the work ---------------------------------------------------------------------------------------------

    def _open(self, name: str) -> None:
        """The client, and the experiment of that name (made if new)."""
        from mlflow import MlflowClient  # the optional extra, imported by the run that asks for it

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        if self.client is None:
            self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self.client.create_experiment(name)

    def _start(self, config: RunConfig, specs: list[JobSpec], rows: pd.DataFrame, resumed: bool) -> None:
        self._open(self.experiment_name or config.name)
        identity = folder_identity(config)
        if identity not in self.parents:  # a later round of --seeds auto, or a grid's later look, keeps its parent
            self.parents[identity] = self._parent(config, identity, resumed)
        self.parent, self.identity = self.parents[identity], identity
        self.client.update_run(self.parent, status="RUNNING")
        self._batch(self.parent, tags={OUT: str(Path(config.out).resolve()), "strategies": ", ".join(
            config.strategies), "seeds": str(len(config.seeds))})
        # rows the store holds and the tracker lacks: a run tracked from a resume on, or a kill between the two
        if rows.empty:
            return
        for spec in specs:
            mine = rows[(rows["strategy"] == spec.strategy) & (rows["seed"] == spec.seed)
                        & (rows["config_hash"].astype(str) == spec.config_hash)]
            for record in mine.sort_values("cycle").to_dict("records"):
                self._log(spec, record)

    def _parent(self, config: RunConfig, identity: str, resumed: bool) -> str:
        """The folder's parent run: the one of its identity, or a new one. A folder that held nothing (new, or
        emptied by --force or --fresh) starts a new parent; the older ones are retagged as earlier lives."""
        runs = self.client.search_runs([self.experiment], f"tags.`{FOLDER}` = '{identity}'")
        if resumed and runs:
            if self.grid_run and runs[0].data.tags.get(PARENT) != self.grid_run:  # a grid's run made again
                self.client.set_tag(runs[0].info.run_id, PARENT, self.grid_run)
            return runs[0].info.run_id
        for run in runs:
            self.client.set_tag(run.info.run_id, FOLDER, f"{identity} {EARLIER}")
        place = {PARENT: self.grid_run, SETTING: Path(config.out).name} if self.grid_run else {}
        run = self.client.create_run(self.experiment, run_name=config.name, tags={FOLDER: identity, **place})
        params = {**{f"protocol.{k}": v for k, v in dataclasses.asdict(config.protocol).items()},
                  "dataset_fingerprint": config.dataset_fingerprint, **config.numerics(),
                  **{f"model.{k}": v for k, v in config.model_fingerprint.items()}}
        self._batch(run.info.run_id, params=params)
        return run.info.run_id

    def _child(self, spec: JobSpec) -> _Child:
        """The job's child run under the parent, found by its job hash and seed, or created with its params."""
        key = (self.parent, spec.config_hash, spec.seed)
        if key in self.children:
            return self.children[key]
        query = (f"tags.`{PARENT}` = '{self.parent}' and tags.`{JOB}` = '{spec.config_hash}' and "
                 f"tags.`{SEED}` = '{spec.seed}'")
        runs = self.client.search_runs([self.experiment], query, max_results=1)
        if runs:
            run_id = runs[0].info.run_id
            steps = {int(m.step) for m in self.client.get_metric_history(run_id, METRICS[0])}
            child = _Child(run_id, steps, runs[0].info.status == "FINISHED")
        else:
            tags = {PARENT: self.parent, JOB: spec.config_hash, SEED: str(spec.seed), STRATEGY: spec.strategy}
            run_id = self.client.create_run(self.experiment, run_name=spec.key, tags=tags).info.run_id
            params = {"strategy": spec.strategy, "seed": spec.seed, "job_hash": spec.config_hash,
                      **{f"protocol.{k}": v for k, v in dataclasses.asdict(spec.protocol).items()},
                      **{f"{spec.strategy}.{k}": v for k, v in sorted(spec.params.items())}}
            self._batch(run_id, params=params)
            child = _Child(run_id, set(), False)
        self.children[key] = child
        return child

    def _log(self, spec: JobSpec, record: dict[str, Any]) -> None:
        """One cycle as one step of the child run, unless the run holds it already."""
        from mlflow.entities import Metric

        child = self._child(spec)
        cycle = int(record["cycle"])
        if cycle not in child.steps:
            at = _millis(record.get("finished_at"))
            self.client.log_batch(child.run_id, metrics=[Metric(key, float(record[key]), at, cycle)
                                                         for key in METRICS if record.get(key) is not None])
            child.steps.add(cycle)
        if cycle == spec.protocol.cycles - 1 and not child.finished:
            self.client.set_terminated(child.run_id, "FINISHED")
            child.finished = True

    def _finish(self, folder: Path, report: Path | None, failed: bool) -> None:
        if report is not None:
            self._batch(self.parent, tags=verdict_tags(report.parent / "tables"))
            self.client.log_artifacts(self.parent, str(report.parent), "report")
        for name in (CONFIG, CYCLES):
            if (folder / name).is_file():
                self.client.log_artifact(self.parent, str(folder / name))
        self.client.set_terminated(self.parent, "FAILED" if failed else "FINISHED")

    def _start_grid(self, name: str, parent: Path, record: dict[str, Any], resumed: bool) -> None:
        self.experiment_name = name
        self._open(name)
        identity = grid_identity(parent, record)
        runs = self.client.search_runs([self.experiment], f"tags.`{GRID}` = '{identity}'")
        if resumed and runs:
            self.grid_run = runs[0].info.run_id
        else:
            for run in runs:
                self.client.set_tag(run.info.run_id, GRID, f"{identity} {EARLIER}")
            self.grid_run = self.client.create_run(self.experiment, run_name=name,
                                                   tags={GRID: identity}).info.run_id
            fields = record.get("grid", {}).get("fields", {})
            self._batch(self.grid_run, params={**{f"vary.{k}": ", ".join(v) for k, v in fields.items()},
                                               **{k: record.get(k) for k in ("baseline", "margin", "design")}})
        self.client.update_run(self.grid_run, status="RUNNING")
        self._batch(self.grid_run, tags={OUT: str(parent.resolve()), "strategies": ", ".join(record["strategies"]),
                                         "seeds": str(record["seeds"]),
                                         "settings": str(len(record["grid"]["settings"]))})

    def _finish_grid(self, parent: Path, failures: list[str]) -> None:
        table = parent / GRID_VERDICTS
        per_setting, overall = grid_verdict_tags(table) if table.is_file() else ({}, {})
        failed = {key.partition("/")[0] for key in failures}
        # every setting's current parent, those this process did not open too (a decided setting of --seeds auto)
        settings = [r for r in self.client.search_runs([self.experiment], f"tags.`{PARENT}` = '{self.grid_run}'")
                    if SETTING in r.data.tags and not r.data.tags.get(FOLDER, "").endswith(EARLIER)]
        for run in settings:
            slug = run.data.tags[SETTING]
            self._batch(run.info.run_id, tags=per_setting.get(slug, {}))
            for name in (CONFIG, CYCLES):
                if (parent / slug / name).is_file():
                    self.client.log_artifact(run.info.run_id, str(parent / slug / name))
            self.client.set_terminated(run.info.run_id, "FAILED" if slug in failed else "FINISHED")
        self._batch(self.grid_run, tags=overall)
        if (parent / REPORT).is_dir():
            self.client.log_artifacts(self.grid_run, str(parent / REPORT), REPORT)
        for name in ("report.md", "grid.json"):
            if (parent / name).is_file():
                self.client.log_artifact(self.grid_run, str(parent / name))
        self.client.set_terminated(self.grid_run, "FAILED" if failures or not table.is_file() else "FINISHED")

    def _batch(self, run_id: str, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> None:
        """params and tags in batches of MLflow's size."""
        from mlflow.entities import Param, RunTag

        entries = [Param(k, str(v)) for k, v in (params or {}).items()]
        marks = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(entries), len(marks)), BATCH):
            self.client.log_batch(run_id, params=entries[i:i + BATCH], tags=marks[i:i + BATCH])


def verdict_tags(tables: Path) -> dict[str, str]:
    """{"verdict.A vs B": "better: +1.23 AULC points (interval -0.40 to +2.90), 5 seeds"} from the report's primary
    tables (report/tables/primary_<dataset>.csv); the dataset joins the key when the report has several."""
    frames = [pd.read_csv(path) for path in sorted(tables.glob("primary_*.csv"))]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    several = len(frames) > 1
    return {_tag(f"verdict.{row['dataset']}." if several else "verdict.", row): _verdict_text(row)
            for row in rows.to_dict("records")}


def grid_verdict_tags(table: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """A grid's verdicts from its report's grid_verdicts.csv ("dataset" = the setting): {setting: {"verdict.A vs B":
    text}} for the settings' parents, and for the grid's run every one ("verdict.SETTING.A vs B") with a count per
    comparison ("robust.A vs B": "better 3, undecided 1 (of 4 settings)")."""
    rows = pd.read_csv(table, dtype={"dataset": str})
    per_setting: dict[str, dict[str, str]] = {}
    overall: dict[str, str] = {}
    for row in rows.to_dict("records"):
        per_setting.setdefault(row["dataset"], {})[_tag("verdict.", row)] = _verdict_text(row)
        overall[_tag(f"verdict.{row['dataset']}.", row)] = _verdict_text(row)
    for (a, b), own in rows.groupby(["strategy", "other"], sort=False):
        counts = own["verdict"].value_counts()
        order = [o for o in OUTCOMES if o in counts] + sorted(set(counts.index) - set(OUTCOMES))
        overall[_tag("robust.", {"strategy": a, "other": b})] = (
            ", ".join(f"{o} {int(counts[o])}" for o in order) + f" (of {len(own)} settings)")
    return per_setting, overall


def _verdict_text(row: dict[str, Any]) -> str:
    text = (f"{row['verdict']}: {100 * row['mean_diff']:+.2f} AULC points (interval {100 * row['ci_low']:+.2f} "
            f"to {100 * row['ci_high']:+.2f}), {int(row['n_pairs'])} seeds")
    if row["verdict"] == "undecided" and pd.notna(row.get("seeds_needed")):
        text += f", about {int(row['seeds_needed'])} needed"
    return text


def _tag(prefix: str, row: dict[str, Any]) -> str:
    """A tag's key in the characters MLflow takes, within its length."""
    return "".join(c if c.isalnum() or c in "._- /" else "_"
                   for c in f"{prefix}{row['strategy']} vs {row['other']}")[:250]


def _millis(when: Any) -> int:
    """A row's finished_at (a datetime, or pandas' Timestamp once read back) in ms since the epoch; now if absent."""
    if when is None or pd.isna(when):
        when = datetime.now(timezone.utc)
    return int(pd.Timestamp(when).timestamp() * 1000)
