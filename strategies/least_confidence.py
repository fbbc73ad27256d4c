import torch

from strategies.base import PoolInputs, Strategy


class LeastConfidence(Strategy):
    """Lowest probability of the predicted class (Lewis & Catlett, ICML 1994)."""

    name = "least-confidence"
    aliases = ("lc",)
    needs = frozenset({"probs"})

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return 1.0 - inputs.probs.max(dim=1).values  # [n]
