"""The strategy base class and registry.

A strategy is a subclass with a class-level `name` (registered on definition), optional `aliases`,
the inputs it `needs`, and either `score` (higher is picked first) or, for diversity methods, `select`.
The shared chores live here once: deterministic tie-breaking, non-finite scores, parameter parsing.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.core.config import Protocol, parse_epoch_point
from bench.core.errors import UserError
from bench.core.registry import Registry, import_user_file
from bench.models.backbones import AuxHead, Backbone

# What the loop can compute over the candidates, once per cycle, in batched inference mode: a strategy declares
# in `needs` what it reads, and only that is filled in (the rest of PoolInputs stays None).
INPUTS = frozenset({"probs", "logits", "embeddings", "labeled_embeddings", "labeled_labels", "stage_features",
                    "aux_output", "images", "labeled_images"})


@dataclass
class PoolInputs:
    """This cycle's candidates as the model sees them.

    The one rule of its None-ness: the loop fills exactly the fields a strategy names in `needs` (and `aux_head`
    for a strategy with an auxiliary head), and leaves every other one None; tests/strategies/test_base.py holds
    every registered strategy to it. A strategy may therefore read its declared fields without a None check
    (`inputs.require("probs")` narrows the type where a checker wants it). Built by hand on plain tensors, it runs
    a strategy outside the harness (tests/strategies/test_contract.py)."""

    n: int  # number of candidates
    rng: np.random.Generator  # derived from (seed, cycle, "select"): the strategy's only randomness
    model: Backbone  # in eval mode (no dropout is sampled in it: BALD samples its own auxiliary head)
    device: torch.device
    probs: torch.Tensor | None = None  # [n, n_classes] softmax, float64 (confident top probabilities stay apart)
    logits: torch.Tensor | None = None  # [n, n_classes] float32
    embeddings: torch.Tensor | None = None  # [n, d] penultimate embedding, float32
    labeled_embeddings: torch.Tensor | None = None  # [L, d] the same for the labeled set
    labeled_labels: torch.Tensor | None = None  # [L] int64 the labeled set's labels, in labeled_embeddings' order
    stage_features: list[torch.Tensor] | None = None  # per stage, globally average-pooled: [n, C_s]
    aux_output: torch.Tensor | None = None  # [n] the strategy's auxiliary head's output on the candidates
    aux_head: AuxHead | None = None  # the strategy's trained auxiliary head (when it has one), in eval mode
    # the images as the network sees them (normalised, resized when the run resizes, un-augmented), float32 on the
    # device: n x C x H x W x 4 bytes, so only for a strategy that trains a network of its own on them (VAAL)
    images: torch.Tensor | None = None  # [n, C, H, W]
    labeled_images: torch.Tensor | None = None  # [L, C, H, W] the same for the labeled set

    def require(self, name: str) -> Any:
        """The field `name`, which the strategy declared in `needs`: never None (a strategy reading a field it did
        not declare fails here, in one line, in its first test)."""
        value = getattr(self, name)
        if value is None:
            raise StrategyOutputError(f"PoolInputs.{name} was not computed: add {name!r} to the strategy's needs.")
        return value


class ContractError(UserError, TypeError):
    """A strategy class whose declarations break the contract (one line; exit status 2 from the CLI)."""


class StrategyOutputError(RuntimeError):
    """A strategy returned scores or picks that the loop cannot use. Its job fails with this one line (the
    scheduler records it in failures.json); the other jobs go on."""


def _where(cls: type) -> str:
    return f"{cls.__name__} in {getattr(sys.modules.get(cls.__module__), '__file__', None) or cls.__module__}"


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", describe=_where)


class Strategy:
    """Base class; subclassing registers the strategy under its `name`."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[frozenset[str]] = frozenset()
    params: ClassVar[dict[str, Any]] = {}  # parameter defaults; their types parse command-line strings
    # parameters measured in epochs: an int is an epoch, a float in (0, 1] a fraction of the protocol's epochs
    # (resolved to an epoch before the run starts, so the strategy itself always sees an int)
    epoch_params: ClassVar[frozenset[str]] = frozenset()
    min_batch_size: ClassVar[int] = 1  # smallest training batch it works with (2 for losses over pairs)
    # its auxiliary head's loss is meant to shape the backbone (not only to read it): it cannot run on a frozen one
    trains_backbone: ClassVar[bool] = False

    @classmethod
    def reads_stages(cls) -> bool:
        """Whether it reads the backbone's stage feature maps (it, or its auxiliary head, needs "stage_features"):
        a model without them (a ViT) is refused before any work."""
        return "stage_features" in cls.needs

    @classmethod
    def frozen_refusal(cls) -> str | None:
        """Why the strategy cannot run on a frozen backbone's embeddings (--train-mode frozen), or None."""
        if cls.reads_stages():
            return "it reads the backbone's stage feature maps, which a frozen-feature run never computes"
        if cls.trains_backbone:
            return "its auxiliary head trains the backbone, which a frozen-feature run keeps fixed"
        if cls.needs & {"images", "labeled_images"}:
            return "it reads the images, which a frozen-feature run replaces by their embeddings"
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract intermediate class
        problem = _contract_problem(cls)
        if problem:  # refused as it is defined: every job would fail on it later, one by one
            raise ContractError(f"Strategy {cls.__dict__['name']!r} ({_where(cls)}) {problem}.")
        # a subclass gets its own aliases only: its parent's already point at the parent
        STRATEGIES.add(cls.name, cls, cls.__dict__.get("aliases", ()))

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise UserError(
                f"Strategy {self.name!r} has no parameter {sorted(unknown)[0]!r} (its parameters: {known})."
            )
        resolved = {}
        for key, default in type(self).params.items():
            value = params.get(key, default)
            if key in self.epoch_params and isinstance(value, str):
                value = _parse(self.name, key, value, parse_epoch_point)
            resolved[key] = _coerce(self.name, key, value, default)
            setattr(self, key, resolved[key])
        # this instance's values: self.params[key] and self.key are one thing (the class keeps the defaults)
        self.params = resolved

    # -- what a strategy implements -------------------------------------------------------------------

    def score(self, inputs: PoolInputs) -> torch.Tensor | np.ndarray:
        """[n] informativeness; the highest are picked first."""
        raise NotImplementedError(f"{type(self).__name__} must implement score() or select()")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        """Positions (into the candidates) of the k picks, in pick order."""
        return top_k(self.score(inputs), k, inputs.n)

    def check_images(self, channels: int, height: int, width: int) -> None:
        """Refuse, with a UserError, images of a size the strategy cannot take (they are checked before any work, at
        the size the model is fed); a strategy that reads no images takes any."""

    def aux_head(self, model: Backbone, protocol: Protocol) -> AuxHead | None:
        """A module to train jointly with the backbone, or None."""
        return None

    def cycle_metrics(self, inputs: PoolInputs, picks: np.ndarray, labels: torch.Tensor) -> dict[str, float]:
        """Diagnostics stored as extra columns of this cycle's row, computed after selection from the
        candidates' true labels ([n] int64; the picks are inputs' positions picks)."""
        return {}


