"""The active-learning loop for one (strategy, seed) job.

Paired design: at one seed every strategy starts from the same initial labeled set and the same initial
weights. At each cycle every strategy draws its candidates from the same permutation of the pool, derived
from (seed, cycle): the first `subset` of its own not-yet-labeled images in that order. A fresh permutation
each cycle, as the reference code reshuffles its unlabeled set every cycle: one order for all cycles would
make successive candidate sets overlap by ~90% and leave most of the pool never scored. Differences at one
seed are then due to the strategy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from bench.core.config import Protocol
from bench.core.seeding import derive_seed, numpy_rng, seeded_globals, torch_generator
from bench.data.imbalance import pool_indices
from bench.models.backbones import AuxHead, Backbone
from bench.models.build import build_model
from bench.models.weights import load_weights, read_weights
from bench.training.jobs import CycleResult, JobSpec, JobState
from bench.training.linear_probe import HEAD
from bench.training.memory import NOT_MEASURED, PeakMemory
from bench.training.trainer import Trainer, synced_clock
from strategies import PoolInputs, Strategy, create_strategy
from strategies.base import INPUTS, StrategyOutputError


def initial_set(seed: int, n_pool: int, size: int) -> np.ndarray:
    """The initial labeled pool indices: the same for every strategy at a seed."""
    return numpy_rng(seed, "initial-set").permutation(n_pool)[:size]


def pool_order(seed: int, cycle: int, n_pool: int) -> np.ndarray:
    """The permutation from which every strategy at (seed, cycle) draws its candidates."""
    return numpy_rng(seed, "pool-order", cycle).permutation(n_pool)


def candidates(order: np.ndarray, labeled: np.ndarray, subset: int | None) -> np.ndarray:
    """The first `subset` pool indices in `order` that are not labeled (all of them when subset is None)."""
    # order: a permutation of the pool, or of an imbalanced pool's part of it (bench.data.imbalance)
    mask = np.zeros(max(order.size, int(order.max(initial=-1)) + 1, int(labeled.max(initial=-1)) + 1), dtype=bool)
    mask[labeled] = True
    unlabeled = order[~mask[order]]
    return unlabeled if subset is None else unlabeled[:subset]


def initial_model(spec: JobSpec, in_channels: int, n_classes: int,
                  input_size: tuple[int, ...] | None = None) -> Backbone:
    """The initial weights: a function of the seed alone, then the --weights file's, if any (so every seed starts
    from the same pretrained network; a classifier of another class count keeps the seed's initialisation).
    input_size: the [H, W] the model is fed (an adapted model finds its stages at it); () for vectors, whose
    in_channels is their dimension. Frozen mode trains the linear model on the backbone's embeddings (the
    --weights went into the backbone)."""
    p, seed = spec.protocol, derive_seed(spec.seed, "init-weights")
    if p.train_mode == "frozen":
        return build_model(HEAD, in_channels, n_classes, seed, ())
    model = build_model(p.model, in_channels, n_classes, seed, input_size, dict(p.model_params))
    if spec.weights:
        load_weights(model, read_weights(spec.weights, spec.weights_sha256), spec.weights, spec.protocol.model)
    return model


def make_aux(strategy: Strategy, model: Backbone, seed: int, protocol: Protocol,
             device: torch.device) -> AuxHead | None:
    """The strategy's auxiliary head, initialised from (seed, strategy), on the device; None if it has none."""
    with seeded_globals(seed, "aux-init", strategy.name):
        aux_head = strategy.aux_head(model, protocol)
    if aux_head is None and "aux_output" in strategy.needs:
        raise StrategyOutputError(f"Strategy {strategy.name!r} needs 'aux_output' but its aux_head() returned None: "
                                  "return the module whose output it scores by, or drop 'aux_output' from needs.")
    return None if aux_head is None else aux_head.to(device)


# the needs that take a model pass over the candidates (labeled_embeddings takes one over the labeled set,
# labeled_labels and the images none)
CANDIDATE_OUTPUTS = INPUTS - {"labeled_embeddings", "labeled_labels", "images", "labeled_images"}


