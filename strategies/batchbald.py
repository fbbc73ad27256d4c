"""BatchBALD: a batch picked greedily by the joint mutual information of its labels and the weights, over MC
dropout (Kirsch, van Amersfoort & Gal, NeurIPS 2019).

Held to the authors' batchbald_redux (github.com/BlackHC/batchbald_redux, commit e56c260, `batchbald.py`
`get_batchbald_batch` over `joint_entropy.py`'s `DynamicJointEntropy`, `ExactJointEntropy` and
`SampledJointEntropy`; fixture tests/fixtures/batchbald.npz). Over BALD's K MC-dropout samples p(y | x, w_k) of its
head (K = `samples`), the pick after x_1..x_n maximises

    a(x) = H[y_1, ..., y_n, y] - sum_i H[y_i | w] - H[y | w]

(joint entropy under the mean of the K samples, conditional entropies averaged over them), so the first pick is
BALD's and a candidate that repeats a pick scores only what a second label of it would add. While the C^n
configurations of the picks so far number at most `max_exact`, the joint entropy is exact, from a [C^n, K] table of
each configuration's probability under each sample; beyond, `num_samples` // K configurations are drawn from each
sample's joint (afresh at each pick, as there) and the entropy is their importance-weighted mean.

Parameters: BALD's `samples` and `dropout`; `num_samples`, the sampled configurations (the reference's name;
default 1000, not its 100000: a pick costs candidates x num_samples x C x K multiply-adds, 6 to 9 s a pick at
10k candidates x 10 classes x 20 samples on a loaded 2-core CPU (docs/strategies.md), and 100 times that at 100000;
on 10 classes 1000 keeps the first four picks exact); `max_exact`, the switch, 0 (default) for the reference's rule,
exact while C^n <= num_samples. Randomness: the dropout masks and the draws, from the cycle's `inputs.rng`.

No deviation in the values. Numerics: the sampled table's rows are divided by their largest entry and its log is
added back exactly (the entropy's importance weights are scale-free), so a long batch's configuration
probabilities do not underflow to 0 / 0, where the reference's product does; ties go to the lowest candidate
position. Memory: the [n, K, C] samples, plus blocks of at most CHUNK_ELEMENTS joint probabilities.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import UserError
from strategies.bald import Bald
from strategies.base import PoolInputs, entropy

CHUNK_ELEMENTS = 2**22  # [configurations, candidates, classes] joint probabilities in one block: 32 MiB in float64


def joint_entropies(probs: torch.Tensor, table: torch.Tensor, weights: torch.Tensor,
                    log_scale: torch.Tensor | None = None) -> torch.Tensor:
    """[n] sum_m weights_m sum_c -p_mc log p_mc for each candidate, p_mc = mean_k table_mk probs_kc (the joint
    probability of configuration m of the picks and class c of the candidate), from probs [n, K, C] and table
    [M, K]. A row m scaled by exp(-log_scale_m) [M] is scaled back inside the log."""
    n, k, c = probs.shape
    m = table.shape[0]
    rows = max(1, CHUNK_ELEMENTS // (m * c))
    out = torch.empty(n, dtype=table.dtype, device=table.device)
    for r in range(0, n, rows):
        block = probs[r:r + rows].transpose(0, 1).reshape(k, -1)  # [K, b * C]
        joint = (table @ block).div_(k).view(m, -1, c)  # [M, b, C]
        h = torch.special.xlogy(joint, joint).neg_().sum(2)  # [M, b]
        if log_scale is not None:  # -p log p with p = p' e^s: -p' (log p' + s), the weights carrying 1 / e^s
            h.sub_(log_scale[:, None] * joint.sum(2))
        out[r:r + rows] = weights @ h
    return out


def sampled_table(batch: torch.Tensor, per_sample: int, generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
    """(table [K * S, K], log_scale [K * S]): S = per_sample configurations of the picks' labels drawn from each
    sample k' (as the reference's `SampledJointEntropy.sample`: one multinomial over batch [n, K, C] as n * K rows),
    each row the configuration's probability under every sample k, divided by its largest (log_scale its log)."""
    n, k, c = batch.shape
    draws = torch.multinomial(batch.reshape(n * k, c), per_sample, replacement=True, generator=generator)
    draws = draws.view(n, k * per_sample)  # configuration (k', s) -> its class for each pick
    log_p = batch.log()  # [n, K, C]
    log_table = torch.zeros(k, k * per_sample, dtype=batch.dtype, device=batch.device)
    for i in range(n):
        log_table += log_p[i][:, draws[i]]  # [K, K * S]
    log_table = log_table.T  # [M, K]
    log_scale = log_table.max(dim=1).values  # finite: a configuration is likely under the sample that drew it
    return log_table.sub_(log_scale[:, None]).exp_(), log_scale


