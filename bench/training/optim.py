"""The protocol's optimizer, by name: a torch.optim class built with the protocol's settings, and the learning-rate
schedule the trainer applies to it.

The trainer, the auxiliary heads and the linear probe's autograd path build their optimizers here and nowhere
else. They are torch's own (torch.optim.SGD as the presets are published, AdamW, or any torch.optim class a
protocol names), with torch's default implementation: the multi-tensor one on CUDA, the per-tensor one on the
CPU, which compute the same numbers. torch's optimizer classes import torch._dynamo when the first one is built
(about 2 s in every training process on a 2-core CPU); the trainer once carried its own SGD to avoid that, which
left no protocol able to use AdamW. Should a measurement show that the import matters, this module is the one
place to change.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

from bench.core.config import DEFAULT_PROTOCOL, Protocol
from bench.core.errors import UserError
from bench.core.registry import unknown_name

# torch.optim classes the trainer cannot drive, with why: it takes one step per batch, on dense gradients, for every
# parameter of the network.
REFUSED = {
    "lbfgs": "it needs a closure that re-evaluates the loss, and the trainer takes one step per batch",
    "sparseadam": "it takes sparse gradients only, and a network's gradients are dense",
    "muon": "it updates only 2-D weights, and a network's biases and norms need another optimizer beside it",
}


def optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """Every torch.optim optimizer the trainer can drive, by its lower-case name (sgd, adamw, rmsprop, ...)."""
    found = {name.lower(): cls for name, cls in vars(torch.optim).items()
             if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    return {name: found[name] for name in sorted(found) if name not in REFUSED}


def optimizer_class(protocol: Protocol) -> type[torch.optim.Optimizer]:
    """The protocol's optimizer class, its settings checked: a refusal in one line (UserError) for a name torch.optim
    does not have, a class the trainer cannot drive, or a setting the optimizer does not take."""
    name = protocol.optimizer.lower()
    if name in REFUSED:
        raise UserError(f"The 'optimizer' parameter cannot be {protocol.optimizer!r}: {REFUSED[name]}. Choose another "
                        f"torch.optim optimizer (sgd, adamw, ...).")
    known = optimizers()
    if name not in known:
        raise unknown_name("optimizer", protocol.optimizer, list(known))
    cls = known[name]
    takes = inspect.signature(cls).parameters
    # momentum is SGD's setting and its default is SGD's: an optimizer without one (adamw: its betas stay torch's
    # defaults) ignores the default, and refuses a momentum asked for.
    if "momentum" not in takes and protocol.momentum != DEFAULT_PROTOCOL["momentum"]:
        raise UserError(f"The 'momentum' parameter has no effect with --optimizer {name}, which takes no momentum "
                        f"(its other settings stay torch's defaults): drop --momentum.")
    if "weight_decay" not in takes and protocol.weight_decay != 0:
        raise UserError(f"The 'weight_decay' parameter must be 0 with --optimizer {name}, which takes no weight "
                        f"decay. Got {protocol.weight_decay!r} instead: add --weight-decay 0.")
    return cls


def build_optimizer(params: Iterable[nn.Parameter], protocol: Protocol) -> torch.optim.Optimizer:
    """A fresh optimizer over params with the protocol's lr, and its momentum and weight decay where the optimizer
    takes them (sgd: torch.optim.SGD(lr, momentum, weight_decay), no Nesterov; adamw: torch.optim.AdamW(lr,
    weight_decay), decoupled weight decay as torch defines it). Every other setting is torch's default."""
    cls = optimizer_class(protocol)
    takes = inspect.signature(cls).parameters
    settings = {"lr": protocol.lr}
    settings.update({k: getattr(protocol, k) for k in ("momentum", "weight_decay") if k in takes})
    return cls(list(params), **settings)


def describe(protocol: Protocol) -> str:
    """The optimizer in words, for the run's training line: "SGD lr 0.1 momentum 0.9 weight decay 0.0005"."""
    cls = optimizer_class(protocol)
    takes = inspect.signature(cls).parameters
    words = [cls.__name__, f"lr {protocol.lr}"]
    words += [f"momentum {protocol.momentum}"] if "momentum" in takes else []
    words += [f"weight decay {protocol.weight_decay}"] if "weight_decay" in takes else []
    return " ".join(words)


def learning_rate(protocol: Protocol, epoch: int) -> float:
    """The learning rate of an epoch (0-based): what torch.optim.lr_scheduler.MultiStepLR gives after `epoch`
    schedule steps (corrected convention: stepped after each epoch) or one more (reference: stepped before it),
    multiplied milestone by milestone as MultiStepLR multiplies, so that the floats are its floats."""
    steps = epoch + (protocol.convention == "reference")
    lr = protocol.lr
    for milestone, count in sorted(Counter(protocol.milestones).items()):
        if milestone <= steps:
            lr = lr * protocol.gamma ** count
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, protocol: Protocol, epoch: int) -> None:
    """Give every parameter group the epoch's learning rate (what a MultiStepLR would have set by then)."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(protocol, epoch)
