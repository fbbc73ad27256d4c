"""Bring your own model: torchvision's classification models through the Backbone adapter, --weights,
--image-size, --model-file, and datasets named by their file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.core.config import Protocol, RunConfig
from bench.core.errors import UserError
from bench.core.seeding import derive_seed
from bench.data.datasets import load_dataset
from bench.models.backbones import MODELS
from bench.models.build import build_model, check_input_size, load_model_file
from bench.runner.resolve import build_config
from bench.runner.scheduler import DataSource, execute
from bench.training.jobs import JobSpec
from bench.training.loop import initial_model, next_cycle, start_state
from bench.training.trainer import DeviceData, Trainer
from conftest import SHARED_DATA, TINY


def _torchvision():
    """torchvision, imported by the tests that build its models rather than at collection (with torch._dynamo,
    which it loads, it costs seconds in every test process)."""
    import torchvision

    return torchvision


SLICE = SHARED_DATA / "cifar10-jpeg-10k.npz"
RESNET = "torchvision:resnet18"
ONE_CYCLE = ["--initial", "8", "--budget", "8", "--cycles", "2", "--subset", "16", "--epochs", "1", "--seeds", "1",
             "--batch-size", "8"]


@pytest.fixture
def models():
    """Model files register names globally: each test gets the registry it started with."""
    with MODELS.scoped():
        yield


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _resnet_weights(path: Path, n_classes: int, seed: int = 123) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = _torchvision().models.resnet18(num_classes=n_classes).state_dict()
    torch.save(state, path)
    return state


# ---------------------------------------------------------------------------------------------- the adapter


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


# torchvision's ViT at a size a test can afford (vit_b_16 is the same class with 86M parameters at 224 x 224)
TINY_VIT = """
from torchvision.models import VisionTransformer
from bench.models.backbones import register_model


@register_model("test-vit")
def vit(in_channels, n_classes):
    return VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=n_classes)
