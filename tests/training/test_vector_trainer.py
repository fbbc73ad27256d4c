"""The shared trainer on vectors: the pool's standardisation against a hand computation, the linear model's
closed-form SGD against plain torch SGD, the strategies' inputs, and BALD's autograd path against the fast path."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol, preset_protocol
from bench.core.seeding import derive_seed, numpy_rng, torch_generator
from bench.data.vectors import from_vector_arrays
from bench.models.build import build_model
from bench.training.jobs import JobSpec
from bench.training.linear_probe import Embeddings
from bench.training.loop import gather_inputs, next_cycle, start_state
from bench.training.vector_trainer import VectorDeviceData, VectorTrainer, pool_statistics
from conftest import train_with_torch_sgd
from strategies import create_strategy

CPU = torch.device("cpu")


def test_the_pool_statistics_standardise_train_and_test_alike():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=1e4, scale=3.0, size=(50, 4))  # far from the origin: float64 statistics, then float32
    x[:, 2] = 7.0  # a constant feature keeps scale 1
    x_test = rng.normal(loc=1e4, scale=3.0, size=(9, 4))
    data = from_vector_arrays("v", x, np.arange(50) % 2, x_test, np.arange(9) % 2)
    on = VectorDeviceData.from_vectors(data, CPU)
    x32 = x.astype(np.float32).astype(np.float64)  # what the dataset holds
    mean, std = x32.mean(0), x32.std(0)
    std[2] = 1.0
    np.testing.assert_allclose(on.x_train.numpy(), (x32 - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(on.x_test.numpy(), (x_test.astype(np.float32) - mean) / std, rtol=1e-5, atol=1e-5)
    assert on.x_train[:, 2].abs().max() == 0 and on.x_train.dtype == torch.float32
    m, s = pool_statistics(data.x_train)
    np.testing.assert_allclose(m.numpy(), mean) and np.testing.assert_allclose(s.numpy(), std)


def _embeddings(n: int = 60, m: int = 30, d: int = 5, c: int = 3) -> Embeddings:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(c, d)) * 2
    y, y_test = np.arange(n) % c, np.arange(m) % c
    return Embeddings((centres[y] + rng.normal(size=(n, d))).astype(np.float32),
                      (centres[y_test] + rng.normal(size=(m, d))).astype(np.float32), y, y_test, c)


def _trainer(emb: Embeddings, p: Protocol) -> VectorTrainer:
    data = from_vector_arrays("e", emb.train, emb.y_train, emb.test, emb.y_test)
    return VectorTrainer(VectorDeviceData.from_vectors(data, CPU), p, CPU)


def _standardised(emb: Embeddings, x: np.ndarray) -> torch.Tensor:
    """x standardised by hand with the pool's (emb.train's) float64 mean and population std, then float32."""
    pool = emb.train.astype(np.float64)
    return torch.from_numpy(((x.astype(np.float64) - pool.mean(0)) / pool.std(0)).astype(np.float32))


def _plain_head(p: Protocol, emb: Embeddings, labeled: np.ndarray, seed: int, cycle: int,
                start: dict[str, torch.Tensor] | None = None) -> nn.Linear:
    """The head trained by plain torch code: nn.Linear under the seed's init stream, torch.optim.SGD and MultiStepLR,
    each epoch's order drawn from the (seed, "train", cycle) generator; a one-example batch trains like any other
    (no batch norm in a linear head)."""
    torch.manual_seed(derive_seed(seed, "init-weights"))
    head = nn.Linear(emb.train.shape[1], emb.n_classes)
    if start is not None:
        head.load_state_dict({k.removeprefix("classifier."): v for k, v in start.items()})
    x, y = _standardised(emb, emb.train), torch.from_numpy(emb.y_train)
    generator = torch_generator(seed, "train", cycle)
    lab = torch.from_numpy(labeled)

    def epoch_losses() -> Iterator[torch.Tensor]:
        order = lab[torch.randperm(lab.numel(), generator=generator)]
        for first in range(0, lab.numel(), p.batch_size):
            idx = order[first:first + p.batch_size]
            yield F.cross_entropy(head(x[idx]), y[idx])

    train_with_torch_sgd(head.parameters(), p, epoch_losses)
    return head


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the reference convention's order
@pytest.mark.parametrize("convention", ["corrected", "reference"])
@pytest.mark.parametrize(("warm", "batch"), [(True, 8), (False, 8), (True, 1)])
def test_the_harness_head_equals_plain_torch_sgd(convention, warm, batch):
    # initial 17 with batch 8: a last batch of one, which trains (batch 1: every batch is one example)
    emb = _embeddings()
    p = preset_protocol("quick", dataset="npz:x.npz", train_mode="frozen", initial=17, budget=8, cycles=3, epochs=9,
                        batch_size=batch, lr=0.2, momentum=0.9, weight_decay=5e-3, milestones=(4, 7), gamma=0.3,
                        convention=convention, warm_start=warm)
    trainer = _trainer(emb, p)
    spec = JobSpec("r", p.dataset, "entropy", 3, p)
    state = start_state(spec, emb.train.shape[0])
    x_test, y_test = _standardised(emb, emb.test), torch.from_numpy(emb.y_test)
    previous = None
    for cycle in range(2):
        result, after = next_cycle(spec, trainer, emb.n_classes, state)
        plain = _plain_head(p, emb, state.labeled, 3, cycle, previous if warm else None)
        assert after.model["classifier.weight"].shape == plain.weight.shape
        torch.testing.assert_close(after.model["classifier.weight"], plain.weight.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(after.model["classifier.bias"], plain.bias.detach(), atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            logits = plain(x_test)
        assert result.record["test_acc"] == pytest.approx((logits.argmax(1) == y_test).float().mean().item())
        assert result.record["test_loss"] == pytest.approx(F.cross_entropy(logits, y_test).item(), rel=1e-5)
        if cycle == 0:  # the head moved: this compares trained heads, not two initialisations
            torch.manual_seed(derive_seed(3, "init-weights"))
            assert (nn.Linear(5, 3).weight - plain.weight).abs().max() > 0.1
        previous, state = after.model, after


def test_strategies_read_the_heads_logits_and_the_embeddings():
    emb = _embeddings()
    p = preset_protocol("quick", dataset="npz:x.npz", train_mode="frozen", initial=10, budget=5, cycles=2, epochs=3)
    trainer = _trainer(emb, p)
    head = build_model("linear", 5, 3, derive_seed(0, "init-weights"), ())
    cand, labeled = torch.arange(20, 50), torch.arange(0, 10)
    inputs = gather_inputs(create_strategy("badge"), trainer, head, None, cand, labeled, numpy_rng(0, "t"))
    x = _standardised(emb, emb.train)
    torch.testing.assert_close(inputs.embeddings, x[20:50])
    logits = x[20:50] @ head.classifier.weight.T + head.classifier.bias
    torch.testing.assert_close(inputs.probs, torch.softmax(logits.double(), 1))
    assert inputs.logits is None  # BADGE does not declare them
    core = gather_inputs(create_strategy("core-set"), trainer, head, None, cand, labeled, numpy_rng(0, "t"))
    torch.testing.assert_close(core.labeled_embeddings, x[:10])


def test_balds_autograd_path_trains_the_same_head_as_the_fast_path():
    """BALD trains its dropout head jointly (autograd); the linear head it trains beside it is every strategy's."""
    emb = _embeddings()
    p = preset_protocol("quick", dataset="npz:x.npz", train_mode="frozen", initial=17, budget=8, cycles=2, epochs=6,
                        batch_size=8, lr=0.2)
    trainer = _trainer(emb, p)
    heads = {}
    for name in ("bald", "entropy"):
        spec = JobSpec("r", p.dataset, name, 0, p, {"samples": 4, "dropout": 0.5} if name == "bald" else {})
        result, after = next_cycle(spec, trainer, emb.n_classes, start_state(spec, 60))
        heads[name] = after.model
        assert after.aux is None or name == "bald"
    torch.testing.assert_close(heads["bald"], heads["entropy"], atol=1e-5, rtol=1e-5)


