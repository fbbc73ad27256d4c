"""The shared trainer: batched augmentation against a per-image reference, schedule order, odd batches."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pytest
import torch
from launch import ENV, ROOT, WAIT
from torch.optim.optimizer import register_optimizer_step_pre_hook

import bench.training.trainer as trainer_module
from bench.core.config import Protocol
from bench.data.datasets import load_dataset
from bench.models.backbones import create_model
from bench.training.optim import ForeachSGD, learning_rate
from bench.training.trainer import DeviceData, Trainer, crop_flip, resolve_precision
from conftest import train_with_torch_sgd
from strategies import create_strategy


def test_crop_flip_matches_a_per_image_crop_and_flip():
    pad, h, w = 2, 5, 6
    x = torch.randint(0, 255, (16, 3, h + 2 * pad, w + 2 * pad), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(3)
    out = crop_flip(x, pad, True, gen)
    # Redraw the same random numbers in the same order, then crop and flip each image by hand.
    gen = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 2 * pad + 1, (16, 1), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (16, 1), generator=gen)
    flips = torch.rand(16, 1, generator=gen) < 0.5
    for i in range(16):
        crop = x[i, :, oy[i, 0]:oy[i, 0] + h, ox[i, 0]:ox[i, 0] + w]
        expected = crop.flip(2) if flips[i, 0] else crop
        assert torch.equal(out[i], expected), i
    assert flips.any() and not flips.all()  # both branches exercised


def test_crop_without_flip_never_mirrors():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    out = crop_flip(x, 0, False, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_normalise_uses_dataset_mean_and_std():
    data = load_dataset("digits")
    dev = DeviceData.from_images(data, torch.device("cpu"))
    x = dev.normalise(data.x_test[:4])
    expected = (data.x_test[:4].float() / 255 - data.mean[0]) / data.std[0]
    torch.testing.assert_close(x, expected)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert dev.x_train.shape[-1] == data.x_train.shape[-1] + 2 * data.pad  # padded once, up front
    assert torch.equal(dev.train_images(torch.arange(3)), data.x_train[:3])


def test_precision_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    # auto: bf16 exactly where the CPU has native bf16 (emulated bf16 is slower than fp32)
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda native=native: native)
        assert resolve_precision("auto", cpu) == expected


def _trainer(**changes) -> tuple[Trainer, int]:
    data = load_dataset("digits")
    protocol = dataclasses.replace(Protocol(), precision="fp32", **changes)
    return Trainer(DeviceData.from_images(data, torch.device("cpu")), protocol, torch.device("cpu")), data.n_classes


@contextlib.contextmanager
def _steps() -> Iterator[list[tuple[torch.optim.Optimizer, float]]]:
    """Every optimizer step taken inside the block, with its learning rate (torch's global step pre-hook)."""
    seen: list[tuple[torch.optim.Optimizer, float]] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append((opt, opt.param_groups[0]["lr"])))
    step = ForeachSGD.step  # sgd's own class, which torch's hooks do not see

    def seen_step(self: ForeachSGD) -> None:
        seen.append((self, self.param_groups[0]["lr"]))
        step(self)

    ForeachSGD.step = seen_step
    try:
        yield seen
    finally:
        handle.remove()
        ForeachSGD.step = step


@pytest.mark.parametrize(("convention", "lrs"), [
    ("corrected", [0.1, 0.1, 0.1, 0.1, 0.01, 0.01]),  # epochs 1-2 at lr, epoch 3 at lr * gamma
    ("reference", [0.1, 0.1, 0.01, 0.01, 0.01, 0.01]),  # stepped before each epoch: the decay comes one early
])
def test_schedule_order_follows_the_convention(convention, lrs):
    """Milestone 2, 3 epochs of 2 steps."""
    trainer, n_classes = _trainer(epochs=3, milestones=(2,), lr=0.1, batch_size=10, convention=convention)
    model = create_model("cnn", 1, n_classes, 0)
    with _steps() as seen:
        trainer.fit(model, torch.arange(20), torch.Generator().manual_seed(0))
    assert [lr for _, lr in seen] == pytest.approx(lrs)


