"""Mean STD over MC dropout: the per-class standard deviation of the sampled probabilities, averaged over the
classes (Kampffmeyer, Salberg & Jenssen, CVPR workshops 2016; in Gal, Islam & Ghahramani, ICML 2017).

Held to DeepAL+ (SineZHAN/deepALplus, query_strategies/mean_std.py, MeanSTD.query): np.std over the dropout samples
(the population deviation, ddof = 0), then the mean over classes.
"""

from __future__ import annotations

import torch

from strategies.bald import Bald
from strategies.base import PoolInputs


def mean_std(prob_samples: torch.Tensor) -> torch.Tensor:
    """[n] mean over classes of the standard deviation over samples (ddof = 0), from [T, n, C], in float64."""
    # two passes in place on one copy: torch's std over the leading axis is about 4x slower on CPU
    dev = prob_samples.to(torch.float64, copy=True)  # [T, n, C]
    dev.sub_(dev.mean(dim=0))
    return dev.mul_(dev).mean(dim=0).sqrt_().mean(dim=1)


class MeanStd(Bald):
    """Mean standard deviation of MC-dropout probabilities (Kampffmeyer et al., CVPRW 2016; Gal et al., ICML 2017).

    Parameters as BALD's: `samples` (T) and `dropout` (the head's rate, in training and in sampling)."""

    name = "mean-std"

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return self.mc_scores(inputs, mean_std)
