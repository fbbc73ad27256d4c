"""The protocol's optimizer by name (bench.training.optim): torch.optim's classes built with the protocol's settings,
the refusals in one line, a job identity that holds the optimizer only when it is not sgd, and the linear probe's
head, which trains any optimizer other than sgd through autograd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol, RunConfig
from bench.core.errors import UserError
from bench.core.seeding import derive_seed
from bench.models.build import build_model
from bench.results.identity import config_differences
from bench.runner.resolve import build_config
from bench.training.optim import REFUSED, ForeachSGD, build_optimizer, describe, optimizer_class, optimizers
from bench.training.vector_trainer import VectorDeviceData, VectorTrainer
from conftest import train_with_torch_sgd

DEFAULT_HASH = "0f56e2a56c4c"  # RunConfig(Protocol(), ...).job_hash("random") as computed before the field existed


def _params() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(3))]


def test_the_names_are_torch_optims_classes_in_lower_case():
    known = optimizers()
    assert (known["sgd"], known["adamw"], known["rmsprop"]) == (torch.optim.SGD, torch.optim.AdamW,
                                                                torch.optim.RMSprop)
    assert {"adam", "nadam", "radam", "adagrad", "adadelta", "asgd"} <= set(known)
    assert not set(REFUSED) & set(known)


@pytest.mark.parametrize(("changes", "by_hand"), [
    (dict(optimizer="adamw", lr=1e-3, weight_decay=0.05),  # betas, eps: torch's; the default momentum ignored
     lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)),
    (dict(optimizer="rmsprop", lr=0.01, momentum=0.5, weight_decay=0.0),
     lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.5, weight_decay=0.0)),
    (dict(optimizer="rprop", lr=0.01, weight_decay=0.0),  # no weight decay in its constructor: 0 is accepted
     lambda params: torch.optim.Rprop(params, lr=0.01)),
])
def test_an_optimizer_is_torchs_class_with_the_protocols_settings(changes, by_hand):
    ours, theirs = build_optimizer(_params(), Protocol(**changes)), by_hand(_params())
    assert type(ours) is type(theirs) and ours.defaults == theirs.defaults
    assert ours.defaults.get("nesterov", False) is False


def test_sgd_is_the_foreach_sgd_that_takes_torchs_steps_to_the_bit():
    """sgd is ForeachSGD (no torch._dynamo import), whose steps are torch.optim.SGD's, bit for bit."""
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(3)]
    ours = [nn.Parameter(t.clone()) for t in start]
    theirs = [nn.Parameter(t.clone()) for t in start]
    opt = build_optimizer(ours, Protocol(lr=0.2, momentum=0.8, weight_decay=0.01))
    ref = torch.optim.SGD(theirs, lr=0.2, momentum=0.8, weight_decay=0.01)
    assert isinstance(opt, ForeachSGD) and opt.defaults["nesterov"] is False
    for step in range(4):
        grads = [torch.randn_like(t) for t in start]
        for params, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad()
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad.clone() if step != 2 or param.dim() > 1 else None  # a parameter without a gradient
            optimizer.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), step


def test_the_run_names_its_optimizer():
    assert describe(Protocol(lr=0.1)) == "SGD lr 0.1 momentum 0.9 weight decay 0.0005"  # as the presets read
    assert describe(Protocol(optimizer="adamw", lr=0.001)) == "AdamW lr 0.001 weight decay 0.0005"


@pytest.mark.parametrize(("changes", "words"), [
    (dict(optimizer="adamww"), "Unknown optimizer 'adamww' (did you mean 'adamw'?)"),
    (dict(optimizer="adamw", momentum=0.5), "has no effect with --optimizer adamw, which takes no momentum"),
    (dict(optimizer="rprop"), "must be 0 with --optimizer rprop, which takes no weight decay"),
    (dict(optimizer="lbfgs"), "needs a closure that re-evaluates the loss"),
])
def test_an_optimizer_the_trainer_cannot_drive_is_refused_in_one_line(changes, words):
    with pytest.raises(UserError) as refused:
        optimizer_class(Protocol(**changes))
    assert words in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("name", [3, "", "adam w", None])
