"""The results store: one folder per run.

cycles.parquet (one row per strategy, seed, cycle), selections.parquet (the indices each cycle's labeled
set added, in pick order), config.json (the resolved configuration and provenance), failures.json (when a
job failed), checkpoints/ (the state of unfinished jobs), report/. Every file (and report/ as a whole) is
replaced through temp-file-and-rename, so a killed run never leaves a half-written file; re-running resumes. A
failed write (a full disk, a read-only folder, a file in the way) is one line, and leaves the previous file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.core.errors import UserError, regular_file, shown
from bench.core.files import FOLDER_MODE, RESUME, atomic_write, remove_path, writing
from bench.results.picks import pick_problem

if TYPE_CHECKING:  # checkpoints hold torch tensors; `report` reads the store and never a checkpoint
    from bench.training.jobs import JobState

CYCLES = "cycles.parquet"
SELECTIONS = "selections.parquet"
CONFIG = "config.json"
FAILURES = "failures.json"
CHECKPOINTS = "checkpoints"
REPORT = "report"
RESULT_FILES = (CYCLES, SELECTIONS, CONFIG, FAILURES, CHECKPOINTS, REPORT)  # what --force and --fresh move

KEYS = ("dataset", "strategy", "seed", "cycle")  # one row of cycles.parquet per key
PICK_COLUMNS = ("strategy", "seed", "cycle", "rank", "index")  # what every reader of selections.parquet relies on
# the columns every reader relies on, with the type each must convert to
CYCLE_TYPES = {"dataset": str, "strategy": str, "seed": int, "cycle": int, "n_labeled": float, "test_acc": float}


class ResultsError(UserError, ValueError):
    """A results file is missing, unreadable or malformed (the CLI says so in one line, exit status 2)."""


def atomic_write_folder(path: Path, write: Callable[[Path], None], then: str = RESUME) -> None:
    """Call write(tmp) on a temporary folder beside path, flush its files to disk, then put it in path's place.
    A failed write (a full disk, a file that cannot be saved) leaves the previous folder as it was, whole."""
    if path.exists() and not path.is_dir():
        raise UserError(f"Cannot write {path}: it is a file, not a folder; move it away, then {then}.")
    held = next(path.rglob(CYCLES), None) if path.is_dir() else None
    if held is not None:  # replacing the folder would delete them
        raise UserError(f"Cannot write {path}: it holds the results of a run ({held}), which rewriting it would "
                        f"delete; move them out of it, then {then}.")
    tmp = aside = None
    try:
        with writing(path, then):
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            write(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    with open(file, "rb+") as handle:
                        os.fsync(handle.fileno())
            os.chmod(tmp, FOLDER_MODE)
            if path.is_dir():  # a folder cannot be renamed over a non-empty one: the previous one steps aside
                aside = tmp.with_suffix(".old")
                os.rename(path, aside)
            os.rename(tmp, path)
            tmp = None
    finally:
        if tmp is not None and aside is not None and not path.exists():
            with contextlib.suppress(OSError):
                os.rename(aside, path)  # the previous folder back in its place
                aside = None
        for leftover in (tmp, aside):
            if leftover is not None:
                remove_path(leftover)


def write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> Any:
    regular_file(path, "a JSON file of the run")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not readable JSON ({err}): move it away, or start a new run with --name.") from None


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    regular_file(path, "a results table (parquet)")
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a truncated or foreign file
        raise ResultsError(f"Cannot read {path}: {path.name} is unreadable as parquet ({type(err).__name__}); "
                           "move the folder's results away or start a new run with --name.") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(f"{path} lacks the column(s) {', '.join(missing)}; it is not a results table: move the "
                           "folder's results away or start a new run with --name.")
    return table


def read_cycles(folder: Path) -> pd.DataFrame:
    """FOLDER/cycles.parquet as stored, checked: every column of CYCLE_TYPES present and convertible, one row
    per (dataset, strategy, seed, cycle); and the picks of selections.parquet beside it checked against those rows
    (check_picks). Raises ResultsError."""
    return read_results(folder)[0]


def read_results(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cycles.parquet, selections.parquet) of FOLDER, each checked (read_cycles); selections empty when absent."""
    cycles = _checked_cycles(Path(folder))
    path = Path(folder) / SELECTIONS
    if not path.exists() and not path.is_symlink():
        return cycles, pd.DataFrame()
    picks = _read_table(path, PICK_COLUMNS)
    problem = pick_problem(picks, cycles, _pool_size(Path(folder)))
    if problem:
        raise ResultsError(f"{path} holds picks a run never writes ({problem}); it was edited or written by "
                           "something else: restore it, or move the folder's results away.")
    return cycles, picks


