"""The results store: one folder per run.

cycles.parquet (one row per strategy, seed, cycle), selections.parquet (the indices each cycle's labeled
set added, in pick order), config.json (the resolved configuration and provenance). Every file is
replaced through temp-file-and-rename, so a killed run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CYCLES = "cycles.parquet"
SELECTIONS = "selections.parquet"
CONFIG = "config.json"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside path, flush it to disk, then rename it over path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


class RunStore:
    """Appends rows as cycles finish; keeps the tables in memory and rewrites each file whole (they are small)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cycles: list[dict[str, Any]] = []
        self._selections: list[pd.DataFrame] = []

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.folder / CONFIG, config)

    def add_cycle(self, record: dict[str, Any], added: np.ndarray) -> None:
        """Store one finished cycle: its row, and the pool indices first labeled at this cycle."""
        self._cycles.append(dict(record))
        self._selections.append(pd.DataFrame({
            "run": record["run"], "strategy": record["strategy"], "seed": record["seed"],
            "cycle": record["cycle"], "rank": np.arange(added.size, dtype=np.int64),
            "index": added.astype(np.int64),
        }))
        self._flush()

    def _flush(self) -> None:
        cycles = pd.DataFrame(self._cycles)
        selections = pd.concat(self._selections, ignore_index=True)
        atomic_write(self.folder / CYCLES, lambda tmp: cycles.to_parquet(tmp, index=False))
        atomic_write(self.folder / SELECTIONS, lambda tmp: selections.to_parquet(tmp, index=False))

    def cycles(self) -> pd.DataFrame:
        return pd.DataFrame(self._cycles)
