import torch

from strategies.base import PoolInputs, Strategy


class Entropy(Strategy):
    """Maximum predictive entropy (Shannon 1948; as an AL baseline: Settles, AL survey, 2009)."""

    name = "entropy"
    needs = frozenset({"probs"})

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        p = inputs.probs  # [n, n_classes]
        return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)  # [n]