def test_the_aux_head_trains_with_an_optimizer_of_its_own_with_the_backbones_settings():
    trainer, n_classes = _trainer(epochs=1, batch_size=10, optimizer="adamw", lr=0.01, weight_decay=0.03)
    model = create_model("cnn", 1, n_classes, 0)
    head = create_strategy("learning-loss").aux_head(model, trainer.protocol)
    with _steps() as seen:
        trainer.fit(model, torch.arange(20), torch.Generator().manual_seed(0), head, torch.Generator().manual_seed(1))
    (backbone, _), (module, _) = seen[:2]
    assert len(seen) == 4 and [opt for opt, _ in seen[2:]] == [backbone, module]  # 2 batches, each steps both
    assert type(backbone) is type(module) is torch.optim.AdamW and backbone.defaults == module.defaults
    assert (backbone.defaults["lr"], backbone.defaults["weight_decay"]) == (0.01, 0.03)
    assert [id(p) for p in backbone.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
    assert [id(p) for p in module.param_groups[0]["params"]] == [id(p) for p in head.parameters()]


def _torch_fit(trainer: Trainer, model: torch.nn.Module, labeled: torch.Tensor, generator: torch.Generator,
               optimizer: Callable[[Iterable], torch.optim.Optimizer] | None = None) -> None:
    """Trainer.fit's loop on plain torch.optim.SGD (or optimizer(params)) and MultiStepLR."""
    p, data = trainer.protocol, trainer.data
    model.train()

    def epoch_losses() -> Iterator[torch.Tensor]:
        order = labeled[torch.randperm(labeled.numel(), generator=generator)]
        for first in range(0, labeled.numel(), p.batch_size):
            idx = order[first:first + p.batch_size]
            x = data.x_train[idx]
            x = crop_flip(x, data.pad, data.flip, generator) if data.pad or data.flip else x
            logits = model(trainer.prepare(x)).logits.float()
            yield torch.nn.functional.cross_entropy(logits, data.y_train[idx], reduction="none").mean()

    train_with_torch_sgd(model.parameters(), p, epoch_losses, optimizer)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the reference convention's order
@pytest.mark.parametrize("convention", ["corrected", "reference"])
def test_the_trainers_update_is_torch_sgd_with_multisteplr_to_the_bit(convention):
    # momentum, weight decay, two milestones (one of them twice) and an odd last batch
    trainer, n_classes = _trainer(epochs=5, milestones=(1, 3, 3), gamma=0.3, lr=0.05, momentum=0.9,
                                  weight_decay=5e-3, batch_size=16, convention=convention)
    ours, theirs = create_model("cnn", 1, n_classes, 0), create_model("cnn", 1, n_classes, 0)
    labeled = torch.arange(40)
    trainer.fit(ours, labeled, torch.Generator().manual_seed(4))
    _torch_fit(trainer, theirs, labeled, torch.Generator().manual_seed(4))
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [learning_rate(trainer.protocol, e) for e in range(5)] == pytest.approx(
        [0.05, 0.015, 0.015, 0.00135, 0.00135] if convention == "corrected" else [0.015, 0.015, 0.00135, 0.00135,
                                                                                   0.00135])


@pytest.mark.parametrize(("name", "by_hand"), [
    ("adamw", lambda p: lambda params: torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)),
    ("RMSprop", lambda p: lambda params: torch.optim.RMSprop(params, lr=p.lr, momentum=p.momentum,
                                                             weight_decay=p.weight_decay)),
])
def test_another_optimizer_trains_as_the_same_torch_optim_loop_built_by_hand(name, by_hand):
    """--optimizer by name: torch's class with the protocol's lr, weight decay and (where it takes one) momentum,
    under the same schedule, to the bit."""
    trainer, n_classes = _trainer(epochs=3, milestones=(2,), gamma=0.3, lr=0.01, weight_decay=0.05,
                                  batch_size=16, optimizer=name)
    ours, theirs, sgd = (create_model("cnn", 1, n_classes, 0) for _ in range(3))
    labeled = torch.arange(40)
    trainer.fit(ours, labeled, torch.Generator().manual_seed(4))
    _torch_fit(trainer, theirs, labeled, torch.Generator().manual_seed(4), by_hand(trainer.protocol))
    _torch_fit(trainer, sgd, labeled, torch.Generator().manual_seed(4))
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert not torch.equal(ours.classifier.weight, sgd.classifier.weight)  # not SGD under another name


def test_a_worker_loads_neither_torch_dynamo_nor_the_drivers_stack():
    """What a worker imports (bench.runner.scheduler) and an sgd training step load no torch._dynamo (torch's
    optimizer classes import it when built) and none of pandas, scipy or matplotlib (the driver's store and report):
    seconds in every worker process."""
    code = ("import sys, torch, bench.runner.scheduler; from bench.data.datasets import load_dataset; "
            "from bench.models.backbones import create_model; from bench.core.config import Protocol; "
            "from bench.training.trainer import DeviceData, Trainer; data = load_dataset('digits'); "
            "cpu = torch.device('cpu'); "
            "trainer = Trainer(DeviceData.from_images(data, cpu), Protocol(epochs=1, precision='fp32'), cpu); "
            "trainer.fit(create_model('cnn', 1, 10, 0), torch.arange(20), torch.Generator().manual_seed(0)); "
            "loaded = [m for m in ('torch._dynamo', 'pandas', 'scipy', 'matplotlib') if m in sys.modules]; "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=WAIT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("model_name", ["cnn", "resnet18"])  # ResNet-18 pools 8x8 digits to 1x1 before its BN
def test_odd_last_batch_trains_and_a_last_batch_of_one_is_skipped(model_name):
    trainer, n_classes = _trainer(epochs=1, batch_size=4)
    model = create_model(model_name, 1, n_classes, 0)
    with _steps() as steps:
        result = trainer.fit(model, torch.arange(9), torch.Generator().manual_seed(0))  # batches 4, 4, (1)
        assert np.isfinite(result.final_loss) and len(steps) == 2
        trainer.fit(model, torch.arange(7), torch.Generator().manual_seed(0))  # batches 4, 3
    assert len(steps) == 4


def test_training_learns_digits():
    trainer, n_classes = _trainer(epochs=15)
    model = create_model("cnn", 1, n_classes, 0)
    before, _ = trainer.evaluate(model)
    trainer.fit(model, torch.arange(300), torch.Generator().manual_seed(0))
    after, _ = trainer.evaluate(model)
    assert after > 0.85 > before


def test_infer_returns_pool_outputs():
    trainer, n_classes = _trainer()
    model = create_model("cnn", 1, n_classes, 0)
    out = trainer.infer(model, torch.arange(7), stage_features=True)
    assert out["logits"].shape == (7, n_classes)
    assert out["embeddings"].shape == (7, model.embedding_dim)
    assert [f.shape[1] for f in out["stage_features"]] == model.stage_channels