def _reserved(cls: type) -> set[str]:
    """The names a parameter may not take: each parameter becomes an attribute of the instance (self.<key>), which
    would hide what Strategy declares under that name (select, needs, name, ...) or a method of the class's own."""
    behaviour = (types.FunctionType, classmethod, staticmethod, property)
    own = {n for klass in cls.__mro__ if klass not in (Strategy, object)
           for n, v in vars(klass).items() if isinstance(v, behaviour)}
    return {n for n in (*vars(Strategy), *Strategy.__annotations__, *own) if not n.startswith("__")}


def _contract_problem(cls: type[Strategy]) -> str:
    """What in a strategy class's declarations the loop could not honour, or ''."""
    if isinstance(cls.__dict__.get("stage_features"), bool):  # the attribute `needs` replaced: not ignored
        return 'sets stage_features as an attribute; add "stage_features" to its needs instead'
    needs = cls.needs
    if isinstance(needs, str) or not all(isinstance(n, str) for n in needs):
        return f"declares needs {needs!r}: needs is a frozenset of input names, e.g. frozenset({{'logits'}})"
    unknown = set(needs) - INPUTS
    if unknown:
        return f"needs unknown inputs {sorted(unknown)}; known: {sorted(INPUTS)}"
    if not isinstance(cls.params, dict):
        return f"declares params {cls.params!r}: params is a dict of parameter defaults"
    for key, default in cls.params.items():  # a list or dict could neither be parsed nor kept apart per job
        if not isinstance(key, str) or not key.isidentifier():
            return f"has a parameter named {key!r}: a parameter's name must be a Python identifier"
        if default is not None and type(default) not in PARAM_TYPES:
            return (f"parameter {key!r} has a default of type {type(default).__name__}; parameters must be bool, int, "
                    "float, str or None")
    taken = sorted(set(cls.params) & _reserved(cls))
    if taken:
        return (f"has a parameter named {taken[0]!r}, which is a method or attribute of the strategy: rename the "
                "parameter")
    epoch = cls.epoch_params
    if isinstance(epoch, str) or not all(isinstance(k, str) for k in epoch):
        return f"declares epoch_params {epoch!r}: epoch_params is a frozenset of parameter names"
    missing = sorted(set(epoch) - set(cls.params))
    if missing:
        known = ", ".join(cls.params) or "none"
        return f"names {missing[0]!r} in epoch_params, which is not one of its params ({known})"
    size = cls.min_batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return f"declares min_batch_size {size!r}: it must be a positive integer (2 for losses over pairs)"
    return ""


