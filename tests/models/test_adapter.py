"""bench.models.adapter: any nn.Module whose forward returns logits, as a Backbone: torchvision's classification
models give the logits, embedding and stage maps their own layers give, and a hand-built module's plan is worked out
by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.core.errors import UserError
from bench.models import adapter
from bench.models.backbones import MODELS
from bench.models.build import build_model
from conftest import torchvision_module as _torchvision

RESNET = "torchvision:resnet18"


def test_adapter_gives_the_torchvision_models_logits_embedding_and_layer_maps():
    model = build_model(RESNET, 3, 10, generator_seed=7, input_size=(32, 32)).eval()
    torch.manual_seed(7)  # the same seed builds the same network through torchvision itself
    reference = _torchvision().models.resnet18(num_classes=10).eval()
    maps = {}
    for name in ("layer1", "layer2", "layer3", "layer4", "avgpool"):
        getattr(reference, name).register_forward_hook(lambda m, i, o, name=name: maps.__setitem__(name, o))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, logits = model(x), reference(x)
    assert model.stage_channels == [64, 128, 256, 512] and model.embedding_dim == 512
    assert model.classifier.out_features == 10 and out.logits.dtype == torch.float32
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.embedding, torch.flatten(maps["avgpool"], 1))
    torch.testing.assert_close(model.head(out.embedding), logits)
    for got, name in zip(out.features, ("layer1", "layer2", "layer3", "layer4"), strict=True):
        torch.testing.assert_close(got, maps[name])


def test_grayscale_images_are_repeated_to_three_channels():
    model = build_model(RESNET, 1, 4, generator_seed=0, input_size=(16, 16)).eval()
    gray = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one, three = model(gray).logits, model.body(gray.repeat(1, 3, 1, 1))["embedding"]
    torch.testing.assert_close(one, model.head(torch.flatten(three, 1)))


def test_stages_are_the_last_map_at_each_resolution():
    model = build_model("torchvision:mobilenet_v3_small", 3, 5, generator_seed=0, input_size=(32, 32)).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 32, 32))
    channels = [16, 16, 24, 48, 576]  # features.0, 1, 3, 8, 12: the last block at 16, 8, 4, 2 and 1 pixels
    sizes = [f.shape[-1] for f in out.features]
    assert model.stage_channels == channels == [f.shape[1] for f in out.features]
    assert sizes == sorted(set(sizes), reverse=True)  # one map per resolution, shrinking
    assert out.embedding.shape == (2, model.embedding_dim) and out.logits.shape == (2, 5)


def test_two_models_of_one_name_and_one_class_name_get_their_own_plans():
    """Two model files may register one name with classes of one name: each network is traced for itself (a plan
    kept from the first would name a classifier the second does not have)."""

    def net_class(head: str) -> type[torch.nn.Module]:
        class Net(torch.nn.Module):
            def __init__(self, c: int, n: int) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(c, 4, 3)
                setattr(self, head, torch.nn.Linear(4, n))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return getattr(self, head)(self.conv(x).mean(dim=(2, 3)))

        return Net

    classifiers = []
    for head in ("fc", "head"):
        net = net_class(head)
        with MODELS.scoped():
            MODELS.register("test-same-name")(lambda c, n, net=net: net(c, n))
            classifiers.append(build_model("test-same-name", 3, 4, 0, (12, 12)).plan.classifier)
    assert classifiers == ["fc", "head"]


# torchvision's Swin at a size a test can afford: its stages output [B, H, W, C] maps
def tiny_swin(n_classes: int) -> torch.nn.Module:
    return _torchvision().models.SwinTransformer(patch_size=[2, 2], embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                              window_size=[2, 2], num_classes=n_classes)


def test_channels_last_stage_maps_are_recognised_and_handed_on_as_channels_first(models):
    MODELS.register("test-swin")(lambda in_channels, n_classes: tiny_swin(n_classes))
    model = build_model("test-swin", 3, 4, generator_seed=3, input_size=(16, 16)).eval()
    torch.manual_seed(3)  # the same seed builds the same network directly
    reference = tiny_swin(4).eval()
    maps = {}
    for i in (1, 3):  # the last block at 8 x 8 and at 4 x 4 (features.2 merges patches, features.3 is the stage)
        reference.features[i].register_forward_hook(lambda m, inp, o, i=i: maps.__setitem__(i, o))
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, logits = model(x), reference(x)
    assert maps[1].shape == (2, 8, 8, 8) and maps[3].shape == (2, 4, 4, 16)  # channels last: [B, H, W, C]
    assert model.plan.stages == ("features.1", "features.3") and model.stage_channels == [8, 16]
    for got, i in zip(out.features, (1, 3), strict=True):
        torch.testing.assert_close(got, maps[i].permute(0, 3, 1, 2))  # [B, C, H, W], as every strategy reads them
    torch.testing.assert_close(out.logits, logits)


def test_numbers_do_not_depend_on_the_adapter_being_built_twice():
    """The plan is cached per process; a second build must give the same initial weights and stages."""
    a = build_model(RESNET, 3, 4, 3, (16, 16))
    b = build_model(RESNET, 3, 4, 3, (16, 16))
    assert a.stage_channels == b.stage_channels
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert np.array_equal(a.classifier.weight.detach().numpy(), b.classifier.weight.detach().numpy())


class _Net(nn.Module):
    """Two containers at 8 x 8 (the second is the stage there), one at 4 x 4, a pooled classifier."""

    def __init__(self, twice: bool = False) -> None:
        super().__init__()
        self.twice = twice
        self.one = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.two = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.down(self.two(self.one(x))).mean(dim=(2, 3)))
        return 2 * logits if self.twice else logits


def test_a_hand_built_modules_plan_is_its_last_map_at_each_resolution_and_its_last_linear():
    found = adapter.plan(_Net(), "net", (1, 3, 8, 8))
    assert (found.classifier, found.stages, found.stage_channels, found.channels_last) == (
        "fc", ("two", "down"), (6, 5), (False, False))
    net = _Net().eval()
    model = adapter.AdaptedBackbone(net, "net", 3, (8, 8)).eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        two = net.two(net.one(x))
        down = net.down(two)
        torch.testing.assert_close(out.logits, net(x))
    torch.testing.assert_close(out.features[0], two)
    torch.testing.assert_close(out.features[1], down)
    torch.testing.assert_close(out.embedding, down.mean(dim=(2, 3)))
    # the state dict a user saved from the module itself maps onto the adapter's names
    assert model.file_key("classifier.weight") == "fc.weight" and model.file_key("body.one.0.bias") == "one.0.bias"


def test_a_module_that_offers_no_classifier_is_one_line():
    with pytest.raises(UserError, match="'flat' has no nn.Linear classifier"):
        adapter.plan(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), "flat", (1, 3, 4, 4))
    with pytest.raises(UserError, match=r"model 'twice' does not return its last nn.Linear's output \(fc\)"):
        adapter.plan(_Net(twice=True), "twice", (1, 3, 8, 8))
