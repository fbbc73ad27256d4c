"""Scores are never quantised: with the backbone in bf16 autocast, what strategies rank is computed in fp32
(logits, embeddings, the learning-loss module's output) and float64 (probabilities), so ties stay rare."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.core.config import Protocol
from bench.core.seeding import numpy_rng, torch_generator
from bench.data.datasets import load_dataset
from bench.models.backbones import create_model
from bench.training.loop import gather_inputs, make_aux
from bench.training.trainer import DeviceData, Trainer
from strategies import create_strategy


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained jointly with the learning-loss module, a trainer that scores in bf16 autocast, and
    the unlabeled pool. (Trained in fp32: bf16 is emulated, and slow, on CPUs without native bf16.)"""
    data = load_dataset("digits")
    protocol = dataclasses.replace(Protocol(), epochs=15, milestones=(), precision="fp32")
    device = torch.device("cpu")
    trainer = Trainer(DeviceData.from_images(data, device), protocol, device)
    model = create_model("cnn", 1, data.n_classes, generator_seed=0)
    ll = create_strategy("ll")
    aux = make_aux(ll, model, 0, protocol, device)
    labeled = torch.from_numpy(numpy_rng(0, "test").permutation(trainer.data.n_train)[:200])
    trainer.fit(model, labeled, torch_generator(0, "train"), aux, torch_generator(0, "aux"))
    pool = torch.from_numpy(np.setdiff1d(np.arange(trainer.data.n_train), labeled.numpy()))
    bf16 = Trainer(trainer.data, dataclasses.replace(protocol, precision="bf16"), device)
    return bf16, model, aux, ll, pool, labeled


@pytest.mark.parametrize("name", ["learning-loss", "entropy", "margin", "least-confidence"])
def test_scores_of_a_trained_bf16_model_are_distinct(trained, name):
    trainer, model, aux, ll, pool, labeled = trained
    strategy = ll if name == "learning-loss" else create_strategy(name)
    inputs = gather_inputs(strategy, trainer, model, aux, pool, labeled, np.random.default_rng(0))
    scores = strategy.score(inputs).detach().cpu().numpy()
    assert trainer.evaluate(model)[0] > 0.8  # a trained model, confident on most of the pool
    assert np.unique(scores).size >= 0.99 * scores.size, (name, np.unique(scores).size, scores.size)


def test_logits_and_embeddings_come_out_in_fp32_under_bf16_autocast(trained):
    trainer, model, aux, ll, pool, labeled = trained
    out = trainer.infer(model, pool[:64], aux)
    assert out["logits"].dtype == out["embeddings"].dtype == out["aux_output"].dtype == torch.float32
    with trainer.autocast():  # the forward pass itself, not a cast afterwards
        raw = model(trainer.data.normalise(trainer.data.train_images(pool[:64])))
    assert raw.features[-1].dtype == torch.bfloat16
    assert raw.logits.dtype == raw.embedding.dtype == aux(raw).dtype == torch.float32
