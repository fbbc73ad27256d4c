"""What a job is and where it stands: the (strategy, seed) spec, the state between cycles, and one cycle's
result. Plain data (numpy and torch only), shared by the loop that produces it and the scheduler, store and
progress display that carry it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.core.config import Protocol


@dataclass(frozen=True)
class JobSpec:
    """One (strategy, seed) job of a run."""

    run: str
    dataset: str
    strategy: str  # canonical name
    seed: int
    protocol: Protocol
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's parameters
    config_hash: str = ""
    weights: str | None = None  # a state dict loaded into each cycle's freshly initialised model (--weights)
    weights_sha256: str = ""  # its content when the run started: a file changed since is refused

    @property
    def key(self) -> str:
        return f"{self.strategy}/seed{self.seed}"


@dataclass
class CycleResult:
    record: dict[str, Any]  # one row of cycles.parquet
    added: np.ndarray  # [k] pool indices first labeled at this cycle, in pick order (cycle 0: the initial set)


@dataclass
class JobState:
    """Where a job stands between cycles: all it takes to run the next cycle exactly as an uninterrupted
    run would (every random stream is derived from (seed, purpose, cycle), so no generator state is kept)."""

    cycle: int  # the next cycle to run
    labeled: np.ndarray  # [L] int64 pool indices, in the order they were labeled
    added: np.ndarray  # [k] int64 the indices first labeled at `cycle`
    model: dict[str, torch.Tensor] | None = None  # weights after the previous cycle (None: the initial weights)
    aux: dict[str, torch.Tensor] | None = None  # the auxiliary head's weights, likewise
    config_hash: str = ""  # the job's identity (RunConfig.job_hash) when saved: a checkpoint of another is ignored

    def to_tensors(self) -> dict[str, Any]:
        """A dict of tensors, ints and strings that torch.load(weights_only=True) reads back."""
        return {"cycle": self.cycle, "labeled": torch.from_numpy(self.labeled), "added": torch.from_numpy(self.added),
                "model": self.model or {}, "aux": self.aux or {}, "config_hash": self.config_hash}

    @classmethod
    def from_tensors(cls, d: dict[str, Any]) -> JobState:
        return cls(int(d["cycle"]), d["labeled"].numpy().astype(np.int64), d["added"].numpy().astype(np.int64),
                   d["model"] or None, d["aux"] or None, str(d.get("config_hash", "")))
