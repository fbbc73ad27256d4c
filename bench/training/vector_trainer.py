"""The shared trainer on vectors (bench.data.vectors, and the frozen mode's embeddings): a batch is a set of rows
of the feature matrix, standardised once, with no crop, flip or resize.

Standardisation is fitted on the pool: every feature is centred and scaled by the mean and standard deviation of
the whole training pool (x_train, labels unused), computed in float64 once per run. The pool is what pool-based
active learning holds from the start, and fixed statistics keep the features, and so every distance a strategy
measures, the same at every cycle and for every strategy of a seed; statistics of the labeled set would change the
geometry from cycle to cycle with the strategy's own picks. A constant feature keeps scale 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.config import Protocol
from bench.data.vectors import VectorData
from bench.models.backbones import AuxHead, Backbone
from bench.models.mlp import VectorNet
from bench.training.optim import learning_rate
from bench.training.trainer import FitResult, Trainer, TrainingDiverged, synced_clock

STANDARDISE = "pool"  # what config.json records: features standardised by the training pool's mean and std


def pool_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool's per-feature mean and std ([d] float64 each; a constant feature's std is 1)."""
    wide = x.double()  # [N, d]
    mean = wide.mean(dim=0)
    std = wide.std(dim=0, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


@dataclass
class VectorDeviceData:
    """Standardised vectors on the device, in the form the trainer reads images (DeviceData's fields)."""

    x_train: torch.Tensor  # [N, d] float32, standardised
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, d] float32, standardised with the pool's statistics
    y_test: torch.Tensor  # [M] int64
    pad: int = 0
    flip: bool = False

    @classmethod
    def from_vectors(cls, data: VectorData, device: torch.device) -> VectorDeviceData:
        mean, std = pool_statistics(data.x_train)

        def put(x: torch.Tensor) -> torch.Tensor:  # in float64, then rounded once to float32
            return ((x.double() - mean) / std).float().contiguous().to(device)

        return cls(put(data.x_train), data.y_train.to(device), put(data.x_test), data.y_test.to(device))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def train_images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x_train[idx]  # [n, d]


class VectorTrainer(Trainer):
    """The shared trainer (fit, evaluate, infer) on vectors, in fp32 (small dense layers gain nothing from bf16,
    and a vector model's numbers then match on every CPU). A `linear` model with SGD and no auxiliary head takes
    the closed-form gradient of the cross-entropy and applies torch.optim.SGD's update by hand: at these sizes
    autograd and the optimizer objects cost several times the arithmetic. The batches, their order and the schedule
    are the shared trainer's, so its result equals the autograd path's (tests/training/test_vector_trainer.py);
    every other model, optimizer or head trains through that path."""

    def __init__(self, data: VectorDeviceData, protocol: Protocol, device: torch.device) -> None:
        super().__init__(data, dataclasses.replace(protocol, precision="fp32"), device)  # type: ignore[arg-type]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fit(self, model: Backbone, labeled: torch.Tensor, generator: torch.Generator,
            aux: AuxHead | None = None, aux_generator: torch.Generator | None = None) -> FitResult:
        if aux is not None or not _is_linear(model) or self.protocol.optimizer != "sgd":
            return super().fit(model, labeled, generator, aux, aux_generator)
        return self._fit_linear(model, labeled, generator)

    def _fit_linear(self, model: Backbone, labeled: torch.Tensor, generator: torch.Generator) -> FitResult:
        start = synced_clock(self.device)
        p, classifier, n = self.protocol, model.classifier, labeled.numel()
        ones = torch.ones(n, 1, device=self.device)
        x = torch.cat([self.data.x_train[labeled], ones], dim=1)  # [n, d + 1]: the bias as one more weight
        target = F.one_hot(self.data.y_train[labeled], classifier.out_features).float()  # [n, C]
        weight = torch.cat([classifier.weight.detach(), classifier.bias.detach()[:, None]], dim=1)  # [C, d + 1]
        buffer: torch.Tensor | None = None  # SGD's momentum buffer
        epoch_loss = torch.zeros((), device=self.device)
        model.train()
        with torch.no_grad():
            for epoch in range(p.epochs):
                lr = learning_rate(p, epoch)
                order = torch.randperm(n, generator=generator, device=self.device)  # the shared trainer's draw
                xs, ts = x[order], target[order]
                last = epoch == p.epochs - 1  # the loss is reported for the last epoch only
                epoch_loss = torch.zeros((), device=self.device)
                for first in range(0, n, p.batch_size):
                    xb, tb = xs[first:first + p.batch_size], ts[first:first + p.batch_size]  # [B, d + 1], [B, C]
                    b = xb.shape[0]
                    # no batch norm here: a batch of one trains (the shared trainer skips it only for batch norm)
                    log_p = torch.log_softmax(xb @ weight.T, dim=1)  # [B, C]
                    if last:
                        epoch_loss -= (log_p * tb).sum()
                    d_logits = log_p.exp_().sub_(tb)  # B x d(mean cross-entropy)/d logits: softmax - onehot
                    # torch.optim.SGD's step: gradient plus weight decay, momentum buffer, step
                    grad = torch.addmm(weight, d_logits.T, xb, beta=p.weight_decay, alpha=1.0 / b)  # [C, d + 1]
                    buffer = grad if buffer is None else buffer.mul_(p.momentum).add_(grad)
                    weight.sub_(buffer, alpha=lr)
                if not torch.isfinite(weight).all():  # one sync per epoch
                    raise TrainingDiverged(f"the linear model's weights became non-finite at epoch {epoch + 1}")
            classifier.weight.copy_(weight[:, :-1])
            classifier.bias.copy_(weight[:, -1])
        return FitResult(synced_clock(self.device) - start, float(epoch_loss) / max(n, 1))


def _is_linear(model: Backbone) -> bool:
    """A `linear` model: a VectorNet without hidden layers (its only parameters, the classifier's)."""
    return isinstance(model, VectorNet) and len(model.stages) == 0
