"""bench.models.backbones: the Backbone contract (logits, the classifier's input as the embedding, one map per
stage, the head in fp32), initial weights from the seed alone, AuxHead's hooks, and the model registry that refuses
a taken name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.core.errors import UserError
from bench.models.backbones import AuxHead, ModelOutput, create_model, list_models, register_model


@pytest.mark.parametrize("name, size, channels", [("cnn", 8, [32, 64, 128]), ("resnet18", 8, [64, 128, 256, 512])])
def test_a_backbone_gives_logits_its_embedding_and_one_map_per_stage(name, size, channels):
    model = create_model(name, 3, 5, generator_seed=0).eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, ModelOutput) and model.stage_channels == channels == [f.shape[1] for f in out.features]
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, channels[-1]) == (2, model.embedding_dim)
    # the embedding is the last map's global average; the logits are the classifier on it
    torch.testing.assert_close(out.embedding, out.features[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(out.logits, out.embedding @ model.classifier.weight.T + model.classifier.bias)
    sizes = [f.shape[-1] for f in out.features]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == size  # the first stage at the input's size


def test_under_bf16_autocast_what_strategies_rank_stays_float32():
    model = create_model("cnn", 1, 4, generator_seed=0).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    with torch.no_grad():  # the head in fp32 on the bf16 body's last map, outside autocast
        reference = model.classifier(F.adaptive_avg_pool2d(out.features[-1].float(), 1).flatten(1))
    assert out.features[-1].dtype == torch.bfloat16  # the body did run in bf16
    assert out.logits.dtype == out.embedding.dtype == torch.float32
    torch.testing.assert_close(out.logits, reference)


def test_initial_weights_depend_on_the_seed_alone_and_leave_the_global_generator_be():
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    a = create_model("cnn", 3, 4, generator_seed=11).state_dict()
    assert torch.equal(torch.rand(3), expected_draw)  # the global stream is where it was
    torch.rand(100)  # whatever ran before: the same network
    b = create_model("cnn", 3, 4, generator_seed=11).state_dict()
    c = create_model("cnn", 3, 4, generator_seed=12).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_an_aux_head_must_say_its_loss_and_its_output():
    head = AuxHead()
    out = ModelOutput(torch.zeros(2, 3), torch.zeros(2, 4), [])
    with pytest.raises(NotImplementedError):
        head.training_loss(out, torch.zeros(2), torch.zeros(2, dtype=torch.long), 0, torch.Generator())
    with pytest.raises(NotImplementedError):
        head(out)


def test_the_registry_refuses_a_taken_name_and_lists_the_built_ins():
    assert {"cnn", "resnet18"} <= set(list_models()) and list_models() == sorted(list_models())
    with pytest.raises(UserError) as caught:
        register_model("cnn")(lambda c, n: None)
    assert str(caught.value).startswith("Model name 'cnn' is taken by ") and "another name" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="Unknown model 'cnm' \\(did you mean 'cnn'\\?\\)"):
        create_model("cnm", 3, 4, 0)
