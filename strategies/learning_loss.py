"""Learning loss: pick the candidates whose loss a jointly trained module predicts to be highest.

Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019; reference code:
https://github.com/Mephisto405/Learning-Loss-for-Active-Learning
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol, resolve_epoch
from bench.core.errors import UserError
from bench.models.backbones import AuxHead, Backbone, ModelOutput, full_precision
from strategies.base import PoolInputs, Strategy

LOSSES = ("ranking", "mse")


def loss_prediction_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The pairwise ranking loss of Eq. 2, averaged over pairs. predicted, target: [B] -> scalar.

    Element i is paired with element B-1-i (the batch against its flip, as the reference code does); an odd
    batch leaves its middle sample out, a batch of 1 gives a zero that is still part of the graph. The target
    losses are detached; the sign is +1 where l_i > l_j and -1 otherwise (ties count as -1, as in the
    reference code's 2 * sign(clamp(l_i - l_j, min=0)) - 1)."""
    half = predicted.shape[0] // 2
    if half == 0:
        return predicted.sum() * 0.0  # nothing to rank, but keep the graph (and the backward pass) intact
    target = target.detach()
    p_diff = predicted[:half] - predicted.flip(0)[:half]  # [half] p_i - p_{B-1-i}
    sign = torch.where(target[:half] > target.flip(0)[:half], 1.0, -1.0)  # [half]
    return torch.clamp(margin - sign * p_diff, min=0).mean()


def mse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's ablation: mean squared error between predicted and (detached) target losses. [B] -> scalar."""
    return F.mse_loss(predicted, target.detach())


class LossPredictionModule(AuxHead):
    """The loss-prediction module (paper Fig. 2): for each backbone stage, global average pooling, a fully
    connected layer to 128 units and ReLU; the stage outputs concatenated, then a linear layer to one scalar.
    It runs in fp32 under bf16 autocast: its outputs are what learning loss ranks.

    Epoch convention (0-based epoch e): the stage features are detached from epoch `detached_from` on. The
    corrected convention detaches when e >= detach_after, so exactly the first detach_after epochs (1..120 of 200
    with the paper's 120) pass the module's gradient to the backbone; the reference code's `epoch > 120` on
    0-based epochs detaches one epoch later (convention "reference")."""

    def __init__(self, stage_channels: list[int], margin: float = 1.0, weight: float = 1.0,
                 detach_after: int = 120, loss: str = "ranking", hidden: int = 128,
                 convention: str = "corrected") -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in stage_channels)
        self.linear = nn.Linear(hidden * len(stage_channels), 1)
        self.margin, self.weight, self.loss = margin, weight, loss
        self.detached_from = detach_after + (1 if convention == "reference" else 0)

    def predict(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Stage maps ([B, C_s, H_s, W_s] each, or a vector model's hidden layers [B, C_s]) -> predicted loss [B],
        float32. Global average pooling is the identity on a vector."""
        with full_precision(features[0]):
            pooled = [F.relu(fc(torch.flatten(F.adaptive_avg_pool2d(f.float(), 1), 1) if f.dim() == 4 else f.float()))
                      for fc, f in zip(self.fcs, features, strict=True)]  # each [B, hidden]
            return self.linear(torch.cat(pooled, dim=1)).squeeze(1)  # [B]

    def forward(self, out: ModelOutput) -> torch.Tensor:
        return self.predict(out.features)

    def training_loss(self, out: ModelOutput, per_sample_loss: torch.Tensor, labels: torch.Tensor, epoch: int,
                      generator: torch.Generator) -> torch.Tensor:
        features = out.features if epoch < self.detached_from else [f.detach() for f in out.features]
        predicted = self.predict(features)  # [B]
        if self.loss == "mse":
            return self.weight * mse_loss(predicted, per_sample_loss.float())
        return self.weight * loss_prediction_loss(predicted, per_sample_loss.float(), self.margin)


class LearningLoss(Strategy):
    """Highest predicted loss (Yoo & Kweon, Learning Loss for Active Learning, CVPR 2019)."""

    name = "learning-loss"
    aliases = ("ll",)
    # its head pools every stage's map; it scores by the head's output; its diagnostics read the logits
    needs = frozenset({"aux_output", "stage_features", "logits"})
    params = {"margin": 1.0, "weight": 1.0, "detach_after": 0.6, "loss": "ranking"}
    epoch_params = frozenset({"detach_after"})  # 0.6: the paper's 120 of 200 epochs
    min_batch_size = 2  # the ranking loss learns from pairs within a batch
    trains_backbone = True  # its ranking loss reaches the backbone until detach_after

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.loss not in LOSSES:
            raise UserError(f"The 'learning-loss.loss' parameter must be one of {', '.join(LOSSES)}. "
                            f"Got {self.loss!r} instead.")
        resolve_epoch(self.detach_after, 1, "learning-loss.detach_after")  # an epoch or a fraction, or one line
        for key in ("margin", "weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise UserError(f"The 'learning-loss.{key}' parameter must be a non-negative finite number. "
                                f"Got {value!r} instead.")

    def aux_head(self, model: Backbone, protocol: Protocol) -> AuxHead:
        detach_after = resolve_epoch(self.detach_after, protocol.epochs, "learning-loss.detach_after")
        return LossPredictionModule(list(model.stage_channels), self.margin, self.weight, detach_after, self.loss,
                                    convention=protocol.convention)

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        return inputs.aux_output  # [n] predicted losses

    def cycle_metrics(self, inputs: PoolInputs, picks: np.ndarray, labels: torch.Tensor) -> dict[str, float]:
        """Spearman correlation of predicted and true loss (the current model's cross-entropy): over the picks
        (`ll_spearman`: the top predicted losses, so a correlation over a truncated range) and over every scored
        candidate (`ll_spearman_candidates`: how well the module ranks the pool it chose from)."""
        true = F.cross_entropy(inputs.logits, labels.to(inputs.logits.device), reduction="none")  # [n]
        idx = torch.as_tensor(picks, device=true.device)
        return {"ll_spearman": spearman(inputs.aux_output[idx], true[idx]),
                "ll_spearman_candidates": spearman(inputs.aux_output, true)}


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rho of two [k] tensors; NaN where undefined (fewer than 2 values, or a constant one)."""
    x, y = x.detach().float().cpu().numpy(), y.detach().float().cpu().numpy()
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    from scipy import stats  # imported by the jobs that use it, not by every worker and command

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y).statistic)
