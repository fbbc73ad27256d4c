import torch

from strategies.base import PoolInputs, Strategy


class Margin(Strategy):
    """Smallest gap between the two most probable classes (Scheffer et al., IDA 2001)."""

    name = "margin"
    needs = frozenset({"probs"})

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        top2 = inputs.probs.topk(2, dim=1).values  # [n, 2]
        return -(top2[:, 0] - top2[:, 1])  # [n]: small margin = high score
