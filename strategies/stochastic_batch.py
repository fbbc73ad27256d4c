"""Stochastic batch acquisition (Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal, TMLR 2023).

Instead of the top k of a score s, k candidates are drawn without replacement, one after another, with
probabilities proportional to s_i^β (power), exp(β s_i) (softmax) or r_i^-β (soft-rank; r_i the rank of s_i,
1 for the highest, tied scores sharing their mean rank). The draw is the Gumbel-top-k trick: the k largest of
log w_i + g_i, with g_i standard Gumbel noise, are such a draw in pick order (Kool, van Hoof & Welling, ICML 2019).
β = 0 is uniform sampling; β -> inf tends to the base's top k.

Held to baal (baal-org/baal, baal/active/heuristics/stochastics.py: PowerSampling, GibbsSampling, RankBasedSampling;
their temperature is 1 / β). One difference: where fewer than k candidates have a non-zero weight (power
sampling over scores of 0), baal draws the whole batch uniformly; here the weighted ones come first, then the
rest in the noise's order.

Any strategy with a `score` can be wrapped, a user's own too (a strategy file may hold both):

    class PowerMine(StochasticBatch):
        '''Power sampling over my score (Kirsch et al., TMLR 2023).'''
        name, base, mode = "power-mine", "my-strategy", "power"

or, the same in one line, `stochastic("power", "my-strategy")`. The wrapper takes its base's needs, auxiliary head
and parameters, and adds `beta`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

import strategies.bald  # noqa: F401 - registered before they are wrapped below
import strategies.entropy  # noqa: F401
from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import AuxHead, Backbone
from strategies.base import STRATEGIES, PoolInputs, Strategy, StrategyOutputError, _score_vector, create_strategy

MODES = ("power", "softmax", "softrank")


def log_weights(scores: np.ndarray, mode: str, beta: float) -> np.ndarray:
    """[n] log of the unnormalised sampling weights of [n] scores; -inf is a weight of 0 (power over a score of 0).
    NaN counts as the lowest score, as in top_k."""
    if beta == 0:
        return np.zeros(scores.size)  # s^0 = exp(0) = r^0 = 1: uniform (and no 0 * -inf)
    lowest = np.where(np.isnan(scores), -np.inf, scores)
    if mode == "softmax":
        return beta * lowest
    if mode == "softrank":
        from scipy.stats import rankdata  # on use: --help and a dry run import no scipy

        return -beta * np.log(rankdata(-lowest))  # rank 1 = the highest score
    if (scores < 0).any():
        raise StrategyOutputError(f"power sampling needs scores >= 0; the lowest is {np.nanmin(scores):.6g}: "
                                  "use softmax or softrank sampling over this score")
    with np.errstate(divide="ignore"):
        return beta * np.log(np.where(np.isnan(scores), 0.0, scores))


def gumbel_top_k(log_w: np.ndarray, k: int, gumbel: np.ndarray) -> np.ndarray:
    """Positions of the k largest log_w + gumbel ([n] each): k draws without replacement from p ∝ exp(log_w), in
    pick order. Candidates of weight 0 come after all others, ordered by their noise alone."""
    key = log_w + gumbel
    return np.lexsort((-gumbel, -key))[:k]  # last key first: the perturbed log weight, then the noise


class StochasticBatch(Strategy):
    """Abstract: a subclass names its `base` strategy (one with a score) and its `mode` (one of MODES)."""

    base: ClassVar[str]
    mode: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "name" in cls.__dict__:  # a concrete wrapper: it needs what its base needs, and trains its head
            if cls.mode not in MODES:
                raise TypeError(f"strategy {cls.name!r} has mode {cls.mode!r}; choose one of {', '.join(MODES)}")
            inner = STRATEGIES.get(cls.base)
            if inner.score is Strategy.score:
                raise TypeError(f"strategy {cls.name!r} wraps {cls.base!r}, which has no score() to sample by")
            if "beta" in inner.params:
                raise TypeError(f"strategy {cls.name!r} wraps {cls.base!r}, whose own parameter 'beta' it would hide")
            cls.needs, cls.params = inner.needs, {**inner.params, "beta": 1.0}
            cls.epoch_params, cls.min_batch_size = inner.epoch_params, inner.min_batch_size
            cls.trains_backbone = inner.trains_backbone
        super().__init_subclass__(**kwargs)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0 <= self.beta < np.inf:
            raise UserError(f"The '{self.name}.beta' parameter must be a finite number >= 0. Got {self.beta} instead.")
        self.inner = create_strategy(self.base, **{k: v for k, v in self.params.items() if k != "beta"})

    def aux_head(self, model: Backbone, protocol: Protocol) -> AuxHead | None:
        return self.inner.aux_head(model, protocol)

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        scores = _score_vector(self.inner.score(inputs), inputs.n)  # [n] float64
        return gumbel_top_k(log_weights(scores, self.mode, self.beta), k, inputs.rng.gumbel(size=inputs.n))

    def cycle_metrics(self, inputs: PoolInputs, picks: np.ndarray, labels: Any) -> dict[str, float]:
        return self.inner.cycle_metrics(inputs, picks, labels)


LAWS = {"power": "p ∝ s^β", "softmax": "p ∝ exp(β s)", "softrank": "p ∝ rank(s)^-β"}


def stochastic(mode: str, base: str, name: str | None = None) -> type[StochasticBatch]:
    """Register `mode` sampling over the strategy registered as `base`, as `name` (default "{mode}-{base}")."""
    title = f"{mode.capitalize()}Over{base.title().replace('-', '')}"
    doc = f"{mode.capitalize()} sampling over {base}, {LAWS.get(mode, '')} (Kirsch et al., TMLR 2023)."
    return type(title, (StochasticBatch,), {"name": name or f"{mode}-{base}", "base": base, "mode": mode,
                                             "__doc__": doc, "__module__": __name__})


for _base in ("entropy", "bald"):  # power-entropy, softmax-entropy, softrank-entropy, power-bald, ...
    for _mode in MODES:
        stochastic(_mode, _base)