def top_k(scores: torch.Tensor | np.ndarray, k: int, n: int | None = None) -> np.ndarray:
    """Positions of the k highest scores. NaN counts as the lowest score; ties go to the lower position
    (candidates come in a seeded random order, so this is a seeded, reproducible tie-break). The scores must be
    a float or integer vector (of length n when n is given): anything else raises StrategyOutputError."""
    scores = _score_vector(scores, n)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.arange(scores.size), -scores))  # last key is primary: highest score first
    return order[:k]


def _score_vector(scores: object, n: int | None = None) -> np.ndarray:
    """Scores as float64 [n], or StrategyOutputError: a [n, 1], [n + 1] or 2-d score would otherwise be flattened
    or cut, and picked from silently. float64, not float32: the margins of confident predictions differ below
    float32's resolution (the loop computes probabilities in float64 for that reason)."""
    want = f"a float or integer vector of shape [{'n' if n is None else n}], one score per candidate"
    if isinstance(scores, torch.Tensor):
        if scores.dtype == torch.bool or scores.is_complex():
            raise StrategyOutputError(f"the scores are of type {scores.dtype}; scores must be {want}")
        scores = scores.detach().to("cpu", torch.float64).numpy()
    try:
        scores = np.asarray(scores)
    except (TypeError, ValueError) as err:  # a ragged list
        raise StrategyOutputError(f"the scores are not an array ({err}); scores must be {want}") from None
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):  # bool is neither
        raise StrategyOutputError(f"the scores are of type {scores.dtype}; scores must be {want}")
    if scores.ndim != 1 or (n is not None and scores.size != n):
        count = "" if n is None else f" for {n} candidates"
        raise StrategyOutputError(f"the scores have shape {list(scores.shape)}{count}; scores must be {want}")
    return scores.astype(np.float64)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def _parse_bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return value.lower() in ("true", "1", "yes")


_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number"}
PARAM_TYPES = (bool, int, float, str)  # the types a parameter's default may have (or None: kept as given)


def _parse(strategy: str, key: str, value: str, parse: Any, kind: str = "an epoch or a fraction of the epochs") -> Any:
    try:
        return parse(value)
    except ValueError:
        raise UserError(f"Strategy parameter {strategy}.{key} must be {kind}. Got {value!r} instead.") from None


def _coerce(strategy: str, key: str, value: Any, default: Any) -> Any:
    """Parse a command-line string to the default's type."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    kind = type(default)
    words = _TYPE_WORDS.get(kind, f"a {kind.__name__}")
    return _parse(strategy, key, value, _parse_bool if kind is bool else kind, words)


# -------------------------------------------------------------------------------------------- registry


def list_strategies() -> list[str]:
    """Registered names, with aliases in parentheses, each with the first line of its docstring (else of its
    module's) and its parameters."""
    lines = []
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        aliases = STRATEGIES.aliases_of(name)
        head = name + (f" ({', '.join(aliases)})" if aliases else "")
        # a one-file strategy often says what it is at the top of its module: the class's own docstring first
        doc = cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", None) or ""
        about = (doc.strip().splitlines() or [""])[0]
        params = ", ".join(f"{k}={v}" for k, v in cls.params.items())
        lines.append(f"{head:<26} {about}" + (f" [{params}]" if params else ""))
    return lines


def create_strategy(name: str, **params: Any) -> Strategy:
    """The strategy registered as name (or alias), with its parameters parsed and checked."""
    return STRATEGIES.get(name)(**params)


def load_strategy_file(path: Path) -> list[str]:
    """Import a user's strategy file; returns the names it registered."""
    return import_user_file(path, STRATEGIES, "defines no strategy: subclass strategies.Strategy and set `name`.")