"""


def test_images_too_small_for_a_model_are_one_line(tmp_path, models):
    (tmp_path / "vit.py").write_text(TINY_VIT)
    load_model_file(tmp_path / "vit.py")
    with pytest.raises(UserError) as caught:
        check_input_size("test-vit", 3, 12, 12)
    assert "12x12" in str(caught.value) and "--image-size" in str(caught.value)
    assert check_input_size("test-vit", 3, 16, 16).stage_channels == []  # no 4-D stage outputs: no stages


def test_a_vit_has_no_stage_features_and_learning_loss_is_refused_before_any_work(cli, tiny_npz, tmp_path, models):
    (tmp_path / "vit.py").write_text(TINY_VIT)
    status, out, err = cli("--model-file", tmp_path / "vit.py", "--model", "test-vit", "--image-size", "16",
                           "--dataset", f"npz:{tiny_npz}", "--strategies", "random", "ll", *ONE_CYCLE,
                           "--out", tmp_path / "run")
    line = _one_line(err)
    assert status == 2 and "'learning-loss' reads the backbone's stage feature maps" in line, line
    assert "'test-vit' has none" in line and not (tmp_path / "run").exists()


def test_an_unknown_torchvision_model_is_one_line_with_the_closest_match(cli):
    status, _, err = cli("--model", "torchvision:resnet19", "--dry-run")
    assert status == 2 and "did you mean 'resnet18'" in _one_line(err)


# ---------------------------------------------------------------------------------------------- runs


@pytest.mark.skipif(not SLICE.is_file(), reason="the CIFAR-10 slice is not on this machine")
def test_a_tiny_resnet18_run_on_the_cifar_slice(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default results folder, named after the file's stem
    status, out, err = cli("--model", RESNET, "--dataset", f"npz:{SLICE}", "--strategies", "ll", "--baseline", "ll",
                           *ONE_CYCLE)
    assert status == 0, err
    folder = tmp_path / "results" / "quick-cifar10-jpeg-10k"
    rows = pd.read_parquet(folder / "cycles.parquet")
    assert list(rows["n_labeled"]) == [8, 16] and set(rows["model"]) == {RESNET}
    assert rows["test_acc"].between(0, 1).all() and rows["ll_spearman_candidates"].notna().any()  # stages used
    config = json.loads((folder / "config.json").read_text())
    assert config["dataset"]["spec"] == f"npz:{SLICE}" and config["model"]["name"] == RESNET
    assert "stages layer1, layer2, layer3, layer4" in out


# ---------------------------------------------------------------------------------------------- weights


def _spec(model: str, seed: int, weights: Path | None = None, **protocol) -> JobSpec:
    p = Protocol(model=model, **protocol)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights else ""
    return JobSpec(run="t", dataset=p.dataset, strategy="random", seed=seed, protocol=p,
                   weights=str(weights) if weights else None, weights_sha256=sha)


def test_every_seed_starts_from_the_weights_with_its_own_classifier_when_the_classes_differ(tmp_path):
    same, imagenet = tmp_path / "four.pt", tmp_path / "thousand.pt"
    saved = _resnet_weights(same, 4)
    saved_1000 = _resnet_weights(imagenet, 1000, seed=5)
    model = initial_model(_spec(RESNET, 1, same), 3, 4, (16, 16)).state_dict()
    for key, value in saved.items():
        name = "classifier." + key[3:] if key.startswith("fc.") else "body." + key
        torch.testing.assert_close(model[name], value)
    starts = [initial_model(_spec(RESNET, seed, imagenet), 3, 4, (16, 16)).state_dict() for seed in (0, 1)]
    for start, seed in zip(starts, (0, 1), strict=True):
        torch.testing.assert_close(start["body.conv1.weight"], saved_1000["conv1.weight"])
        torch.testing.assert_close(start["body.layer4.1.bn2.running_var"], saved_1000["layer4.1.bn2.running_var"])
        own = build_model(RESNET, 3, 4, derive_seed(seed, "init-weights"), (16, 16)).state_dict()
        torch.testing.assert_close(start["classifier.weight"], own["classifier.weight"])  # the seed's own
    assert not torch.equal(starts[0]["classifier.weight"], starts[1]["classifier.weight"])


def test_a_trained_cycle_starts_from_the_weights(tiny_npz, tmp_path):
    path = tmp_path / "w.pt"
    saved = _resnet_weights(path, 4)
    data = load_dataset(f"npz:{tiny_npz}", tmp_path, download=False)
    protocol = dict(dataset=f"npz:{tiny_npz}", initial=8, budget=4, cycles=1, epochs=1, batch_size=8, lr=1e-12,
                    momentum=0.0, weight_decay=0.0, milestones=(), precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), Protocol(model=RESNET, **protocol),
                      torch.device("cpu"))
    after = {}
    for weights in (path, None):
        spec = _spec(RESNET, 0, weights, **protocol)
        _, state = next_cycle(spec, trainer, data.n_classes, start_state(spec, int(data.x_train.shape[0])))
        after[weights] = state.model["body.conv1.weight"]
    torch.testing.assert_close(after[path], saved["conv1.weight"])  # lr 1e-12: training moved nothing
    assert not torch.allclose(after[None], saved["conv1.weight"])


def test_weights_are_recorded_and_part_of_the_configuration(cli, tiny_npz, tmp_path):
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    _resnet_weights(first, 1000, seed=1)
    _resnet_weights(second, 1000, seed=2)
    run = tmp_path / "run"
    common = ("--model", RESNET, "--dataset", f"npz:{tiny_npz}", "--strategies", "random", *ONE_CYCLE, "--out", run)
    status, out, err = cli(*common, "--weights", first)
    assert status == 0, err
    assert "classifier fc.weight, fc.bias not loaded ([1000, 512] in the file for 4 classes here" in out
    config = json.loads((run / "config.json").read_text())
    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    assert config["model"]["weights"] == {"path": str(first.resolve()), "sha256": sha}
    assert config["model_fingerprint"] == {"weights": sha}
    status, _, err = cli(*common, "--weights", second)
    line = _one_line(err)
    assert status == 2 and "model_fingerprint.weights" in line and "another configuration" in line


def test_the_job_hash_keeps_its_value_without_the_new_settings_and_changes_with_each(tiny_npz, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    _resnet_weights(a, 4, seed=1)
    _resnet_weights(b, 4, seed=2)
    plain = build_config(strategies=["random"], protocol={"model": RESNET})
    fields = {k: v for k, v in dataclasses.asdict(plain.protocol).items()
              if k not in ("image_size", "train_mode", "deterministic", "optimizer")}
    text = json.dumps({"protocol": fields, "dataset": "", "strategy": "random", "params": {}}, sort_keys=True,
                      default=str)
    assert plain.job_hash("random") == hashlib.sha256(text.encode()).hexdigest()[:12]  # as before these settings
    hashes = {build_config(strategies=["random"], protocol={"model": RESNET}, weights=w).job_hash("random")
              for w in (a, b)}
    hashes.add(build_config(strategies=["random"], protocol={"model": RESNET, "image_size": 32}).job_hash("random"))
    assert len(hashes | {plain.job_hash("random")}) == 4


class _Marker:
    """Unpickling it would create a file: the weights reader must refuse before that."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _bad_weights(folder: Path) -> dict[str, tuple[Path, str]]:
    torch.save(build_model("cnn", 3, 4, 0).state_dict(), folder / "cnn.pt")
    torch.save({"state_dict": _torchvision().models.resnet18(num_classes=4).state_dict()}, folder / "nested.pt")
    torch.save([torch.zeros(2)], folder / "list.pt")
    with open(folder / "object.pt", "wb") as f:
        pickle.dump(_Marker(folder / "unpickled"), f)
    torch.save(_torchvision().models.resnet34(num_classes=4).state_dict(), folder / "resnet34.pt")
    return {
        "wrong-keys": (folder / "cnn.pt", "missing keys conv1.weight, bn1.weight, bn1.bias (+"),
        "nested": (folder / "nested.pt", "entry 'state_dict' holds a dict"),
        "not-a-dict": (folder / "list.pt", "holds a list, not a state dict"),
        "pickled-object": (folder / "object.pt", "cannot be read as a state dict"),
        "other-depth": (folder / "resnet34.pt", "unexpected keys layer1.2.conv1.weight"),
        "missing": (folder / "absent.pt", "absent.pt' does not exist"),
    }


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the pickled-object case
def test_bad_weights_are_one_line_exit_2(cli, tiny_npz, tmp_path):
    for case, (path, problem) in _bad_weights(tmp_path).items():
        status, _, err = cli("--model", RESNET, "--dataset", f"npz:{tiny_npz}", "--strategies", "random",
                             *ONE_CYCLE, "--weights", path, "--out", tmp_path / case)
        line = _one_line(err)
        assert status == 2 and problem in line, (case, line)
        assert "torch.save(model.state_dict(), PATH)" in line or "same architecture" in line, (case, line)
        assert not (tmp_path / case).exists()
    assert not (tmp_path / "unpickled").exists()