def test_validate_refuses_what_cannot_be_a_name(name):
    with pytest.raises(UserError, match="The 'optimizer' parameter must be sgd, adamw or a torch.optim"):
        Protocol(optimizer=name).validate()


def test_the_command_line_refuses_an_unknown_optimizer_in_one_line_and_names_a_known_one(cli):
    status, _, err = cli("--strategies", "random", "--optimizer", "rmsporp", "--dry-run")
    assert status == 2 and err.count("\n") == 1 and "did you mean 'rmsprop'?" in err, err
    status, _, err = cli("--strategies", "random", "--optimizer", "adamw", "--momentum", "0.5", "--dry-run")
    assert status == 2 and err.count("\n") == 1 and "drop --momentum" in err, err
    status, out, err = cli("--strategies", "random", "--optimizer", "RMSprop", "--dry-run")
    assert status == 0, err
    assert "RMSprop lr 0.05 momentum 0.9 weight decay 0.0005, milestones [160]" in out


def test_a_run_is_refused_where_it_is_resolved_before_any_work():
    with pytest.raises(UserError, match="did you mean 'adamw'"):
        build_config(strategies=["random"], protocol={"optimizer": "adamww"})


def _config(**changes) -> RunConfig:
    return RunConfig(Protocol(**changes), ("random",), (0,), "x", Path("x"))


def test_the_optimizer_enters_a_jobs_identity_only_when_it_is_not_sgd():
    assert _config().job_hash("random") == _config(optimizer="sgd").job_hash("random") == DEFAULT_HASH
    assert _config(optimizer="adamw").job_hash("random") != DEFAULT_HASH
    assert _config(optimizer="adamw").job_hash("random") != _config(optimizer="rmsprop").job_hash("random")
    # torch's spelling names our job: the name is recorded in lower case, in config.json's protocol
    config = build_config(strategies=["random"], protocol={"optimizer": "AdamW"})
    assert config.protocol.optimizer == "adamw" and config.result_defining()["protocol"]["optimizer"] == "adamw"


def test_a_folder_from_before_the_field_is_an_sgd_folder():
    stored = json.loads(json.dumps(_config().result_defining(), default=str))
    del stored["protocol"]["optimizer"]
    assert config_differences(stored, _config()) == []
    assert config_differences(stored, _config(optimizer="adamw")) == ["protocol.optimizer 'sgd' -> 'adamw'"]


def test_the_linear_probe_trains_adamw_through_autograd_as_torch_does():
    """VectorTrainer's closed-form path is SGD's update: any other optimizer takes the shared trainer's autograd
    path, whose result is a plain torch.optim.AdamW loop over the same batches."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), np.arange(40) % 3
    cpu = torch.device("cpu")
    data = VectorDeviceData(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x[:6]), torch.from_numpy(y[:6]))
    p = Protocol(optimizer="adamw", lr=0.01, weight_decay=0.05, epochs=4, milestones=(2,), batch_size=8,
                 train_mode="frozen", precision="fp32")
    ours = build_model("linear", 5, 3, derive_seed(3, "init-weights"), ())
    VectorTrainer(data, p, cpu).fit(ours, torch.arange(30), torch.Generator().manual_seed(derive_seed(3, "train")))

    theirs = build_model("linear", 5, 3, derive_seed(3, "init-weights"), ()).classifier
    generator = torch.Generator().manual_seed(derive_seed(3, "train"))

    def epoch_losses():
        order = torch.arange(30)[torch.randperm(30, generator=generator)]
        for first in range(0, 30, p.batch_size):
            idx = order[first:first + p.batch_size]
            yield F.cross_entropy(theirs(data.x_train[idx]), data.y_train[idx], reduction="none").mean()

    train_with_torch_sgd(theirs.parameters(), p, epoch_losses,
                         lambda params: torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay))
    torch.testing.assert_close(ours.classifier.weight, theirs.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.classifier.bias, theirs.bias, rtol=1e-6, atol=1e-7)