def gather_inputs(strategy: Strategy, trainer: Trainer, model: Backbone, aux_head: AuxHead | None,
                  cand: torch.Tensor, labeled: torch.Tensor, rng: np.random.Generator) -> PoolInputs:
    """Compute once, in batched inference mode, what the strategy needs over the candidates; what it does not
    declare in `needs` stays None, so that a strategy reading an undeclared input fails in its own tests."""
    needs = strategy.needs
    inputs = PoolInputs(n=cand.numel(), rng=rng, model=model, device=trainer.device, aux_head=aux_head)
    if not needs & CANDIDATE_OUTPUTS:  # random needs none: no pass over the candidates at all
        out: dict = {}
    else:
        out = trainer.infer(model, cand, aux_head if "aux_output" in needs else None,
                            stage_features="stage_features" in needs)
    for name in ("logits", "embeddings", "stage_features", "aux_output"):
        if name in needs:
            setattr(inputs, name, out[name])
    if "probs" in needs:
        # float64: a confident prediction's top probability is 1 - 1e-9 or so, which float32 rounds to 1,
        # tying the margins and confidences of every confident candidate
        inputs.probs = torch.softmax(out["logits"].double(), dim=1)  # [n, n_classes]
    if "labeled_embeddings" in needs:
        inputs.labeled_embeddings = trainer.infer(model, labeled)["embeddings"]
    if "labeled_labels" in needs:
        inputs.labeled_labels = trainer.data.y_train[labeled]  # [L] int64
    for name, idx in (("images", cand), ("labeled_images", labeled)):
        if name in needs:  # as the network sees them, un-augmented: [n, C, H, W] float32
            setattr(inputs, name, trainer.prepare(trainer.data.train_images(idx)))
    return inputs


def start_state(spec: JobSpec, n_pool: int, labels: torch.Tensor | np.ndarray | None = None) -> JobState:
    """Cycle 0's state. labels: the training labels [n_pool], which an imbalanced protocol draws its pool from."""
    pool = pool_indices(spec.seed, labels, spec.protocol.imbalance) if spec.protocol.imbalance != 1 else None
    if pool is not None:  # the initial set drawn as initial_set draws it, from the seed's pool only
        labeled = pool[initial_set(spec.seed, pool.size, spec.protocol.initial)]
        return JobState(0, labeled, labeled)
    labeled = initial_set(spec.seed, n_pool, spec.protocol.initial)
    return JobState(0, labeled, labeled)


def job_order(spec: JobSpec, cycle: int, labels: torch.Tensor) -> np.ndarray:
    """pool_order at (seed, cycle), less what lies outside the seed's imbalanced pool (if the protocol has one)."""
    order = pool_order(spec.seed, cycle, int(labels.shape[0]))
    pool = pool_indices(spec.seed, labels, spec.protocol.imbalance) if spec.protocol.imbalance != 1 else None
    if pool is None:
        return order
    inside = np.zeros(order.size, dtype=bool)
    inside[pool] = True
    return order[inside[order]]


