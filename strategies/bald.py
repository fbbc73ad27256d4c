"""BALD: mutual information between the prediction and the weights, by MC dropout
(Houlsby et al., arXiv 2011; Gal, Islam & Ghahramani, ICML 2017).

BALD = H[mean_t p_t] - mean_t H[p_t] over T dropout samples p_t; probabilities are averaged, not logits.
The backbone runs once (the loop's embeddings); only the head is sampled:
p_t = softmax(classifier(dropout_t(embedding))). The backbones are trained without dropout, so this is
dropout at inference on the classifier's input only (see the class docstring).
"""

from __future__ import annotations

import torch

from bench.errors import UserError
from strategies.base import PoolInputs, Strategy

CHUNK_ROWS = 512  # candidates per batch of T head samples: bounds the [chunk, d] masks, fixes the draw order


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def bald_score(prob_samples: torch.Tensor) -> torch.Tensor:
    """[n] mutual information from [T, n, C] sampled class probabilities (computed in float64, clamped at 0
    against rounding: it is non-negative by Jensen's inequality)."""
    p = prob_samples.double()
    return (entropy(p.mean(dim=0)) - entropy(p).mean(dim=0)).clamp_min(0.0)


def mc_dropout_probs(classifier: torch.nn.Module, embeddings: torch.Tensor, samples: int, rate: float,
                     generator: torch.Generator) -> torch.Tensor:
    """[T, n, C] softmax(classifier(dropout(embeddings))) with T independent inverted-dropout masks."""
    weight = next(classifier.parameters())
    x = embeddings.to(weight.device, weight.dtype) / (1.0 - rate)  # [n, d], scaled once for all masks
    out = []
    for _ in range(samples):
        # keep with probability 1 - rate; uniform_ + ge_ in place is several times faster than bernoulli_ on CPU
        dropped = torch.empty_like(x).uniform_(generator=generator).ge_(rate).mul_(x)  # [n, d]
        out.append(torch.softmax(classifier(dropped).float(), dim=1))  # [n, C]
    return torch.stack(out)


class Bald(Strategy):
    """Bayesian Active Learning by Disagreement with MC dropout (Gal, Islam & Ghahramani, ICML 2017).

    Parameters: `samples` (T, dropout samples) and `dropout` (the rate p on the classifier's input).
    A first version: the backbones are trained without dropout, so the masks perturb a head that never saw
    them; scores rank how much a candidate's prediction depends on which embedding features survive.
    """

    name = "bald"
    needs = frozenset({"embeddings"})
    params = {"samples": 20, "dropout": 0.5}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.samples < 1:
            raise UserError(f"The 'bald.samples' parameter must be a positive integer. Got {self.samples} instead.")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"The 'bald.dropout' parameter must be in [0, 1). Got {self.dropout} instead.")

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        classifier, emb = inputs.model.classifier, inputs.embeddings  # emb: [n, d]
        generator = torch.Generator(next(classifier.parameters()).device)
        generator.manual_seed(int(inputs.rng.integers(2**63 - 1)))
        with torch.no_grad():
            return torch.cat([
                bald_score(mc_dropout_probs(classifier, emb[r:r + CHUNK_ROWS], self.samples, self.dropout, generator))
                for r in range(0, inputs.n, CHUNK_ROWS)
            ])  # [n]