def test_weights_of_a_built_in_model_are_loaded_too(tmp_path):
    path = tmp_path / "cnn.pt"
    saved = build_model("cnn", 1, 10, 99).state_dict()
    torch.save(saved, path)
    start = initial_model(_spec("cnn", 0, path), 1, 10)
    for key, value in start.state_dict().items():
        torch.testing.assert_close(value, saved[key])


# ---------------------------------------------------------------------------------------------- model files

PLAIN = '''
from torch import nn
from bench.models.backbones import register_model


def block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class Net(nn.Module):
    def __init__(self, in_channels, n_classes):
        super().__init__()
        self.one, self.two = block(in_channels, 8), block(8, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.two(self.one(x))).flatten(1))


@register_model("test-plain-net")
def plain(in_channels, n_classes):
    return Net(in_channels, n_classes)
'''


def test_a_model_file_with_a_plain_module_runs_with_learning_loss(cli, tiny_npz, tmp_path, models):
    path = tmp_path / "net.py"
    path.write_text(PLAIN)
    run = tmp_path / "run"
    status, out, err = cli("--model-file", path, "--model", "test-plain-net", "--dataset", f"npz:{tiny_npz}",
                           "--strategies", "random", "ll", *ONE_CYCLE, "--out", run)
    assert status == 0, err
    assert "stages one, two, embedding 16 (flatten -> fc)" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model_fingerprint"] == {"model_file": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert config["model"]["model_files"] == [str(path.resolve())]
    assert len(pd.read_parquet(run / "cycles.parquet")) == 4


