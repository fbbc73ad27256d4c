"""bench.models.build: building and checking any model a run can name: torchvision's classification models,
--model-file's own modules, --image-size, and datasets named by their file."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.core.config import Protocol, RunConfig
from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.models.backbones import MODELS
from bench.models.build import check_input_size, load_model_file
from bench.runner.resolve import build_config
from bench.runner.scheduler import DataSource, execute
from bench.training.jobs import JobSpec
from bench.training.loop import start_state
from bench.training.trainer import DeviceData, Trainer
from conftest import ONE_CYCLE, SHARED_DATA, TINY, WIDE
from conftest import one_line as _one_line

RESNET = "torchvision:resnet18"
SLICE = SHARED_DATA / "cifar10-jpeg-10k.npz"


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
               .replace("test-plain-net", "test-twice"), "'test-twice' raised KeyError ('width')"),
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


# ---------------------------------------------------------------------------------------------- --model-param

# WIDE (conftest): a factory whose parameter has no default: every model the run builds must be given the run's
# --model-param


def test_the_checks_build_the_network_of_the_runs_model_params(tmp_path, models):
    from bench.models.build import build_model, check_contract, check_setup

    (tmp_path / "wide.py").write_text(WIDE)
    load_model_file(tmp_path / "wide.py")
    for width in (4, 32):  # one process, one class: the adapter's plan must follow the network, not its class
        assert check_input_size("test-wide-net", 3, 12, 12, params={"width": str(width)}).stage_channels == [width]
        assert build_model("test-wide-net", 3, 4, 0, (12, 12), {"width": str(width)}).embedding_dim == width
        check_contract("test-wide-net", 3, 12, 12, 4, params={"width": str(width)})
    note = check_setup("test-wide-net", 3, 12, 12, 4, params={"width": "32"})
    assert "embedding 32 (flatten -> fc)" in note, note


def test_a_model_param_without_a_default_runs_and_the_model_line_is_the_network_trained(cli, tiny_npz, tmp_path,
                                                                                         models):
    path = tmp_path / "wide.py"
    path.write_text(WIDE)
    run = tmp_path / "run"
    status, out, err = cli("--model-file", path, "--model", "test-wide-net", "--model-param", "width=32",
                           "--dataset", f"npz:{tiny_npz}", "--strategies", "random", *ONE_CYCLE, "--out", run)
    assert status == 0, err
    [line] = [line for line in out.splitlines() if line.startswith("model ")]
    assert "test-wide-net, width=32" in line and "stages body, embedding 32 (flatten -> fc)" in line, line
    assert len(pd.read_parquet(run / "cycles.parquet")) == 2
    # the --weights check is made on that network too: a width-32 state dict loads whole (a width-4 one would not)
    weights = tmp_path / "wide32.pt"
    torch.save(MODELS.get("test-wide-net")(3, 4, "32").state_dict(), weights)
    status, out, err = cli("--model-file", path, "--model", "test-wide-net", "--model-param", "width=32",
                           "--weights", weights, "--dataset", f"npz:{tiny_npz}", "--strategies", "random",
                           *ONE_CYCLE, "--out", tmp_path / "run-weights")
    assert status == 0, err
    assert "4 of 4 tensors loaded after each seed's initialisation" in out, out