def batchbald(probs: torch.Tensor, k: int, num_samples: int, max_exact: int,
              generator: torch.Generator) -> tuple[list[int], list[float]]:
    """(positions in pick order, their BatchBALD scores) of min(k, n) greedy picks from probs [n, K, C]
    (float64 MC samples): exact joint entropies while C^picks <= max_exact, else num_samples // K draws per sample."""
    n, n_samples, c = probs.shape
    conditional = entropy(probs).mean(dim=1)  # [n] H[y | w]
    table = torch.ones(1, n_samples, dtype=probs.dtype, device=probs.device)  # [M, K]: no pick yet, one configuration
    weights, log_scale = torch.ones(1, dtype=probs.dtype, device=probs.device), None
    picks: list[int] = []
    scores: list[float] = []
    for _ in range(min(k, n)):
        if picks and c ** len(picks) <= max_exact:  # every configuration of the picks, times the newest's classes
            table = (table[:, None, :] * probs[picks[-1]].T[None]).reshape(-1, n_samples)  # [M * C, K]
            weights = torch.ones(table.shape[0], dtype=probs.dtype, device=probs.device)
        elif picks:
            table, log_scale = sampled_table(probs[picks], num_samples // n_samples, generator)
            weights = table.mean(dim=1).mul_(table.shape[0]).reciprocal_()  # 1 / (M q_m)
        score = joint_entropies(probs, table, weights, log_scale) - conditional - conditional[picks].sum()
        score = torch.nan_to_num(score, nan=-torch.inf)
        score[picks] = -torch.inf
        best = int(torch.argmax(score))  # the first of equal maxima: the lowest position
        picks.append(best)
        scores.append(float(score[best]))
    return picks, scores


def _by_candidate(prob_samples: torch.Tensor) -> torch.Tensor:
    """[chunk, K, C] float64 from BALD's [K, chunk, C] samples: concatenated over the chunks, all of them."""
    return prob_samples.transpose(0, 1).double()


class BatchBald(Bald):
    """BatchBALD over BALD's MC-dropout head (Kirsch, van Amersfoort & Gal, NeurIPS 2019).

    Parameters: BALD's `samples` (K) and `dropout`; `num_samples` (configurations drawn for the sampled joint
    entropy, at least K) and `max_exact` (exact while C^picks <= max_exact; 0: num_samples, the reference's rule)."""

    name = "batchbald"
    params = {**Bald.params, "num_samples": 1000, "max_exact": 0}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if not _is_int(self.num_samples) or self.num_samples < self.samples:
            raise UserError(f"The 'batchbald.num_samples' parameter must be an integer of at least "
                            f"batchbald.samples ({self.samples}), one draw per dropout sample. "
                            f"Got {self.num_samples!r} instead.")
        if not _is_int(self.max_exact) or self.max_exact < 0:
            raise UserError(f"The 'batchbald.max_exact' parameter must be a non-negative integer (0: num_samples). "
                            f"Got {self.max_exact!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        probs = self.mc_scores(inputs, _by_candidate)  # [n, K, C]
        generator = torch.Generator(probs.device)
        generator.manual_seed(int(inputs.rng.integers(2**63 - 1)))  # after the masks' seed: a stream of its own
        picks, _ = batchbald(probs, k, self.num_samples, self.max_exact or self.num_samples, generator)
        return np.asarray(picks, dtype=np.int64)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
