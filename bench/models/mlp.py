"""The models for vectors (bench.data.vectors): `linear`, multinomial logistic regression, and `mlp`, a multilayer
perceptron whose hidden widths are a parameter (`--model mlp --model-param hidden=256,256`). Both are Backbones: the
embedding is the classifier's input (the vector itself for `linear`, the last hidden layer for `mlp`) and the hidden
layers are the stages, [B, width] each, which learning loss reads as it reads a CNN's pooled stage maps (its global
pooling is the identity on a vector)."""

from __future__ import annotations

import torch
from torch import nn

from bench.core.errors import UserError
from bench.models.backbones import Backbone, ModelOutput, full_precision, register_model

VECTOR_MODELS = ("linear", "mlp")  # the built-in models that take vectors (and refuse images)
DEFAULT_HIDDEN = "256"  # the mlp's hidden widths when --model-param hidden= is not given: one layer of 256


class VectorNet(Backbone):
    """Linear + ReLU layers of the given widths, then a linear classifier; no hidden layer is logistic regression."""

    takes_vectors = True  # its input is [B, features], not an image

    def __init__(self, dim: int, n_classes: int, hidden: tuple[int, ...] = ()) -> None:
        super().__init__()
        widths = (dim, *hidden)
        self.stem = nn.Identity()
        layers = zip(widths[:-1], widths[1:], strict=True)
        self.stages = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in layers)
        self.stage_channels = list(hidden)
        self.embedding_dim = widths[-1]
        self.classifier = nn.Linear(self.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:  # x: [B, d] float32
        features = []
        out = x
        for stage in self.stages:
            out = stage(out)
            features.append(out)  # [B, width]
        with full_precision(x):  # the head in fp32, as every Backbone's
            embedding = out.float()  # [B, embedding_dim]
            return ModelOutput(self.head(embedding), embedding, features)


def parse_widths(text: str | int | tuple[int, ...]) -> tuple[int, ...]:
    """'256,256' (or 256, or (256, 256)) -> (256, 256): the hidden widths, each a positive integer."""
    parts = [text] if isinstance(text, int) else list(text) if isinstance(text, tuple) else str(text).split(",")
    try:
        widths = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        widths = ()
    if not widths or any(w <= 0 for w in widths) or isinstance(text, bool):
        raise UserError(f"The mlp's 'hidden' parameter must list positive layer widths, for example "
                        f"--model-param hidden=256,256. Got {text!r} instead.")
    return widths


@register_model("linear")
def linear(in_channels: int, n_classes: int) -> VectorNet:
    """Multinomial logistic regression on vectors of in_channels features."""
    return VectorNet(in_channels, n_classes)


@register_model("mlp")
def mlp(in_channels: int, n_classes: int, hidden: str = DEFAULT_HIDDEN) -> VectorNet:
    """A ReLU multilayer perceptron on vectors of in_channels features (hidden: its widths, '256,256')."""
    return VectorNet(in_channels, n_classes, parse_widths(hidden))
