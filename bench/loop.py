"""The active-learning loop for one (strategy, seed) job.

Paired design: at one seed every strategy starts from the same initial labeled set and the same initial
weights. At each cycle every strategy draws its candidates from the same permutation of the pool, derived
from (seed, cycle): the first `subset` of its own not-yet-labeled images in that order. A fresh permutation
each cycle, as the reference code reshuffles its unlabeled set every cycle: one order for all cycles would
make successive candidate sets overlap by ~90% and leave most of the pool never scored. Differences at one
seed are then due to the strategy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from bench.config import Protocol
from bench.models import AuxHead, Backbone, create_model
from bench.seeding import derive_seed, numpy_rng, torch_generator
from bench.trainer import Trainer
from strategies import PoolInputs, Strategy, create_strategy


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

    @property
    def key(self) -> str:
        return f"{self.strategy}/seed{self.seed}"


@dataclass
class CycleResult:
    record: dict[str, Any]  # one row of cycles.parquet
    added: np.ndarray  # [k] pool indices first labeled at this cycle, in pick order (cycle 0: the initial set)


def initial_set(seed: int, n_pool: int, size: int) -> np.ndarray:
    """The initial labeled pool indices: the same for every strategy at a seed."""
    return numpy_rng(seed, "initial-set").permutation(n_pool)[:size]


def pool_order(seed: int, cycle: int, n_pool: int) -> np.ndarray:
    """The permutation from which every strategy at (seed, cycle) draws its candidates."""
    return numpy_rng(seed, "pool-order", cycle).permutation(n_pool)


def candidates(order: np.ndarray, labeled: np.ndarray, subset: int | None) -> np.ndarray:
    """The first `subset` pool indices in `order` that are not labeled (all of them when subset is None)."""
    mask = np.zeros(order.size, dtype=bool)
    mask[labeled] = True
    unlabeled = order[~mask[order]]
    return unlabeled if subset is None else unlabeled[:subset]


def initial_model(spec: JobSpec, in_channels: int, n_classes: int) -> Backbone:
    """The initial weights: a function of the seed alone."""
    return create_model(spec.protocol.model, in_channels, n_classes, derive_seed(spec.seed, "init-weights"))


def make_aux(strategy: Strategy, model: Backbone, seed: int, protocol: Protocol,
             device: torch.device) -> AuxHead | None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "aux-init", strategy.name))
        aux = strategy.aux_head(model, protocol)
    return None if aux is None else aux.to(device)


def gather_inputs(strategy: Strategy, trainer: Trainer, model: Backbone, aux: AuxHead | None,
                  cand: torch.Tensor, labeled: torch.Tensor, rng: np.random.Generator) -> PoolInputs:
    """Compute once, in batched inference mode, what the strategy needs over the candidates."""
    needs = strategy.needs
    out = trainer.infer(model, cand, aux if "aux" in needs else None, features="features" in needs)
    inputs = PoolInputs(n=cand.numel(), rng=rng, model=model, device=trainer.device,
                        logits=out["logits"], embeddings=out["embeddings"],
                        features=out.get("features"), aux=out.get("aux"), aux_head=aux)
    if "probs" in needs:
        # float64: a confident prediction's top probability is 1 - 1e-9 or so, which float32 rounds to 1,
        # tying the margins and confidences of every confident candidate
        inputs.probs = torch.softmax(out["logits"].double(), dim=1)  # [n, n_classes]
    if "labeled_embeddings" in needs:
        inputs.labeled_embeddings = trainer.infer(model, labeled)["embeddings"]
    return inputs


@dataclass
class JobState:
    """Where a job stands between cycles: all it takes to run the next cycle exactly as an uninterrupted
    run would (every random stream is derived from (seed, purpose, cycle), so no generator state is kept)."""

    cycle: int  # the next cycle to run
    labeled: np.ndarray  # [L] int64 pool indices, in the order they were labeled
    added: np.ndarray  # [k] int64 the indices first labeled at `cycle`
    model: dict[str, torch.Tensor] | None = None  # weights after the previous cycle (None: the initial weights)
    aux: dict[str, torch.Tensor] | None = None  # the auxiliary head's weights, likewise

    def to_tensors(self) -> dict[str, Any]:
        """A dict of tensors and ints that torch.load(weights_only=True) reads back."""
        return {"cycle": self.cycle, "labeled": torch.from_numpy(self.labeled), "added": torch.from_numpy(self.added),
                "model": self.model or {}, "aux": self.aux or {}}

    @classmethod
    def from_tensors(cls, d: dict[str, Any]) -> JobState:
        return cls(int(d["cycle"]), d["labeled"].numpy().astype(np.int64), d["added"].numpy().astype(np.int64),
                   d["model"] or None, d["aux"] or None)


def start_state(spec: JobSpec, n_pool: int) -> JobState:
    labeled = initial_set(spec.seed, n_pool, spec.protocol.initial)
    return JobState(0, labeled, labeled)


def _cpu_copy(module: torch.nn.Module | None) -> dict[str, torch.Tensor] | None:
    return None if module is None else {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def run_cycle(spec: JobSpec, trainer: Trainer, n_classes: int, state: JobState) -> tuple[CycleResult, JobState]:
    """Train and evaluate at state.cycle, then acquire (except at the last cycle)."""
    p, device, data, cycle = spec.protocol, trainer.device, trainer.data, state.cycle
    strategy = create_strategy(spec.strategy, **spec.params)
    model = initial_model(spec, data.x_train.shape[1], n_classes)
    aux = make_aux(strategy, model, spec.seed, p, device)
    if p.warm_start and state.model is not None:  # cold start: every cycle from the seed's initial weights
        model.load_state_dict(state.model)
        if aux is not None and state.aux is not None:
            aux.load_state_dict(state.aux)
    model = model.to(device, memory_format=torch.channels_last)
    labeled, labeled_t = state.labeled, torch.from_numpy(state.labeled).to(device)
    fit = trainer.fit(model, labeled_t, torch_generator(spec.seed, "train", cycle, device=device), aux,
                      torch_generator(spec.seed, "aux-train", cycle, device=device))
    test_acc, test_loss = trainer.evaluate(model)
    record: dict[str, Any] = {
        "run": spec.run, "dataset": spec.dataset, "model": p.model, "strategy": spec.strategy,
        "seed": spec.seed, "cycle": cycle, "n_labeled": int(labeled.size), "test_acc": test_acc,
        "test_loss": test_loss, "train_loss": fit.final_loss, "train_seconds": fit.seconds,
        "select_seconds": 0.0, "config_hash": spec.config_hash,
    }
    new = np.empty(0, dtype=np.int64)
    if cycle < p.cycles - 1:  # the last cycle acquires nothing
        t0 = time.perf_counter()
        cand = candidates(pool_order(spec.seed, cycle, data.n_train), labeled, p.subset)
        cand_t = torch.from_numpy(cand).to(device)
        inputs = gather_inputs(strategy, trainer, model, aux, cand_t, labeled_t,
                               numpy_rng(spec.seed, "select", spec.strategy, cycle))
        picks = np.asarray(strategy.select(inputs, p.budget), dtype=np.int64)
        _check_picks(spec, picks, cand.size, p.budget)
        new = cand[picks]
        record["select_seconds"] = time.perf_counter() - t0
        record.update(strategy.cycle_metrics(inputs, picks, data.y_train[cand_t]))
    record["finished_at"] = datetime.now(timezone.utc)
    after = JobState(cycle + 1, np.concatenate([labeled, new]), new, _cpu_copy(model), _cpu_copy(aux))
    return CycleResult(record, state.added), after


def run_job(spec: JobSpec, trainer: Trainer, n_classes: int) -> Iterator[CycleResult]:
    """All cycles of one job in this process, yielding each as it finishes."""
    state = start_state(spec, trainer.data.n_train)
    while state.cycle < spec.protocol.cycles:
        result, state = run_cycle(spec, trainer, n_classes, state)
        yield result


def _check_picks(spec: JobSpec, picks: np.ndarray, n: int, budget: int) -> None:
    if picks.size != budget or np.unique(picks).size != budget or picks.min() < 0 or picks.max() >= n:
        raise RuntimeError(f"strategy {spec.strategy!r} returned {picks.size} picks ({np.unique(picks).size} "
                           f"distinct, range {picks.min()}..{picks.max()}) for a budget of {budget} "
                           f"among {n} candidates")

