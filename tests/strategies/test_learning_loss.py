"""Learning loss against the reference code (Mephisto405's port, tests/fixtures/learning_loss.npz: its loss, module,
selection and detach epoch) and independent computations: Eq. 2 as an explicit loop over pairs, hand-worked picks,
gradients checked on the backbone's own parameters, module shapes read off the models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import create_model
from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.learning_loss import LossPredictionModule, loss_prediction_loss, mse_loss


def eq2_by_hand(predicted: list[float], target: list[float], margin: float) -> float:
    """Eq. 2, written out: pair i with B-1-i, sign +1 iff l_i > l_j, mean of the hinge over the pairs."""
    b = len(predicted)
    terms = []
    for i in range(b // 2):
        j = b - 1 - i
        sign = 1.0 if target[i] > target[j] else -1.0
        terms.append(max(0.0, -sign * (predicted[i] - predicted[j]) + margin))
    return sum(terms) / len(terms) if terms else 0.0


# ---------------------------------------------------------------- the loss-prediction loss


@pytest.mark.parametrize("batch", [2, 3, 7, 8, 33, 128])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_ranking_loss_equals_eq2_by_hand(batch, margin):
    g = torch.Generator().manual_seed(batch)
    predicted = torch.randn(batch, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (batch,), generator=g).double()  # few distinct values: many ties
    got = loss_prediction_loss(predicted, target, margin)
    assert got.item() == pytest.approx(eq2_by_hand(predicted.tolist(), target.tolist(), margin), abs=1e-12)


def test_ranking_loss_hand_worked_example_with_a_tie_and_an_odd_batch():
    # B = 5: pairs (0, 4), (1, 3); element 2 is left out.
    predicted = torch.tensor([2.0, 0.0, 100.0, 0.5, 1.5])
    target = torch.tensor([3.0, 1.0, -50.0, 1.0, 2.0])
    # pair (0,4): l0 > l4 -> sign +1, p0 - p4 = 0.5 -> max(0, 1 - 0.5) = 0.5
    # pair (1,3): tie -> sign -1, p1 - p3 = -0.5 -> max(0, 1 - 0.5) = 0.5
    assert loss_prediction_loss(predicted, target).item() == pytest.approx(0.5)
    # The tie counts as -1, so p1 > p3 is penalised: p1 - p3 = 2.5 -> max(0, 1 + 2.5) = 3.5 (a +1 would give 0).
    predicted[1] = 3.0
    assert loss_prediction_loss(predicted, target).item() == pytest.approx((0.5 + 3.5) / 2)


def test_ranking_loss_detaches_the_target_and_survives_a_batch_of_one():
    predicted = torch.randn(6, requires_grad=True)
    target = torch.randn(6, requires_grad=True)
    loss_prediction_loss(predicted, target).backward()
    assert predicted.grad is not None and target.grad is None

    single = torch.randn(1, requires_grad=True)
    zero = loss_prediction_loss(single, torch.randn(1, requires_grad=True))
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()  # part of the graph: backward runs and gives a zero gradient
    assert single.grad is not None and single.grad.abs().sum() == 0


def test_mse_variant_by_hand():
    predicted = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    target = torch.tensor([0.5, 2.0, 1.0], requires_grad=True)
    assert mse_loss(predicted, target).item() == pytest.approx((0.25 + 0.0 + 9.0) / 3)
    mse_loss(predicted, target).backward()
    assert target.grad is None


def test_module_weighs_its_loss_and_chooses_the_variant():
    model = create_model("cnn", 1, 10, generator_seed=0)
    out = model(torch.randn(6, 1, 8, 8))
    per_sample = torch.rand(6)
    for loss, reference in (("ranking", loss_prediction_loss), ("mse", mse_loss)):
        head = LossPredictionModule(model.stage_channels, weight=0.5, loss=loss, margin=1.0)
        with torch.no_grad():
            expected = 0.5 * reference(head(out), per_sample)
        got = head.training_loss(out, per_sample, torch.zeros(6, dtype=torch.long), 0, torch.Generator())
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------- the module


@pytest.mark.parametrize(("model_name", "size"), [("cnn", 8), ("resnet18", 32), ("resnet18", 20)])
def test_module_shapes_follow_the_model_stages(model_name, size):
    model = create_model(model_name, 3, 10, generator_seed=0)
    head = create_strategy("ll").aux_head(model, Protocol())
    stages = list(model.stage_channels)
    assert [fc.in_features for fc in head.fcs] == stages
    assert all(fc.out_features == 128 for fc in head.fcs)
    assert (head.linear.in_features, head.linear.out_features) == (128 * len(stages), 1)
    model.eval()
    out = model(torch.randn(4, 3, size, size))
    assert [f.shape[1] for f in out.features] == stages
    assert head(out).shape == (4,)


def test_module_forward_is_gap_fc_relu_concat_linear():
    head = LossPredictionModule([2, 3])
    features = [torch.randn(4, 2, 5, 5), torch.randn(4, 3, 2, 2)]
    parts = [torch.relu(f.mean(dim=(2, 3)) @ fc.weight.T + fc.bias) for f, fc in zip(features, head.fcs, strict=True)]
    expected = torch.cat(parts, dim=1) @ head.linear.weight.T + head.linear.bias  # [4, 1]
    torch.testing.assert_close(head.predict(features), expected[:, 0])


@pytest.mark.parametrize(("detach_after", "epochs", "convention", "first_detached"), [
    (1, 200, "corrected", 1), (5, 200, "corrected", 5),  # 0-based epoch e >= detach_after is detached
    (0.6, 10, "corrected", 6), (0.6, 200, "corrected", 120),  # a fraction of the protocol's epochs
    (5, 200, "reference", 6), (0.6, 200, "reference", 121),  # the reference code's `epoch > detach_after`
])
def test_gradient_reaches_the_backbone_only_before_detach_after(detach_after, epochs, convention, first_detached):
    model = create_model("cnn", 1, 10, generator_seed=0)
    protocol = Protocol(epochs=epochs, milestones=(), convention=convention)
    head = create_strategy("ll", detach_after=detach_after).aux_head(model, protocol)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    conv = model.stages[0][0][0].weight  # the first stage's first convolution

    def backbone_and_module_grads(epoch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        model.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        out = model(x)
        per_sample = F.cross_entropy(out.logits, y, reduction="none")
        head.training_loss(out, per_sample, y, epoch, torch.Generator()).backward()  # the aux term alone
        return conv.grad, head.fcs[0].weight.grad

    backbone, module = backbone_and_module_grads(first_detached - 1)
    assert backbone is not None and backbone.abs().sum() > 0
    assert module is not None and module.abs().sum() > 0
    backbone, module = backbone_and_module_grads(first_detached)
    assert backbone is None or backbone.abs().sum() == 0
    assert module is not None and module.abs().sum() > 0


# ---------------------------------------------------------------- the strategy


def pool(aux: list[float], logits: torch.Tensor | None = None) -> PoolInputs:
    n = len(aux)
    return PoolInputs(n=n, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"),
                      logits=logits if logits is not None else torch.zeros(n, 3), aux_output=torch.tensor(aux))


def test_selects_the_highest_predicted_losses():
    strategy = create_strategy("learning-loss")
    picks = strategy.select(pool([0.3, 2.0, -1.0, 0.9, 2.0, float("nan"), 1.5]), 4)
    # 2.0 at positions 1 and 4 (tie: lower position first), then 1.5, then 0.9; NaN is never preferred.
    assert picks.tolist() == [1, 4, 6, 3]


def test_cycle_metrics_are_spearman_of_predicted_and_true_loss_over_the_picks_and_the_candidates():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 3, generator=g)
    aux = torch.randn(10, generator=g).tolist()
    picks = np.array([7, 2, 5, 0, 9])
    labels = torch.tensor([0, 2, 1, 1, 0, 2, 2, 0, 1, 1])  # every candidate's true label
    true = [-math.log(torch.softmax(logits[i], 0)[labels[i]].item()) for i in range(10)]
    got = create_strategy("ll").cycle_metrics(pool(aux, logits), picks, labels)
    assert got["ll_spearman"] == pytest.approx(sps.spearmanr([aux[p] for p in picks], [true[p] for p in picks])[0])
    assert got["ll_spearman_candidates"] == pytest.approx(sps.spearmanr(aux, true)[0])
    assert got["ll_spearman"] != pytest.approx(got["ll_spearman_candidates"])
    constant = create_strategy("ll").cycle_metrics(pool([1.0] * 10, logits), picks, labels)
    assert math.isnan(constant["ll_spearman"]) and math.isnan(constant["ll_spearman_candidates"])


def test_parameters_and_their_errors():
    strategy = create_strategy("ll", margin="0.5", detach_after="3", loss="mse")
    assert (strategy.margin, strategy.weight, strategy.detach_after, strategy.loss) == (0.5, 1.0, 3, "mse")
    head = strategy.aux_head(create_model("cnn", 1, 10, generator_seed=0), Protocol())
    assert (head.margin, head.detached_from, head.loss) == (0.5, 3, "mse")
    assert create_strategy("ll", detach_after="0.25").detach_after == 0.25  # a fraction of the epochs
    with pytest.raises(UserError, match="ranking, mse"):
        create_strategy("ll", loss="hinge")
    for bad in (-1, 1.5, "soon"):
        with pytest.raises(UserError, match="detach_after"):
            create_strategy("ll", detach_after=bad)


# ---------------------------------------------------------------- held to the authors' code (learning_loss.npz)

LL_FIXTURE = ROOT / "tests" / "fixtures" / "learning_loss.npz"


@pytest.mark.parametrize("batch", [2, 8, 128])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_ranking_loss_equals_the_authors_loss_pred_loss(batch, margin):
    ref = np.load(LL_FIXTURE, allow_pickle=False)
    predicted, target = (torch.from_numpy(ref[f"loss_{part}_{batch}"]) for part in ("predicted", "target"))
    expected = float(ref[f"loss_{batch}_m{str(margin).replace('.', '')}"])
    assert loss_prediction_loss(predicted, target, margin).item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_module_forward_equals_the_authors_lossnet():
    ref = np.load(LL_FIXTURE, allow_pickle=False)
    head = LossPredictionModule([3, 4, 5, 6], hidden=16)  # their LossNet(num_channels=[3, 4, 5, 6], interm_dim=16)
    with torch.no_grad():  # their seeded initial weights, FC1..FC4 and linear
        for layer, name in [*((fc, f"FC{i + 1}") for i, fc in enumerate(head.fcs)), (head.linear, "linear")]:
            layer.weight.copy_(torch.from_numpy(ref[f"net_{name}.weight"]))
            layer.bias.copy_(torch.from_numpy(ref[f"net_{name}.bias"]))
        got = head.predict([torch.from_numpy(ref[f"net_feature_{i}"]) for i in range(4)])  # fp32, as it ranks
    np.testing.assert_allclose(got.numpy(), ref["net_output"], rtol=1e-5, atol=1e-6)


def test_picks_equal_the_authors_selection():
    ref = np.load(LL_FIXTURE, allow_pickle=False)
    subset = ref["select_subset"]  # their shuffled candidates: our position i is their subset[i]
    picks = create_strategy("ll").select(pool(ref["select_predicted"].tolist()), int(ref["select_k"]))
    assert subset[picks].tolist() == ref["select_picks"][::-1].tolist()  # theirs: the last K of an ascending argsort


@pytest.mark.parametrize("convention", ["reference", "corrected"])
def test_detach_epoch_on_both_sides_of_the_authors_train_epoch(convention):
    # the authors' train_epoch at 0-based epochs 119, 120, 121 with EPOCHL = 120: does the module's loss reach the
    # backbone? Theirs detaches from epoch 121 on (`epoch > 120`); the corrected convention one epoch earlier
    ref = np.load(LL_FIXTURE, allow_pickle=False)
    model = create_model("cnn", 1, 10, generator_seed=0)
    protocol = Protocol(epochs=200, milestones=(), convention=convention)
    head = create_strategy("ll", detach_after=int(ref["detach_epoch_loss"])).aux_head(model, protocol)
    x, y = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    reached = []
    for epoch in ref["detach_epochs"].tolist():
        model.zero_grad(set_to_none=True)
        out = model(x)
        per_sample = F.cross_entropy(out.logits, y, reduction="none")
        head.training_loss(out, per_sample, y, epoch, torch.Generator()).backward()  # the module's term alone
        reached.append(any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.stages.parameters()))
    theirs = ref["detach_backbone_reached"].tolist()
    assert reached == (theirs if convention == "reference" else [True, False, False]) and theirs == [True, True, False]
