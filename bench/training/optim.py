"""The protocol's optimizer, by name, and the learning-rate schedule the trainer applies to it.

The trainer, the auxiliary heads and the linear probe's autograd path build their optimizers here and nowhere
else. `sgd`, as the presets are published, is `ForeachSGD`: torch.optim.SGD's update (momentum, weight decay, no
dampening, no Nesterov) operation for operation on torch._foreach_*, equal to it to the bit (tested). It is kept
because torch's optimizer classes import torch._dynamo when the first one is built, 2 to 4 s in every training
process on a 2-core CPU, and that measured as a fifth of the command-line tests' time (docs/performance.md,
"Start-up machinery"). Every other name is torch.optim's own class (adamw, rmsprop, ...), built with the protocol's
settings.
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


class ForeachSGD:
    """torch.optim.SGD(lr, momentum, weight_decay) as its multi-tensor path computes it (on the CPU its single-tensor
    path runs the same kernels one tensor at a time), without torch.optim's import of torch._dynamo.
    `param_groups` is what the schedule sets and torch.amp.GradScaler reads to unscale the gradients."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float, weight_decay: float) -> None:
        self.params = list(params)
        self.defaults = {"lr": lr, "momentum": momentum, "dampening": 0, "weight_decay": weight_decay,
                         "nesterov": False}
        self.param_groups = [{"params": self.params, **self.defaults}]
        self.state: dict = {}  # GradScaler keeps nothing here; the momentum buffers are below
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)  # made at the first step, as torch's

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        live = [i for i, param in enumerate(self.params) if param.grad is not None]
        params = [self.params[i] for i in live]
        grads = [param.grad for param in params]
        if weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum != 0:
            if all(self.buffers[i] is not None for i in live):
                buffers = [self.buffers[i] for i in live]
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads)
            else:  # the first step: torch's buffer starts as the gradient
                for i, grad in zip(live, grads, strict=True):
                    buffer = self.buffers[i]
                    if buffer is None:
                        self.buffers[i] = torch.clone(grad).detach()
                    else:
                        buffer.mul_(momentum).add_(grad)
                buffers = [self.buffers[i] for i in live]
            grads = buffers
        torch._foreach_add_(params, grads, alpha=-lr)


def build_optimizer(params: Iterable[nn.Parameter], protocol: Protocol) -> torch.optim.Optimizer | ForeachSGD:
    """A fresh optimizer over params with the protocol's lr, and its momentum and weight decay where the optimizer
    takes them (sgd: ForeachSGD, torch.optim.SGD(lr, momentum, weight_decay)'s update, no Nesterov; adamw:
    torch.optim.AdamW(lr, weight_decay), decoupled weight decay as torch defines it). Every other setting is torch's
    default."""
    cls = optimizer_class(protocol)
    if cls is torch.optim.SGD:
        return ForeachSGD(params, protocol.lr, protocol.momentum, protocol.weight_decay)
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


def set_learning_rate(optimizer: torch.optim.Optimizer | ForeachSGD, protocol: Protocol, epoch: int) -> None:
    """Give every parameter group the epoch's learning rate (what a MultiStepLR would have set by then)."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(protocol, epoch)