def test_a_worker_process_imports_the_model_file(tiny_npz, tmp_path, models):
    path = tmp_path / "net.py"
    path.write_text(PLAIN)
    config = build_config(strategies=["random"], protocol={"model": "test-plain-net", "dataset": f"npz:{tiny_npz}",
                                                           "initial": 8, "budget": 4, "cycles": 2, "epochs": 1},
                          model_files=[path], seeds=1)
    spec = JobSpec("t", config.protocol.dataset, "random", 0, config.protocol, config_hash=config.job_hash("random"))
    source = DataSource(config.protocol.dataset, str(tmp_path), False, model_files=(str(path.resolve()),))
    with MODELS.scoped():  # a fresh worker: the name is not registered here until the file is imported
        MODELS._items.pop("test-plain-net")
        outcome = execute(spec, start_state(spec, 200), source)
        assert outcome.error is None, outcome.traceback
        assert "test-plain-net" in MODELS


BAD_FILES = {
    "syntax": ("def broken(:\n", "has a syntax error at line 1"),
    "nothing": ("import math\n", "registers no model"),
    "taken": ("from bench.models.backbones import register_model\n\n@register_model('cnn')\n"
              "def mine(c, n):\n    return None\n",
              "Model name 'cnn' is taken"),
    "separator": ("from bench.models.backbones import register_model\n\n@register_model('my/net')\ndef mine(c, n):\n"
                  "    return None\n", "Model name 'my/net' is refused"),
    "not-logits": (PLAIN.replace("return self.fc(", "return 2 * self.fc(").replace("test-plain-net", "test-twice"),
                   "does not return its last nn.Linear's output"),
    # the user-code contract, checked once before any work (the dataset has 4 classes)
    "ignores-n-classes": (PLAIN.replace("return Net(in_channels, n_classes)", "return Net(in_channels, 10)")
                          .replace("test-plain-net", "test-twice"), "gives logits of shape [2, 10]"),
    "same-instance": (PLAIN.replace("return Net(in_channels, n_classes)", "return SHARED.setdefault('net', "
                                    "Net(in_channels, n_classes))").replace("test-plain-net", "test-twice")
                      + "\nSHARED = {}\n", "returned the same network (or the same parameters) twice"),
    "raises": (PLAIN.replace("return Net(in_channels, n_classes)", "raise KeyError('width')")
               .replace("test-plain-net", "test-twice"), "factory raised KeyError ('width')"),
    "nan-weights": (PLAIN.replace("return Net(in_channels, n_classes)", "net = Net(in_channels, n_classes)\n"
                                  "    net.fc.bias.data[0] = float('nan')\n    return net")
                    .replace("test-plain-net", "test-twice"), "has NaN or infinite values in"),
    "backbone-returns-a-tensor": (
        "import torch\nfrom torch import nn\nfrom bench.models.backbones import Backbone, register_model\n\n\n"
        "class Flat(Backbone):\n    def __init__(self, c, n):\n        super().__init__()\n"
        "        self.stage_channels, self.embedding_dim = [], c\n        self.stem, self.stages = nn.Identity(), "
        "nn.ModuleList()\n        self.classifier = nn.Linear(c, n)\n\n    def forward(self, x):\n"
        "        return self.classifier(x.mean(dim=(2, 3)))\n\n\n@register_model('test-twice')\n"
        "def flat(c, n):\n    return Flat(c, n)\n", "whose forward returns a Tensor, not a ModelOutput"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_model_files_are_one_line_exit_2(case, cli, tiny_npz, tmp_path, models):
    text, problem = BAD_FILES[case]
    path = tmp_path / f"{case}.py"
    path.write_text(text)
    model = ["--model", "test-twice"] if "test-twice" in text else []
    status, _, err = cli("--model-file", path, *model, "--dataset", f"npz:{tiny_npz}", *TINY, "--dry-run")
    assert status == 2 and problem in _one_line(err), err


# ---------------------------------------------------------------------------------------------- image size, names


def test_image_size_resizes_batches_on_the_device_and_is_part_of_the_protocol(tiny_npz, tmp_path):
    data = load_dataset(f"npz:{tiny_npz}", tmp_path, download=False)
    device_data = DeviceData.from_images(data, torch.device("cpu"), augment=False)
    x = device_data.x_test[:3]  # [3, 3, 12, 12]
    for size in (24, 6):
        got = Trainer(device_data, Protocol(image_size=size), torch.device("cpu")).prepare(x)
        assert got.shape == (3, 3, size, size) and got.is_contiguous(memory_format=torch.channels_last)
        flat = device_data.normalise(torch.full_like(x, 77))
        torch.testing.assert_close(Trainer(device_data, Protocol(image_size=size), torch.device("cpu"))
                                   .prepare(torch.full_like(x, 77)), flat[:, :, :1, :1].expand(-1, -1, size, size))
    # shrinking is antialiased: PIL's bilinear reduction (a triangle filter over the whole footprint) agrees to
    # within its uint8 rounding; a plain bilinear sample of 2 x 2 pixels would be tens of levels off
    small = Trainer(device_data, Protocol(image_size=5), torch.device("cpu")).prepare(x)  # [3, 3, 5, 5]
    for image, got in zip(x, small, strict=True):
        for c in range(3):
            pil = np.asarray(Image.fromarray(image[c].numpy()).resize((5, 5), Image.BILINEAR), dtype=np.float32)
            expected = torch.from_numpy(pil) * device_data.scale[0, c] + device_data.shift[0, c]
            torch.testing.assert_close(got[c], expected, atol=1.0 * float(device_data.scale[0, c]), rtol=0)
    with pytest.raises(UserError, match="'image_size' parameter must be a positive integer"):
        Protocol(image_size=0).validate()


def test_datasets_given_by_path_are_named_by_their_stem(tmp_path):
    def name(spec: str) -> str:
        return build_config(protocol={"dataset": spec}, strategies=["random"]).name

    assert name("npz:/data/sets/cifar10-jpeg-10k.npz") == "quick-cifar10-jpeg-10k"
    assert name("imagefolder:/data/sets/pets/") == "quick-pets"
    assert name("digits") == "quick-digits"
    config = build_config(protocol={"dataset": "npz:/data/sets/x.npz"}, strategies=["random"])
    assert isinstance(config, RunConfig) and config.protocol.dataset == "npz:/data/sets/x.npz"


def test_numbers_do_not_depend_on_the_adapter_being_built_twice():
    """The plan is cached per process; a second build must give the same initial weights and stages."""
    a = build_model(RESNET, 3, 4, 3, (16, 16))
    b = build_model(RESNET, 3, 4, 3, (16, 16))
    assert a.stage_channels == b.stage_channels
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert np.array_equal(a.classifier.weight.detach().numpy(), b.classifier.weight.detach().numpy())


def test_an_image_too_small_for_an_adapted_model_is_one_line_with_no_fx_traceback_before_it(cli, tmp_path, models):
    # as torchvision:maxvit_t on 8x8 digits: torch.fx's traced module prints its generated code's traceback to
    # stderr before raising; here a 9x9 convolution on 8x8 images
    path = tmp_path / "wide.py"
    path.write_text(PLAIN.replace("return self.fc(self.pool(self.two(self.one(x))).flatten(1))",
                                  "return self.fc(torch.nn.functional.avg_pool2d(self.two(self.one(x)), 3).flatten(1))")
                    .replace("from torch import nn", "import torch\nfrom torch import nn")
                    .replace("test-plain-net", "test-wide"))
    status, _, err = cli("--model-file", path, "--model", "test-wide", "--strategies", "random", "--dry-run")
    assert status == 2 and "too small for model 'test-wide'" in _one_line(err) and "Traceback" not in err, err
