"""VAAL against the authors' code (tests/fixtures/vaal.npz: their losses, one training iteration and their picks
on fixed inputs), a hand-worked pick with a fixed discriminator, the backbone left as random leaves it, and the
one-line refusals."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import strategies.vaal as vaal
from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.training import loop
from bench.training.jobs import JobSpec
from bench.training.trainer import DeviceData, Trainer
from strategies import PoolInputs, create_strategy
from strategies.base import top_k
from strategies.vaal import VAE, Discriminator, discriminator_logits, train_vaal, vae_stages, vae_step_losses

FIXTURE = np.load(Path(__file__).parents[1] / "fixtures" / "vaal.npz", allow_pickle=False)
Z = 32


def fixed_weights(module: nn.Module, seed: int) -> None:
    """tests/fixtures/README.md's recipe: every parameter and buffer from numpy, in state_dict order."""
    rng = np.random.default_rng(seed)
    state = OrderedDict()
    for key, value in module.state_dict().items():
        shape = tuple(value.shape)
        if key.endswith("num_batches_tracked"):
            new = np.zeros(shape)
        elif key.endswith("running_mean"):
            new = rng.normal(0, 0.1, shape)
        elif key.endswith("running_var"):
            new = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            new = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
        elif key.endswith("bias"):
            new = rng.normal(0, 0.1, shape)
        else:  # batch-norm weights
            new = rng.uniform(0.5, 1.5, shape)
        state[key] = torch.from_numpy(new).to(value.dtype)
    module.load_state_dict(state)


