"""Models: each forward returns logits, the penultimate embedding and the stage feature maps
(learning loss reads the stages, core-set and BADGE the embedding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.registry import Registry
from bench.core.seeding import globals_seeded_with


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # [B, n_classes]
    embedding: torch.Tensor  # [B, embedding_dim], the classifier's input
    features: list[torch.Tensor]  # one [B, C_s, H_s, W_s] map per stage


class Backbone(nn.Module):
    """What every registered model offers to the trainer and to strategies."""

    stage_channels: list[int]  # channels of each stage's output, in order
    embedding_dim: int
    classifier: nn.Linear  # embedding -> logits, run in fp32 (BALD trains a dropout head of its own instead)

    stem: nn.Module  # input -> first stage's input
    stages: nn.ModuleList

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(embedding)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = []
        out = self.stem(x)
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        # The pooled embedding and the classifier in fp32 even under bf16 autocast: strategies rank logits and
        # measure distances on embeddings, and bf16's 8-bit mantissa would tie thousands of scores.
        with full_precision(x):
            embedding = torch.flatten(F.adaptive_avg_pool2d(out.float(), 1), 1)  # [B, d]
            return ModelOutput(self.head(embedding), embedding, features)


def full_precision(x: torch.Tensor) -> torch.autocast:
    """A region where autocast is off (on x's device type): what it computes stays float32."""
    return torch.autocast(x.device.type, enabled=False)


Factory = Callable[[int, int], nn.Module]  # (in_channels, n_classes) -> a Backbone, or a module the adapter adapts
MODELS: Registry[Factory] = Registry("model")
register_model = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, in_channels: int, n_classes: int, generator_seed: int) -> Backbone:
    """Build a registered model whose initial weights depend only on generator_seed (global RNG state is
    restored). bench.models.build.build_model builds any model a run can name: torchvision's, adapted modules too."""
    factory = MODELS.get(name)
    with globals_seeded_with(generator_seed):
        return factory(in_channels, n_classes)


# ---------------------------------------------------------------------------------------------- ResNet-18


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(Backbone):
    """The CIFAR ResNet-18 of the paper's reference code: 3x3 stem at stride 1, no max-pool,
    BasicBlocks [2, 2, 2, 2] with 64, 128, 256, 512 channels, global average pool, linear."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.stage_channels = [64, 128, 256, 512]
        self.embedding_dim = 512
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        stages, c_in = [], 64
        for i, c_out in enumerate(self.stage_channels):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(512, n_classes)


@register_model("resnet18")
def resnet18(in_channels: int, n_classes: int) -> Backbone:
    return ResNet18(in_channels, n_classes)


# ---------------------------------------------------------------------------------------------- small CNN


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(Backbone):
    """Three stages of 3x3 convolutions (32, 64, 128 channels, 2x2 max-pool between stages): fast on a
    CPU for 8x8 to 32x32 inputs."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.stage_channels = [32, 64, 128]
        self.embedding_dim = 128
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([
            nn.Sequential(_conv_bn(in_channels, 32), _conv_bn(32, 32)),
            nn.Sequential(nn.MaxPool2d(2), _conv_bn(32, 64), _conv_bn(64, 64)),
            nn.Sequential(nn.MaxPool2d(2), _conv_bn(64, 128)),
        ])
        self.classifier = nn.Linear(128, n_classes)


@register_model("cnn")
def small_cnn(in_channels: int, n_classes: int) -> Backbone:
    return SmallCNN(in_channels, n_classes)


# ---------------------------------------------------------------------------------------------- auxiliary heads


class AuxHead(nn.Module):
    """A module a strategy trains jointly with the backbone through the shared trainer (learning loss's
    loss-prediction module is one, BALD's dropout classifier another). The trainer gives it its own optimizer
    with the backbone's settings. Its outputs are computed in fp32 (see `full_precision`)."""

    def training_loss(self, out: ModelOutput, per_sample_loss: torch.Tensor, labels: torch.Tensor, epoch: int,
                      generator: torch.Generator) -> torch.Tensor:
        """The term added to the mean cross-entropy at 0-based `epoch`. per_sample_loss: [B], not detached;
        labels: [B]; generator: the head's own random stream (it never draws from the backbone's)."""
        raise NotImplementedError

    def forward(self, out: ModelOutput) -> torch.Tensor:
        """Per-sample output at inference ([B]): the strategy's `PoolInputs.aux_output` when it needs "aux_output"."""
        raise NotImplementedError
