import torch

from strategies.base import PoolInputs, Strategy, entropy


class Entropy(Strategy):
    """Maximum predictive entropy (Shannon 1948; as an AL baseline: Settles, AL survey, 2009)."""

    name = "entropy"
    needs = frozenset({"probs"})

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return entropy(inputs.probs)  # [n]: inputs.probs is [n, n_classes]
