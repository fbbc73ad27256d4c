"""The strategy base class and registry.

A strategy is a subclass with a class-level `name` (registered on definition), optional `aliases`,
the inputs it `needs`, and either `score` (higher is picked first) or, for diversity methods, `select`.
The shared chores live here once: deterministic tie-breaking, non-finite scores, parameter parsing.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.config import Protocol, parse_epoch_point
from bench.errors import UserError
from bench.models import AuxHead, Backbone
from bench.registry import unknown_name

# What the loop can compute over the candidates, once per cycle, in batched inference mode.
INPUTS = frozenset({"probs", "logits", "embeddings", "labeled_embeddings", "features", "aux"})


@dataclass
class PoolInputs:
    """This cycle's candidates as the model sees them. Only the fields some strategy needs are filled."""

    n: int  # number of candidates
    rng: np.random.Generator  # derived from (seed, cycle, "select"): the strategy's only randomness
    model: Backbone  # in eval mode (BALD samples its head)
    device: torch.device
    probs: torch.Tensor | None = None  # [n, n_classes] softmax, float32
    logits: torch.Tensor | None = None  # [n, n_classes] float32
    embeddings: torch.Tensor | None = None  # [n, d] penultimate embedding, float32
    labeled_embeddings: torch.Tensor | None = None  # [L, d] the same for the labeled set
    features: list[torch.Tensor] | None = None  # per stage, globally average-pooled: [n, C_s]
    aux: torch.Tensor | None = None  # [n] the strategy's auxiliary head's output (when it needs "aux")
    aux_head: AuxHead | None = None  # the strategy's trained auxiliary head, in eval mode (BALD samples it)


_REGISTRY: dict[str, type[Strategy]] = {}
_ALIASES: dict[str, str] = {}


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract intermediate class
        unknown = set(cls.needs) - INPUTS
        if unknown:
            raise TypeError(f"strategy {cls.name!r} needs unknown inputs {sorted(unknown)}; known: {sorted(INPUTS)}")
        for key in (cls.name, *cls.aliases):
            if key in _REGISTRY or key in _ALIASES:
                owner = _ALIASES.get(key, key)
                where = sys.modules[_REGISTRY[owner].__module__].__file__
                raise UserError(f"Strategy name {key!r} is taken by {_REGISTRY[owner].__name__} in {where}; "
                                "give the new strategy another name.")
        _REGISTRY[cls.name] = cls
        _ALIASES.update({alias: cls.name for alias in cls.aliases})

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise UserError(
                f"Strategy {self.name!r} has no parameter {sorted(unknown)[0]!r} (its parameters: {known})."
            )
        for key, default in self.params.items():
            value = params.get(key, default)
            if key in self.epoch_params and isinstance(value, str):
                value = _parse(self.name, key, value, parse_epoch_point)
            setattr(self, key, _coerce(self.name, key, value, default))

    # -- what a strategy implements -------------------------------------------------------------------

    def score(self, inputs: PoolInputs) -> torch.Tensor | np.ndarray:
        """[n] informativeness; the highest are picked first."""
        raise NotImplementedError(f"{type(self).__name__} must implement score() or select()")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        """Positions (into the candidates) of the k picks, in pick order."""
        return top_k(self.score(inputs), k)

    def aux_head(self, model: Backbone, protocol: Protocol) -> AuxHead | None:
        """A module to train jointly with the backbone, or None."""
        return None

    def cycle_metrics(self, inputs: PoolInputs, picks: np.ndarray, labels: torch.Tensor) -> dict[str, float]:
        """Diagnostics stored as extra columns of this cycle's row, computed after selection from the
        candidates' true labels ([n] int64; the picks are inputs' positions picks)."""
        return {}


def top_k(scores: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores. NaN counts as the lowest score; ties go to the lower position
    (candidates come in a seeded random order, so this is a seeded, reproducible tie-break)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.arange(scores.size), -scores))  # last key is primary: highest score first
    return order[:k]


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def _parse_bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return value.lower() in ("true", "1", "yes")


_TYPE_WORDS = {bool: "boolean", int: "integer", float: "number"}


def _parse(strategy: str, key: str, value: str, parse: Any, kind: str = "epoch or fraction of the epochs") -> Any:
    try:
        return parse(value)
    except ValueError:
        raise UserError(f"Strategy parameter {strategy}.{key} must be a {kind}. Got {value!r} instead.") from None


def _coerce(strategy: str, key: str, value: Any, default: Any) -> Any:
    """Parse a command-line string to the default's type."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    kind = type(default)
    return _parse(strategy, key, value, _parse_bool if kind is bool else kind, _TYPE_WORDS.get(kind, kind.__name__))


# -------------------------------------------------------------------------------------------- registry


def canonical_name(name: str) -> str:
    """The registered name for a name or alias; unknown names are answered with the known ones."""
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    raise unknown_name("strategy", name, sorted(_REGISTRY) + sorted(_ALIASES))


def list_strategies() -> list[str]:
    """Registered names, with aliases in parentheses."""
    return [name + (f" ({', '.join(cls.aliases)})" if cls.aliases else "") for name, cls in sorted(_REGISTRY.items())]


def registered() -> dict[str, type[Strategy]]:
    return dict(_REGISTRY)


def create_strategy(name: str, **params: Any) -> Strategy:
    return _REGISTRY[canonical_name(name)](**params)


def load_strategy_file(path: Path) -> list[str]:
    """Import a user's strategy file; returns the names it registered."""
    if not path.is_file():
        raise UserError(f"Strategy file {str(path)!r} does not exist: give the path of a .py file.")
    before = set(_REGISTRY)
    module_name = f"al_bench_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"Strategy file {path} cannot be imported: it must be a Python source file (.py).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except SyntaxError as err:
        raise UserError(f"Strategy file {path} has a syntax error at line {err.lineno}: {err.msg}.") from None
    except Exception as err:
        raise UserError(f"Strategy file {path} failed to import ({type(err).__name__}: {err}).") from None
    added = sorted(set(_REGISTRY) - before)
    if not added:
        raise UserError(f"Strategy file {path} defines no strategy: subclass strategies.Strategy and set `name`.")
    return added
