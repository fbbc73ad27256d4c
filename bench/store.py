"""The results store: one folder per run.

cycles.parquet (one row per strategy, seed, cycle), selections.parquet (the indices each cycle's labeled
set added, in pick order), config.json (the resolved configuration and provenance), failures.json (when a
job failed), checkpoints/ (the state of unfinished jobs). Every file is replaced through
temp-file-and-rename, so a killed run never leaves a half-written file; re-running resumes.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.errors import UserError
from bench.loop import JobState

CYCLES = "cycles.parquet"
SELECTIONS = "selections.parquet"
CONFIG = "config.json"
FAILURES = "failures.json"
CHECKPOINTS = "checkpoints"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide results from colleagues


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside path, flush it to disk, then rename it over path.
    A failed write (a full disk, a read-only folder) leaves the previous file as it was and says so."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"Cannot write {path} ({err.strerror or err}): free disk space or fix the folder's "
                            "permissions, then run the same command again to resume (finished cycles are kept)."
                            ) from None
        raise


def write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not readable JSON ({err}): move it away, or start a new run with --name.") from None


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a truncated or foreign file
        raise UserError(f"{path} is unreadable ({type(err).__name__}); move the folder's results away or start "
                        "a new run with --name.") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(f"{path} is not a results table (it lacks {', '.join(missing)}); move the folder's "
                        "results away or start a new run with --name.")
    return table


class FolderLock:
    """An exclusive lock on a results folder, so two processes never write one folder. The lock is taken on
    the folder itself (flock on its descriptor): nothing is written, and it dies with the process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.folder} is in use by another process: wait for it to finish, or write "
                            "elsewhere with --name.") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class RunStore:
    """Appends rows as cycles finish; keeps the tables in memory and rewrites each file whole (they are small).
    Opening a folder that already holds results loads them, so a re-run can resume."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = ("strategy", "seed", "cycle")
        self._cycles = (_read_table(self.folder / CYCLES, keys) if (self.folder / CYCLES).exists()
                        else pd.DataFrame())
        self._selections = (_read_table(self.folder / SELECTIONS, (*keys, "rank", "index"))
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
        (self.folder / FAILURES).unlink(missing_ok=True)

    # -- checkpoints ----------------------------------------------------------------------------------

    def _checkpoint(self, strategy: str, seed: int) -> Path:
        return self.folder / CHECKPOINTS / f"{strategy}__seed{seed}.pt"

    def save_checkpoint(self, strategy: str, seed: int, state: JobState) -> None:
        path = self._checkpoint(strategy, seed)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(state.to_tensors(), tmp))

    def load_checkpoint(self, strategy: str, seed: int) -> JobState | None:
        path = self._checkpoint(strategy, seed)
        if not path.exists():
            return None
        try:
            return JobState.from_tensors(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # unreadable: the job restarts from its first cycle (results are deterministic)
            return None

    def remove_checkpoint(self, strategy: str, seed: int) -> None:
        self._checkpoint(strategy, seed).unlink(missing_ok=True)
