"""Variation ratio over MC dropout: one minus the share of dropout samples that vote for the modal class
(Freeman, 1965; as an acquisition function: Gal, Islam & Ghahramani, ICML 2017).

Held to the authors' code, Riashat/Deep-Bayesian-Active-Learning, MC_Dropout_Keras/Dropout_VarRatio_Q10_N1000_Paper.py
(scipy.stats.mode over each candidate's sampled classes). DeepAL+'s VarRatio scores 1 - max p of the network without
dropout instead: that is `least-confidence` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from strategies.bald import Bald
from strategies.base import PoolInputs


def variation_ratio(prob_samples: torch.Tensor) -> torch.Tensor:
    """[n] 1 - f_m / T from [T, n, C] sampled probabilities, f_m the number of samples whose top class is the mode
    (a value in {0, 1/T, ..., 1 - 1/T}: many candidates tie, and top_k gives ties to the lower position)."""
    votes = F.one_hot(prob_samples.argmax(dim=2), prob_samples.shape[2]).sum(dim=0)  # [n, C] samples per top class
    return 1.0 - votes.max(dim=1).values.double() / prob_samples.shape[0]


class VariationRatio(Bald):
    """Variation ratio over BALD's MC-dropout head (Gal, Islam & Ghahramani, ICML 2017).

    Parameters as BALD's: `samples` (T) and `dropout` (the head's rate, in training and in sampling)."""

    name = "variation-ratio"

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return self.mc_scores(inputs, variation_ratio)
