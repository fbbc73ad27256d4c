"""bench.models.weights: --weights, a state dict read without unpickling anything and copied into each seed's
freshly initialised model (its own classifier where the classes differ), recorded and part of the configuration."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.core.seeding import derive_seed
from bench.data.datasets import load_dataset
from bench.models import weights as model_weights
from bench.models.backbones import create_model
from bench.models.build import build_model
from bench.runner.resolve import build_config
from bench.training.jobs import JobSpec
from bench.training.loop import initial_model, next_cycle, start_state
from bench.training.trainer import DeviceData, Trainer
from conftest import ONE_CYCLE
from conftest import one_line as _one_line
from conftest import torchvision_module as _torchvision

RESNET = "torchvision:resnet18"


def _resnet_weights(path: Path, n_classes: int, seed: int = 123) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = _torchvision().models.resnet18(num_classes=n_classes).state_dict()
    torch.save(state, path)
    return state


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
              if k not in ("image_size", "train_mode", "deterministic", "optimizer", "imbalance", "model_params")}
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


def test_a_state_dict_of_other_classes_loads_all_but_the_classifier(tmp_path):
    saved = create_model("cnn", 3, 10, generator_seed=1).state_dict()
    model = create_model("cnn", 3, 4, generator_seed=2)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    kept = model_weights.load_weights(model, saved, tmp_path / "w.pt", "cnn")
    assert kept == ["classifier.weight", "classifier.bias"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, init[key] if key in kept else saved[key])


def test_a_state_dict_that_does_not_fit_is_one_line(tmp_path):
    model = create_model("cnn", 3, 4, generator_seed=0)
    state = dict(model.state_dict())
    other = {**state, "stages.0.0.0.weight": torch.zeros(32, 1, 3, 3)}  # saved for grayscale images
    with pytest.raises(UserError, match=r"stages.0.0.0.weight is \[32, 1, 3, 3\] in the file and \[32, 3, 3, 3\]"):
        model_weights.load_weights(model, other, "w.pt", "cnn")
    ints = {**state, "stages.0.0.1.weight": state["stages.0.0.1.weight"].long()}
    with pytest.raises(UserError, match="stages.0.0.1.weight is a torch.strided torch.int64 tensor"):
        model_weights.load_weights(model, ints, "w.pt", "cnn")
    extra = {**state, "head.weight": torch.zeros(1)}
    with pytest.raises(UserError, match="does not fit model 'cnn': unexpected keys head.weight"):
        model_weights.load_weights(model, extra, "w.pt", "cnn")


def test_a_weights_file_that_changed_since_the_run_started_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"a": torch.ones(2)}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(model_weights.read_weights(path, sha)["a"], torch.ones(2))
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"changed since the run started \(sha256 " + sha[:12]):
        model_weights.read_weights(tmp_path / "other.pt", sha)
    with pytest.raises(UserError, match="is a folder"):
        model_weights.read_weights(tmp_path)