def fixed_inputs(dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The README's images (L1, L2, U1, U2, C) and noise (for L1, U1, L2, U2), drawn in its order as float32, then
    held as dtype."""
    rng = np.random.default_rng(2019)
    images = [torch.from_numpy(rng.uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)) for n in (6, 6, 8, 8, 20)]
    eps = [torch.from_numpy(rng.normal(size=(n, Z)).astype(np.float32)) for n in (6, 8, 6, 8)]
    return [x.to(dtype) for x in images], [e.to(dtype) for e in eps]


def fresh_pair(dtype: torch.dtype = torch.float32) -> tuple[VAE, Discriminator]:
    """The pair with the README's weights, drawn in float64 and held as dtype."""
    vae, disc = VAE(3, 32, 32, Z).to(dtype), Discriminator(Z).to(dtype)
    fixed_weights(vae, 1)
    fixed_weights(disc, 2)
    return vae, disc


def first_step_losses(dtype: torch.dtype) -> dict[str, float]:
    """The first VAE step's terms on a fresh pair (a forward moves the batch-norm statistics)."""
    (l1, _, u1, _, _), eps = fixed_inputs(dtype)
    first = vae_step_losses(*fresh_pair(dtype), l1, u1, eps[0], eps[1], float(FIXTURE["beta"]),
                            float(FIXTURE["adversary_param"]))
    return {k: float(v.detach()) for k, v in first.items()}


@pytest.fixture(scope="module")
def trained():
    """The pair after one iteration on the fixture's batches, in float64 as the fixture was made (in float32 the
    iteration's outcome moves by up to 0.2% with the thread count and the CPU, the authors' code and this one
    alike, and the 7th pick with it: tests/fixtures/README.md), its first step's losses, and the inputs."""
    torch.manual_seed(0)  # what the VAE draws at construction is overwritten: nothing here depends on it
    (l1, l2, u1, u2, c), eps = fixed_inputs(torch.float64)
    first = first_step_losses(torch.float64)
    vae, disc = fresh_pair(torch.float64)
    initial = {n: p.detach().clone() for n, p in vae.named_parameters()}
    initial.update({"disc." + n: p.detach().clone() for n, p in disc.named_parameters()})
    noise = iter(eps)
    last = train_vaal(vae, disc, iter([(l1, u1), (l2, u2)]), 1, lambda x: next(noise), 2, 1,
                      float(FIXTURE["beta"]), float(FIXTURE["adversary_param"]))
    return vae, disc, first, last, c, initial


def test_the_vae_at_32x32_is_the_authors_module_for_module():
    vae, disc = VAE(3, 32, 32, Z), Discriminator(Z)
    names = [n for n, _ in vae.named_parameters()] + ["disc." + n for n, _ in disc.named_parameters()]
    assert names == FIXTURE["param_names"].tolist()
    assert vae.encoder[9].weight.shape == (1024, 512, 4, 4) and vae.fc_mu.in_features == 1024 * 2 * 2
    assert vae.decoder[0].out_features == 1024 * 4 * 4 and vae.decoder[11].weight.shape == (128, 3, 1, 1)


# float64 on both sides: what differs from the authors' numbers by more than rounding is a difference of method
TIGHT = 1e-10


def _first_step_equals_the_authors(first: dict[str, float], rel: float) -> None:
    vae_terms, bce_terms = FIXTURE["vae_terms"], FIXTURE["bce_terms"]
    assert first["unsup"] == pytest.approx(vae_terms[0], rel=rel)
    assert first["transductive"] == pytest.approx(vae_terms[1], rel=rel)
    assert first["adversarial"] == pytest.approx(bce_terms[0] + bce_terms[1], rel=rel)
    expected = vae_terms[0] + vae_terms[1] + float(FIXTURE["adversary_param"]) * (bce_terms[0] + bce_terms[1])
    assert first["total"] == pytest.approx(expected, rel=rel)


def test_the_first_vae_steps_losses_equal_the_authors(trained):
    _first_step_equals_the_authors(trained[2], TIGHT)


def test_the_first_vae_steps_losses_in_float32_the_dtype_runs_use():
    _first_step_equals_the_authors(first_step_losses(torch.float32), 1e-5)


def test_one_iteration_equals_the_authors_losses_and_adam_steps(trained):
    vae, disc, _, last, _, initial = trained
    vae_terms, bce_terms = FIXTURE["vae_terms"], FIXTURE["bce_terms"]
    # the second VAE step runs on the weights the first step's Adam update made: it checks that step too
    assert last["unsup"] == pytest.approx(vae_terms[2], rel=TIGHT)
    assert last["transductive"] == pytest.approx(vae_terms[3], rel=TIGHT)
    assert last["adversarial"] == pytest.approx(bce_terms[2] + bce_terms[3], rel=TIGHT)
    assert last["discriminator"] == pytest.approx(bce_terms[4] + bce_terms[5], rel=TIGHT)
    params = [p for _, p in vae.named_parameters()] + [p for _, p in disc.named_parameters()]
    np.testing.assert_allclose([p.detach().sum().item() for p in params], FIXTURE["param_sums"],
                               rtol=TIGHT, atol=1e-12)
    np.testing.assert_allclose([(p.detach() ** 2).sum().item() for p in params], FIXTURE["param_sq_sums"],
                               rtol=TIGHT)
    moved = [(p.detach() - initial[n]).abs().sum().item() for n, p in
             [*vae.named_parameters(), *(("disc." + n, p) for n, p in disc.named_parameters())]]
    np.testing.assert_allclose(moved, FIXTURE["param_change"], rtol=TIGHT)  # the updates alone, ~lr per element
    buffers = dict(vae.named_buffers())  # the encoder's batch-norm statistics after the discriminator step too
    np.testing.assert_allclose([buffers[n].sum().item() for n in FIXTURE["buffer_names"]],
                               FIXTURE["buffer_sums"], rtol=TIGHT, atol=1e-12)


def test_scores_and_picks_equal_the_authors_sampler(trained):
    vae, disc, _, _, candidates, _ = trained
    # scoring_bn=running first: the batch-statistics pass below moves the running statistics, as the authors' does
    running = torch.sigmoid(discriminator_logits(vae, disc, candidates, 7, batch_stats=False))
    np.testing.assert_allclose(running.numpy(), FIXTURE["running_probs"], rtol=TIGHT)
    batch = discriminator_logits(vae, disc, candidates, 10, batch_stats=True)  # their sampler's batches of 10
    np.testing.assert_allclose(torch.sigmoid(batch).numpy(), FIXTURE["batch_probs"], rtol=TIGHT)
    assert top_k(-batch, int(FIXTURE["k"])).tolist() == FIXTURE["picks"].tolist()


def test_running_statistics_score_a_candidate_alone_and_batch_statistics_by_its_batch():
    (_, _, _, _, c), _ = fixed_inputs()
    vae, disc = fresh_pair()
    whole = discriminator_logits(vae, disc, c, 20)
    torch.testing.assert_close(discriminator_logits(vae, disc, c, 3), whole, rtol=1e-5, atol=1e-5)
    batch_10 = discriminator_logits(vae, disc, c, 10, batch_stats=True)
    batch_5 = discriminator_logits(vae, disc, c, 5, batch_stats=True)
    assert not torch.allclose(batch_10, batch_5, rtol=1e-3) and not torch.allclose(batch_10, whole, rtol=1e-3)


# ---------------------------------------------------------------- the picks, by hand


class _Identity(nn.Module):
    """A stand-in VAE whose code mu is the image's first pixel."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flatten(1)[:, :1], x.flatten(1)[:, :1]


def _identity_discriminator(z_dim: int) -> Discriminator:
    """logit = relu(z) - relu(-z) = z."""
    disc = Discriminator(1)
    with torch.no_grad():
        for layer in disc.net[::2]:
            layer.weight.zero_()
            layer.bias.zero_()
        disc.net[0].weight[:2, 0] = torch.tensor([1.0, -1.0])
        disc.net[2].weight[0, 0], disc.net[2].weight[1, 1] = 1.0, 1.0
        disc.net[4].weight[0, :2] = torch.tensor([1.0, -1.0])
    return disc


def test_the_picks_are_the_candidates_the_discriminator_deems_least_likely_labeled(monkeypatch):
    trained = []
    monkeypatch.setattr(vaal, "VAE", _Identity)
    monkeypatch.setattr(vaal, "Discriminator", _identity_discriminator)
    monkeypatch.setattr(vaal, "train_vaal", lambda *a, **k: trained.append(a[3]) or {})
    codes = [0.3, -2.0, 1.5, -0.1, -2.0, 0.7]  # outputs sigmoid(code): the lowest are positions 1, 4 (tied), 3
    images = torch.tensor(codes).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    inputs = PoolInputs(n=6, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"), images=images,
                        labeled_images=torch.zeros(4, 1, 4, 4))
    assert create_strategy("vaal").select(inputs, 3).tolist() == [1, 4, 3]
    assert trained == [max(1, (4 + 6) // 128)]  # iterations = images x epochs // batch size, at least 1


def test_a_selection_is_reproducible_and_leaves_the_global_generators_alone():
    g = torch.Generator().manual_seed(5)
    images, labeled = torch.randn(30, 1, 8, 8, generator=g), torch.randn(10, 1, 8, 8, generator=g)
    strategy = create_strategy("vaal", batch_size=8, vae_epochs=0.5)
    before = torch.random.get_rng_state()
    scores = [strategy.score(PoolInputs(n=30, rng=np.random.default_rng(3), model=None, device=torch.device("cpu"),
                                        images=images, labeled_images=labeled)) for _ in range(2)]
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=0)
    assert scores[0].shape == (30,) and torch.isfinite(scores[0]).all()


def test_batches_follow_the_authors_loaders_where_they_can():
    g = torch.Generator().manual_seed(0)
    small = vaal._stream(5, 8, g, torch.device("cpu"), whole_only=True)  # smaller than a batch: the whole set
    assert [sorted(next(small).tolist()) for _ in range(2)] == [list(range(5))] * 2
    labeled = vaal._stream(10, 4, g, torch.device("cpu"), whole_only=True)  # drop_last: 2 batches a pass
    assert [next(labeled).numel() for _ in range(4)] == [4, 4, 4, 4]
    unlabeled = vaal._stream(9, 4, g, torch.device("cpu"), whole_only=False)  # 4, 4, and the single one skipped
    first_pass = [next(unlabeled) for _ in range(2)]
    assert [b.numel() for b in first_pass] == [4, 4] and next(unlabeled).numel() == 4
    assert vaal._batch_bounds(21, 10) == [(0, 10), (10, 21)] and vaal._batch_bounds(25, 10)[-1] == (20, 25)


# ---------------------------------------------------------------- the architecture follows the image size


@pytest.mark.parametrize(("side", "stages", "end"), [(32, 4, 2), (8, 3, 1), (12, 2, 3), (28, 2, 7), (64, 4, 4)])
def test_the_vae_follows_the_image_size(side, stages, end):
    assert vae_stages(side, side) == stages
    vae = VAE(2, side, side, 5)
    assert vae.fc_mu.in_features == vaal.WIDTHS[stages - 1] * end * end
    vae.eval()
    recon, mu, logvar = vae(torch.randn(3, 2, side, side), torch.randn(3, 5))
    assert recon.shape == (3, 2, side, side) and mu.shape == logvar.shape == (3, 5)


@pytest.mark.parametrize(("height", "width"), [(6, 6), (7, 7), (8, 6), (33, 32)])
def test_a_size_no_vae_fits_is_refused_in_one_line(height, width):
    with pytest.raises(UserError, match=f"cannot fit a VAE to {height}x{width} images") as err:
        create_strategy("vaal").check_images(1, height, width)
    assert "\n" not in str(err.value) and "--image-size" in str(err.value)
    with pytest.raises(UserError):
        VAE(1, height, width)


def test_the_cli_refuses_an_image_size_before_any_work(cli, tmp_path):
    status, out, err = cli("--strategies", "vaal", "random", "--image-size", "6", "--initial", "20", "--budget",
                           "10", "--cycles", "2", "--epochs", "1", "--seeds", "1", "--out", tmp_path / "run")
    assert status == 2, err
    assert err.count("\n") == 1 and "cannot fit a VAE to 6x6 images" in err
    assert not (tmp_path / "run" / "cycles.parquet").exists()


@pytest.mark.parametrize(("key", "value", "words"), [
    ("vae_epochs", "0", "positive finite number"), ("lr", "-1", "positive finite number"),
    ("beta", "-0.5", "non-negative finite number"), ("adversary_param", "nan", "non-negative finite number"),
    ("batch_size", "1", "integer of at least 2"), ("latent_dim", "0", "integer of at least 1"),
    ("vae_steps", "0", "integer of at least 1"), ("scoring_bn", "eval", "one of running, batch"),
])
def test_bad_parameters_are_one_line(key, value, words):
    with pytest.raises(UserError, match=f"'vaal.{key}' parameter must be (a |an |)?{words}") as err:
        create_strategy("vaal", **{key: value})
    assert "\n" not in str(err.value)


def test_the_cli_refuses_a_bad_parameter_with_status_2(cli, tmp_path):
    status, _, err = cli("--strategies", "vaal", "--strategy-param", "vaal.beta=-1", "--out", tmp_path / "run")
    assert status == 2 and err.count("\n") == 1 and "'vaal.beta' parameter" in err


def test_a_frozen_feature_run_refuses_it():
    from bench.runner.resolve import build_config

    with pytest.raises(UserError, match="'vaal' cannot run with --train-mode frozen: it reads the images"):
        build_config(strategies=["vaal"], seeds=1, protocol={"train_mode": "frozen"})


# ---------------------------------------------------------------- the backbone trains as it would without it


def test_the_backbone_starts_and_trains_as_with_random(monkeypatch):
    """Same seed: the same initial weights, the same trained weights and cycle-0 accuracy as random's; no
    auxiliary head goes to the trainer; and vaal's images are the network's inputs."""
    data = load_dataset("digits")
    p = Protocol(initial=20, budget=10, cycles=2, epochs=2, milestones=(), subset=40, precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), p, torch.device("cpu"))
    fits, seen = {}, {}
    fit = Trainer.fit

    def recording(self, model, labeled, generator, aux_head=None, aux_generator=None):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = fit(self, model, labeled, generator, aux_head, aux_generator)
        fits[current] = (before, {k: v.clone() for k, v in model.state_dict().items()}, aux_head)
        return result

    gather = loop.gather_inputs

    def gathering(strategy, trainer, model, aux_head, cand, labeled, rng):
        seen[current] = gather(strategy, trainer, model, aux_head, cand, labeled, rng)
        return seen[current]

    monkeypatch.setattr(Trainer, "fit", recording)
    monkeypatch.setattr(loop, "gather_inputs", gathering)
    rows = {}
    for current in ("random", "vaal"):
        params = {"vae_epochs": 0.2, "batch_size": 16} if current == "vaal" else {}
        rows[current] = next(loop.run_job(JobSpec("t", "digits", current, 0, p, params), trainer,
                                          data.n_classes)).record
    assert rows["vaal"]["test_acc"] == rows["random"]["test_acc"]
    assert rows["vaal"]["train_loss"] == rows["random"]["train_loss"]
    for index in (0, 1):  # before and after training
        a, b = fits["random"][index], fits["vaal"][index]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fits["vaal"][2] is None
    inputs = seen["vaal"]
    assert inputs.images.shape == (40, 1, 8, 8) and inputs.labeled_images.shape == (20, 1, 8, 8)
    assert inputs.embeddings is None and inputs.logits is None
    assert math.isclose(float(inputs.labeled_images.mean()), float(trainer.prepare(
        trainer.data.train_images(torch.from_numpy(loop.initial_set(0, data.x_train.shape[0], 20)))).mean()))
