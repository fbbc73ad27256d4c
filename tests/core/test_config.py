"""bench.core.config: Protocol.validate's one-line refusals in scikit-learn's form, the presets' proportions of the
paper's schedule, epochs given as fractions, and a job's identity (optional fields at their default keep old hashes)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from bench.core import config as cfg
from bench.core.errors import UserError


@pytest.mark.parametrize("fields, message", [
    ({"budget": -5}, "The 'budget' parameter must be a positive integer. Got -5 instead."),
    ({"initial": True}, "The 'initial' parameter must be a positive integer. Got True instead."),
    ({"epochs": 2.0}, "The 'epochs' parameter must be a positive integer. Got 2.0 instead."),
    ({"subset": 10, "budget": 30}, "The 'subset' parameter must be at least the budget (30)"),
    ({"lr": 0}, "The 'lr' parameter must be a positive number. Got 0 instead."),
    ({"lr": float("inf")}, "The 'lr' parameter must be a positive number. Got inf instead."),
    ({"momentum": 1.0}, "The 'momentum' parameter must be a number in [0, 1). Got 1.0 instead."),
    ({"weight_decay": -1e-4}, "The 'weight_decay' parameter must be a non-negative number."),
    ({"milestones": (0,)}, "The 'milestones' parameter must list positive epochs. Got [0] instead."),
    ({"precision": "fp64"}, "The 'precision' parameter must be one of auto, fp32, tf32, bf16, fp16."),
    ({"convention": "paper"}, "The 'convention' parameter must be one of corrected, reference."),
    ({"optimizer": "sgd momentum"}, "The 'optimizer' parameter must be sgd, adamw or a torch.optim"),
    ({"batch_size": 1}, "The 'batch_size' parameter must be at least 2 to fine-tune a network"),
    ({"image_size": 5000}, "The 'image_size' parameter must be at most 4096 pixels"),
    ({"deterministic": 1}, "The 'deterministic' parameter must be True or False. Got 1 instead."),
])
def test_a_bad_value_is_refused_in_one_sentence(fields, message):
    with pytest.raises(UserError) as caught:
        cfg.Protocol(**fields).validate()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_defaults_and_every_preset_validate_and_a_frozen_batch_of_one_does_too():
    for preset in cfg.PRESETS:
        cfg.preset_protocol(preset).validate()
    cfg.Protocol(batch_size=1, train_mode="frozen").validate()


def test_the_pool_must_supply_the_protocol():
    protocol = cfg.Protocol(initial=30, budget=30, cycles=6)  # 30 + 30 x 5 = 180 labels at the last cycle
    assert protocol.labels_needed() == 180
    protocol.validate_pool(180)
    with pytest.raises(UserError, match="needs 180 labels .* the training pool has 179"):
        protocol.validate_pool(179)
    with pytest.raises(UserError, match="smaller than the training pool"):
        protocol.validate_pool(30)


@pytest.mark.parametrize("value, epochs, expected", [(0.8, 200, 160), (0.8, 50, 40), (1.0, 7, 7), (0.6, 40, 24),
                                                     (160, 50, 160), (0, 10, 0),
                                                     (0.8, 7, 6), (0.29, 100, 29)])  # to the nearest epoch
def test_an_epoch_is_a_whole_number_or_a_fraction_of_the_epochs(value, epochs, expected):
    assert cfg.resolve_epoch(value, epochs, "milestones") == expected


@pytest.mark.parametrize("value", [0.0, 1.5, -1, True, float("nan"), "160"])
def test_an_epoch_that_is_neither_is_refused(value):
    with pytest.raises(UserError, match="The 'x' parameter must be") as caught:
        cfg.resolve_epoch(value, 200, "x")
    assert "\n" not in str(caught.value)


def test_the_presets_keep_the_papers_proportions():
    # Yoo & Kweon: 200 epochs, decay after 160 (0.8), learning loss detached after 120 (0.6)
    for preset in ("quick", "paper"):
        protocol = cfg.preset_protocol(preset)
        assert protocol.epochs == 200 and protocol.milestones == (160,) and protocol.gamma == 0.1
        assert cfg.PRESETS[preset]["strategy_params"]["learning-loss"]["detach_after"] == 0.6
    assert cfg.preset_protocol("quick", epochs=50).milestones == (40,)  # --epochs keeps the proportion
    assert cfg.preset_protocol("paper", milestones=(100,)).milestones == (100,)  # a whole epoch stays one
    paper = cfg.preset_protocol("paper")
    assert (paper.dataset, paper.model, paper.initial, paper.budget, paper.cycles, paper.subset) == (
        "cifar10", "resnet18", 1000, 1000, 10, 10000)
    assert (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (128, 0.1, 0.9, 5e-4)
    blog = cfg.preset_protocol("blog")
    assert (blog.epochs, blog.lr, blog.milestones, blog.cycles) == (40, 0.01, (), 5)
    assert cfg.proportions(200, {"milestones": (160,), "detach_after": 120}) == {"milestones": [0.8],
                                                                                 "detach_after": 0.6}


def test_a_fraction_that_rounds_to_no_epoch_and_an_unknown_preset_are_one_line():
    with pytest.raises(UserError, match=r"rounds to epoch 0: give a fraction of at least 0\.1"):
        cfg.preset_protocol("quick", epochs=10, milestones=(0.04,))
    with pytest.raises(UserError, match="Unknown preset 'papr': choose one of quick, paper, blog."):
        cfg.preset_protocol("papr")
    assert cfg.preset_protocol("quick", optimizer="AdamW").optimizer == "adamw"  # torch's spelling, one job


def _config(**fields) -> cfg.RunConfig:
    return cfg.RunConfig(protocol=fields.pop("protocol", cfg.Protocol()), strategies=("random",), seeds=(0,),
                         name="n", out=Path("o"), **fields)


def test_a_job_hash_without_the_optional_fields_is_the_hash_it_always_was():
    protocol = cfg.Protocol(epochs=3)
    fields = {k: v for k, v in dataclasses.asdict(protocol).items()
              if k not in ("image_size", "train_mode", "deterministic", "optimizer", "imbalance", "model_params")}
    text = json.dumps({"protocol": fields, "dataset": "abc", "strategy": "random", "params": {"k": 1}},
                      sort_keys=True, default=str)
    config = _config(protocol=protocol, dataset_fingerprint="abc", strategy_params={"random": {"k": 1}})
    assert config.job_hash("random") == hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.mark.parametrize("change", [{"image_size": 16}, {"train_mode": "frozen"}, {"deterministic": False},
                                    {"optimizer": "adamw"}, {"imbalance": 4.0}, {"epochs": 4}, {"lr": 0.01},
                                    {"model_params": (("hidden", "64"),)}])
def test_each_protocol_field_set_off_its_default_is_another_job(change):
    base = _config(protocol=cfg.Protocol(epochs=3))
    changed = _config(protocol=dataclasses.replace(cfg.Protocol(epochs=3), **change))
    assert changed.job_hash("random") != base.job_hash("random")


def test_a_job_hash_holds_the_model_the_users_code_and_the_numerics_off_the_cpu():
    base = _config().job_hash("random")
    others = [_config(model_fingerprint={"weights": "w"}), _config(strategy_code={"random": "c"}),
              _config(device_type="cuda"), _config(dataset_fingerprint="d"), _config(strategy_params={"random": {}})]
    hashes = [c.job_hash("random") for c in others]
    assert hashes[-1] == base  # no parameters and empty parameters: one job
    assert len({base, *hashes[:-1]}) == 5
    # another strategy's code or parameters leave this strategy's jobs as they were
    assert _config(strategy_code={"mine": "c"}, strategy_params={"mine": {"a": 1}}).job_hash("random") == base