def _pool_size(folder: Path) -> int | None:
    """The training pool's size that config.json records, or None (no config.json, or none readable)."""
    try:
        n = read_json(folder / CONFIG)["dataset"]["n_train"] if (folder / CONFIG).is_file() else None
    except (UserError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _checked_cycles(given: Path) -> pd.DataFrame:
    path = given / CYCLES
    regular_file(path, "the results table (parquet)")
    if given.is_file():
        itself = given.name == CYCLES
        raise ResultsError(f"{given} is the results file itself: pass its folder, {given.parent}." if itself
                           else f"{given} is a file: pass the folder of a run (the one that holds cycles.parquet).")
    if not path.is_file():
        raise ResultsError(f"No results to report in {given}: {path} does not exist. Pass the folder of a run "
                           "(the one that holds cycles.parquet).")
    table = _read_table(path, tuple(CYCLE_TYPES))
    try:
        table[list(CYCLE_TYPES)].astype(CYCLE_TYPES)
    except (TypeError, ValueError) as err:
        raise ResultsError(f"{path} has a value of the wrong type in {', '.join(CYCLE_TYPES)} ({err}).") from None
    problem = _range_problem(table)
    if problem:
        raise ResultsError(f"{path} holds values a run never writes ({problem}); it was edited or written by "
                           "something else: restore it, or move the folder's results away.")
    duplicates = int(table.duplicated(list(KEYS)).sum())
    if duplicates:
        raise ResultsError(f"{path} has {duplicates} duplicate row(s) for one (dataset, strategy, seed, cycle); "
                           "it was written by more than one run.")
    return table


def _range_problem(table: pd.DataFrame) -> str:
    """What in the checked columns no run can write, or '' (accuracy in 0..1 or NaN for a failed evaluation; seeds
    and cycles whole numbers from 0; labels a positive whole number; names non-empty)."""
    acc = pd.to_numeric(table["test_acc"], errors="coerce")
    finite = acc[np.isfinite(acc)]
    if ((finite < 0) | (finite > 1)).any() or np.isinf(acc).any():
        return f"test_acc {shown(acc[~acc.between(0, 1) & acc.notna()].iloc[0])} outside 0..1"
    for column, low in (("seed", 0), ("cycle", 0), ("n_labeled", 1)):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values[~np.isfinite(values) | (values < low) | (values != np.floor(values))]
        if len(bad):
            return f"{column} {shown(bad.iloc[0])}, where a whole number from {low} belongs"
    for column in ("dataset", "strategy"):
        names = table[column]
        bad = names[names.isna() | (names.astype(str).str.strip() == "")]
        if len(bad):
            return f"an empty {column} name"
    return ""


class RunStore:
    """Appends rows as cycles finish; keeps the tables in memory and rewrites each file whole (they are small).
    Opening a folder that already holds results loads them, so a re-run can resume."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / CYCLES).exists() or (self.folder / CYCLES).is_symlink():
            self._cycles, self._selections = read_results(self.folder)
        else:  # picks written before the first row (a kill between the two files): each a job's cycle 0
            self._cycles = pd.DataFrame()
            self._selections = (_read_table(self.folder / SELECTIONS, PICK_COLUMNS)
                                if (self.folder / SELECTIONS).exists() else pd.DataFrame())
        self._failures: list[dict[str, Any]] = []

    # -- rows -------------------------------------------------------------------------------------------

    def add_cycle(self, record: dict[str, Any], added: np.ndarray) -> None:
        """Store one finished cycle: its row, and the pool indices first labeled at this cycle."""
        row = pd.DataFrame([record])
        picks = pd.DataFrame({
            "run": record["run"], "strategy": record["strategy"], "seed": record["seed"],
            "cycle": record["cycle"], "rank": np.arange(added.size, dtype=np.int64), "index": added.astype(np.int64),
        })
        self._cycles = row if self._cycles.empty else pd.concat([self._cycles, row], ignore_index=True)
        self._selections = picks if self._selections.empty else pd.concat([self._selections, picks], ignore_index=True)
        self._flush()

    def drop_from(self, strategy: str, seed: int, cycle: int) -> None:
        """Forget a job's rows from `cycle` on (they will be recomputed, identically)."""
        def keep(df: pd.DataFrame) -> pd.DataFrame:
            if df.empty:
                return df
            return df[~((df["strategy"] == strategy) & (df["seed"] == seed) & (df["cycle"] >= cycle))]

        before = len(self._cycles) + len(self._selections)
        self._cycles, self._selections = keep(self._cycles), keep(self._selections)
        if len(self._cycles) + len(self._selections) != before:
            self._flush()

    def done_cycles(self, strategy: str, seed: int) -> set[int]:
        """The job's finished cycles: those with their row in cycles.parquet and their picks in selections.parquet."""
        def cycles_in(df: pd.DataFrame) -> set[int]:
            if df.empty:
                return set()
            return set(df[(df["strategy"] == strategy) & (df["seed"] == seed)]["cycle"].astype(int))

        return cycles_in(self._cycles) & cycles_in(self._selections)

    def cycles(self) -> pd.DataFrame:
        return self._cycles.copy()

    def _flush(self) -> None:
        # Selections first: a cycle whose row is in cycles.parquet has its picks on disk, whenever a kill lands.
        cycles, selections = self._cycles, self._selections
        atomic_write(self.folder / SELECTIONS, lambda tmp: selections.to_parquet(tmp, index=False))
        atomic_write(self.folder / CYCLES, lambda tmp: cycles.to_parquet(tmp, index=False))

    def remove_stale_temp_files(self) -> None:
        """Delete the temporary files of writes that a killed run left unfinished (call with the lock held)."""
        for name in (CYCLES, SELECTIONS, CONFIG, FAILURES):
            for tmp in self.folder.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
        for tmp in (self.folder / CHECKPOINTS).glob(".*.pt.*.tmp"):
            tmp.unlink(missing_ok=True)
        for leftover in (*self.folder.glob(f".{REPORT}.*.tmp"), *self.folder.glob(f".{REPORT}.*.old")):
            remove_path(leftover)  # a report write killed midway (report/ is rewritten at the end of every run)

    # -- the folder as a whole -----------------------------------------------------------------------

    @staticmethod
    def move_results_aside(folder: Path) -> Path | None:
        """Move the folder's results into previous-<time>/ inside it (--force); returns where, or None."""
        present = [Path(folder) / name for name in RESULT_FILES if (Path(folder) / name).exists()]
        if not present:
            return None
        aside = Path(folder) / f"previous-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
        return aside

    @staticmethod
    def results_present(folder: Path) -> list[str]:
        return [name for name in RESULT_FILES if (Path(folder) / name).exists()]

    @staticmethod
    def delete_results(folder: Path) -> None:
        """Delete the folder's results (--fresh, once the user said yes)."""
        for name in RESULT_FILES:
            path = Path(folder) / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # -- config and failures -------------------------------------------------------------------------

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.folder / CONFIG, config)

    def read_config(self) -> dict[str, Any] | None:
        path = self.folder / CONFIG
        if not path.exists():
            return None
        config = read_json(path)
        if not isinstance(config, dict):
            raise UserError(f"{path} is not a run configuration (a JSON object): move it away, or start a new run "
                            "with --name.")
        return config

    def add_failure(self, failure: dict[str, Any]) -> None:
        self._failures.append(failure)
        write_json(self.folder / FAILURES, self._failures)

    def clear_failures(self) -> None:
        with writing(self.folder / FAILURES):
            (self.folder / FAILURES).unlink(missing_ok=True)

    # -- checkpoints ----------------------------------------------------------------------------------

    def _checkpoint(self, strategy: str, seed: int) -> Path:
        return self.folder / CHECKPOINTS / f"{strategy}__seed{seed}.pt"

    def save_checkpoint(self, strategy: str, seed: int, state: JobState) -> None:
        path = self._checkpoint(strategy, seed)
        with writing(path.parent):
            path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda tmp: _torch_save(state.to_tensors(), tmp))

    def load_checkpoint(self, strategy: str, seed: int) -> JobState | None:
        path = regular_file(self._checkpoint(strategy, seed), "a checkpoint")
        if not path.exists():
            return None
        import torch  # here, not at the top: `report` reads the store and never a checkpoint (2 s of imports)

        from bench.training.jobs import JobState

        try:
            return JobState.from_tensors(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # unreadable: the job restarts from its first cycle (results are deterministic)
            return None

    def remove_checkpoint(self, strategy: str, seed: int) -> None:
        path = self._checkpoint(strategy, seed)
        with writing(path):
            path.unlink(missing_ok=True)


def _torch_save(payload: dict[str, Any], path: Path) -> None:
    """torch.save, a failed write raised as the OSError it is: torch's stream writer reports a full disk as a
    RuntimeError ("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), not an OSError."""
    import torch  # as in load_checkpoint: only where a checkpoint is written

    try:
        torch.save(payload, path)
    except RuntimeError as err:
        reason = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", (str(err).strip().splitlines() or [""])[0])
        raise OSError(f"torch.save failed: {reason or type(err).__name__}") from err