def _cpu_copy(module: torch.nn.Module | None) -> dict[str, torch.Tensor] | None:
    return None if module is None else {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def next_cycle(spec: JobSpec, trainer: Trainer, n_classes: int, state: JobState) -> tuple[CycleResult, JobState]:
    """Train and evaluate at state.cycle, then acquire (except at the last cycle). Each phase runs with the global
    generators seeded from (seed, phase, cycle), the selection's also from the strategy: training and evaluation
    draw alike for every strategy at a seed, whatever ran before them in this process."""
    with seeded_globals(spec.seed, "global", "cycle", spec.strategy, state.cycle, device=trainer.device):
        return _next_cycle(spec, trainer, n_classes, state)


def _next_cycle(spec: JobSpec, trainer: Trainer, n_classes: int, state: JobState) -> tuple[CycleResult, JobState]:
    p, device, data, cycle = spec.protocol, trainer.device, trainer.data, state.cycle
    strategy = create_strategy(spec.strategy, **spec.params)
    size = p.image_size
    if data.x_train.dim() == 2:  # vectors [N, d]: a vectors dataset, or frozen mode's embeddings
        model = initial_model(spec, int(data.x_train.shape[1]), n_classes, ())
    else:
        model = initial_model(spec, data.x_train.shape[1], n_classes,
                              (size, size) if size else (int(data.x_test.shape[2]), int(data.x_test.shape[3])))
    aux = make_aux(strategy, model, spec.seed, p, device)
    if p.warm_start and state.model is not None:  # cold start: every cycle from the seed's initial weights
        model.load_state_dict(state.model)
        if aux is not None and state.aux is not None:
            aux.load_state_dict(state.aux)
    model = model.to(device, memory_format=torch.channels_last)
    labeled, labeled_t = state.labeled, torch.from_numpy(state.labeled).to(device)
    with seeded_globals(spec.seed, "global", "train", cycle, device=device):
        fit = trainer.fit(model, labeled_t, torch_generator(spec.seed, "train", cycle, device=device), aux,
                          torch_generator(spec.seed, "aux-train", cycle, device=device))
    t0 = synced_clock(device)
    with seeded_globals(spec.seed, "global", "evaluate", cycle, device=device):
        test_acc, test_loss = trainer.evaluate(model)
    eval_seconds = synced_clock(device) - t0
    record: dict[str, Any] = {
        "run": spec.run, "dataset": spec.dataset, "model": p.model, "strategy": spec.strategy,
        "seed": spec.seed, "cycle": cycle, "n_labeled": int(labeled.size), "test_acc": test_acc,
        "test_loss": test_loss, "train_loss": fit.final_loss, "train_seconds": fit.seconds,
        "eval_seconds": eval_seconds, "score_seconds": 0.0,  # select_seconds holds score_seconds
        "select_seconds": 0.0, "config_hash": spec.config_hash, **NOT_MEASURED,
    }
    new = np.empty(0, dtype=np.int64)
    if cycle < p.cycles - 1:  # the last cycle acquires nothing
        meter = PeakMemory(device).start()  # the scoring pass and the pick: the selection's peak memory
        t0 = synced_clock(device)
        cand = candidates(job_order(spec, cycle, data.y_train), labeled, p.subset)
        cand_t = torch.from_numpy(cand).to(device)
        inputs = gather_inputs(strategy, trainer, model, aux, cand_t, labeled_t,
                               numpy_rng(spec.seed, "select", spec.strategy, cycle))
        # synchronised: on CUDA the pass is still queued here, and would otherwise be timed as selection
        record["score_seconds"] = synced_clock(device) - t0  # the model's pass over the candidates
        # checked here, once: a malformed output fails this job in one line instead of being truncated or cut
        picks = _checked_picks(spec.strategy, _select(spec.strategy, strategy, inputs, p.budget), cand.size,
                               p.budget)
        new = cand[picks]
        record["select_seconds"] = synced_clock(device) - t0
        record.update(meter.stop().columns())
        record.update(strategy.cycle_metrics(inputs, picks, data.y_train[cand_t]))
    record["finished_at"] = datetime.now(timezone.utc)
    after = JobState(cycle + 1, np.concatenate([labeled, new]), new, _cpu_copy(model), _cpu_copy(aux))
    return CycleResult(record, state.added), after


def run_job(spec: JobSpec, trainer: Trainer, n_classes: int) -> Iterator[CycleResult]:
    """All cycles of one job in this process, yielding each as it finishes."""
    state = start_state(spec, trainer.data.n_train, trainer.data.y_train)
    while state.cycle < spec.protocol.cycles:
        result, state = next_cycle(spec, trainer, n_classes, state)
        yield result


def _select(name: str, strategy: Strategy, inputs: PoolInputs, k: int) -> object:
    try:
        return strategy.select(inputs, k)
    except StrategyOutputError as err:  # from top_k: the scores were not one number per candidate
        raise StrategyOutputError(f"Strategy {name!r}: {err}") from None


def _checked_picks(name: str, picks: object, n: int, k: int) -> np.ndarray:
    """select()'s picks as int64 [k], or StrategyOutputError (which fails the job) unless they are exactly k
    distinct integer positions in 0..n-1: floats are not truncated, booleans are not read as 0 and 1."""
    try:
        array = np.asarray(picks.detach().cpu() if isinstance(picks, torch.Tensor) else picks)
    except (TypeError, ValueError) as err:  # a ragged list
        problem = f"something that is not an array of positions ({err})"
    else:
        problem = _picks_problem(picks, array, n, k)
    if problem:
        raise StrategyOutputError(f"Strategy {name!r}: select() returned {problem}; it must return {k} distinct "
                                  f"integer positions in 0..{n - 1}")
    return array.astype(np.int64)


def _picks_problem(picks: object, array: np.ndarray, n: int, k: int) -> str:
    """What is wrong with the picks, or '' when nothing is."""
    if isinstance(picks, (list, tuple)) and any(isinstance(p, (bool, np.bool_)) for p in picks):
        return "booleans"  # np.asarray([True, 2]) is [1, 2]
    if not np.issubdtype(array.dtype, np.integer):  # floats, bool, strings, objects
        return f"positions of type {array.dtype}"
    if array.ndim != 1:
        return f"an array of shape {list(array.shape)}"
    if array.size != k:
        return f"{array.size} positions"
    if array.min() < 0 or array.max() >= n:
        return f"positions out of range ({array.min()}..{array.max()})"
    if np.unique(array).size != k:
        return f"duplicate positions ({np.unique(array).size} distinct)"
    return ""
