"""BALD: mutual information between the prediction and the weights, by MC dropout
(Houlsby et al., arXiv 2011; Gal, Islam & Ghahramani, ICML 2017).

BALD = H[mean_t p_t] - mean_t H[p_t] over T dropout samples p_t; probabilities are averaged, not logits.
MC dropout approximates a Bayesian posterior only for a network trained with the same dropout, so BALD
trains its own classifier with dropout on its input, through the auxiliary-head hook, on the backbone's
detached embedding: the backbone trains exactly as it does for every other strategy (and its results do not
depend on which strategies run beside it), while the sampled head is one that was trained with its masks.
At selection the backbone runs once (the loop's embeddings) and only that head is sampled:
p_t = softmax(head(dropout_t(embedding))).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import AuxHead, Backbone, ModelOutput, full_precision
from strategies.base import PoolInputs, Strategy, entropy

CHUNK_ROWS = 512  # candidates per batch of T head samples: bounds the [chunk, d] masks, fixes the draw order


def bald_score(prob_samples: torch.Tensor) -> torch.Tensor:
    """[n] mutual information from [T, n, C] sampled class probabilities (computed in float64, clamped at 0
    against rounding: it is non-negative by Jensen's inequality)."""
    p = prob_samples.double()
    return (entropy(p.mean(dim=0)) - entropy(p).mean(dim=0)).clamp_min(0.0)


def dropout(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout with the masks drawn from `generator` (keep with probability 1 - rate)."""
    # uniform_ + ge_ in place is several times faster than bernoulli_ on CPU
    keep = torch.empty_like(x).uniform_(generator=generator).ge_(rate)
    return keep.mul_(x).div_(1.0 - rate)


def mc_dropout_probs(classifier: nn.Module, embeddings: torch.Tensor, samples: int, rate: float,
                     generator: torch.Generator) -> torch.Tensor:
    """[T, n, C] softmax(classifier(dropout(embeddings))) with T independent inverted-dropout masks."""
    weight = next(classifier.parameters())
    x = embeddings.to(weight.device, weight.dtype)  # [n, d]
    return torch.stack([torch.softmax(classifier(dropout(x, rate, generator)).float(), dim=1)
                        for _ in range(samples)])


class DropoutHead(AuxHead):
    """A linear classifier with dropout on its input, trained on the backbone's detached embedding."""

    def __init__(self, embedding_dim: int, n_classes: int, rate: float) -> None:
        super().__init__()
        self.classifier = nn.Linear(embedding_dim, n_classes)
        self.rate = rate

    def training_loss(self, out: ModelOutput, per_sample_loss: torch.Tensor, labels: torch.Tensor, epoch: int,
                      generator: torch.Generator) -> torch.Tensor:
        with full_precision(out.embedding):
            x = dropout(out.embedding.detach().float(), self.rate, generator)  # no gradient reaches the backbone
            return F.cross_entropy(self.classifier(x), labels)


class Bald(Strategy):
    """Bayesian Active Learning by Disagreement with MC dropout (Gal, Islam & Ghahramani, ICML 2017).

    Parameters: `samples` (T, dropout samples) and `dropout` (the rate p on the head's input, in training
    and in sampling alike)."""

    name = "bald"
    needs = frozenset({"embeddings"})
    params = {"samples": 20, "dropout": 0.5}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.samples < 1:
            raise UserError(f"The '{self.name}.samples' parameter must be a positive integer. "
                            f"Got {self.samples} instead.")
        if not 0.0 < self.dropout < 1.0:
            raise UserError(f"The '{self.name}.dropout' parameter must be in (0, 1). Got {self.dropout} instead.")

    def aux_head(self, model: Backbone, protocol: Protocol) -> AuxHead:
        return DropoutHead(model.embedding_dim, model.classifier.out_features, self.dropout)

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return self.mc_scores(inputs, bald_score)

    def mc_scores(self, inputs: PoolInputs, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """[n] reduce([T, chunk, C] MC-dropout probabilities of the head) chunk by chunk over the candidates: the
        other scores over these samples (variation ratio, mean STD) subclass BALD and pass their own reduce."""
        classifier, emb = inputs.aux_head.classifier, inputs.embeddings  # emb: [n, d]
        generator = torch.Generator(emb.device)
        generator.manual_seed(int(inputs.rng.integers(2**63 - 1)))
        with torch.no_grad():
            return torch.cat([
                reduce(mc_dropout_probs(classifier, emb[r:r + CHUNK_ROWS], self.samples, self.dropout, generator))
                for r in range(0, inputs.n, CHUNK_ROWS)
            ])  # [n]
