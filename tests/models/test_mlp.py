"""The vector models (bench.models.mlp): `linear` is multinomial logistic regression and `mlp` a ReLU perceptron of
the widths asked, both against hand computations; a vectors: run of each, from a file the test writes, to its
verdicts; a --model-file network on vectors; and the refusals, one line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.core.errors import UserError
from bench.core.seeding import derive_seed
from bench.models.backbones import MODELS
from bench.models.build import build_model, check_vector_setup
from bench.models.mlp import VECTOR_MODELS, VectorNet, parse_widths
from conftest import one_line

# 3 seeds, 4 cycles of 12 labels: a run through each model that ends in verdicts, in seconds
VECTOR_RUN = ["--initial", "12", "--budget", "12", "--cycles", "4", "--epochs", "20", "--seeds", "3",
              "--batch-size", "16", "--lr", "0.1", "--devices", "cpu"]


def _write_vectors(path: Path, n: int = 240, m: int = 90, d: int = 6, c: int = 3, seed: int = 0) -> Path:
    """Gaussian clusters in d dimensions (overlapping: a learnable, not a separable, task) as a vectors file."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d))
    y, y_test = np.arange(n) % c, np.arange(m) % c
    np.savez(path, x_train=(means[y] + rng.normal(size=(n, d))) * 50.0 + 1e3, y_train=y,
             x_test=(means[y_test] + rng.normal(size=(m, d))) * 50.0 + 1e3, y_test=y_test)
    return path


def test_linear_is_logistic_regression_and_mlp_stacks_relu_layers():
    torch.manual_seed(0)
    x = torch.randn(5, 7)
    linear = build_model("linear", 7, 3, derive_seed(0, "init-weights"), ())
    out = linear(x)
    w, b = linear.classifier.weight.detach(), linear.classifier.bias.detach()
    torch.testing.assert_close(out.logits, x @ w.T + b)
    assert out.features == [] and torch.equal(out.embedding, x) and linear.embedding_dim == 7
    mlp = build_model("mlp", 7, 3, 1, (), {"hidden": "16,8"})
    out = mlp(x)
    (l1, _), (l2, _) = mlp.stages[0], mlp.stages[1]
    h1 = torch.relu(x @ l1.weight.T + l1.bias)
    h2 = torch.relu(h1 @ l2.weight.T + l2.bias)
    torch.testing.assert_close(out.features[0], h1)
    torch.testing.assert_close(out.embedding, h2)
    torch.testing.assert_close(out.logits, h2 @ mlp.classifier.weight.T + mlp.classifier.bias)
    assert mlp.stage_channels == [16, 8] and mlp.embedding_dim == 8 and isinstance(mlp, VectorNet)
    assert build_model("mlp", 7, 3, 1, ()).stage_channels == [256]  # the default: one hidden layer of 256
    again = build_model("linear", 7, 3, derive_seed(0, "init-weights"), ())
    assert torch.equal(again.classifier.weight, linear.classifier.weight)  # a function of the seed alone
    assert set(VECTOR_MODELS) == {"linear", "mlp"}


@pytest.mark.parametrize(("text", "widths"), [("256,256", (256, 256)), ("64", (64,)), (" 8 , 4 ", (8, 4))])
def test_hidden_widths_are_parsed(text, widths):
    assert parse_widths(text) == widths


@pytest.mark.parametrize("text", ["", "0", "-3", "a,b", "16,", "1.5"])
def test_bad_hidden_widths_are_one_line(text):
    with pytest.raises(UserError, match="hidden' parameter must list positive layer widths"):
        parse_widths(text)


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_a_vectors_run_from_a_file_ends_in_verdicts(cli, tmp_path, model):
    data = _write_vectors(tmp_path / "features.npz")
    extra = ["--model-param", "hidden=16,16"] if model == "mlp" else []
    out_dir = tmp_path / model
    status, out, err = cli("--dataset", f"vectors:{data}", "--model", model, *extra, "--strategies", "entropy",
                           "random", *VECTOR_RUN, "--out", out_dir)
    assert status == 0, err
    assert "train / 90 test vectors of 6 features, 3 classes" in out
    primary = [line for line in out.splitlines() if line.startswith("primary")]
    assert primary and "entropy vs random" in primary[0]
    assert any(word in primary[0] for word in ("better", "worse", "equivalent", "undecided"))
    rows = pd.read_parquet(out_dir / "cycles.parquet")
    assert len(rows) == 2 * 3 * 4 and set(rows["model"]) == {model}
    assert rows["test_acc"].between(0.4, 1).all() and rows.groupby("strategy")["test_acc"].nunique().min() > 1
    config = json.loads((out_dir / "config.json").read_text())
    assert config["dataset"]["kind"] == "vectors" and config["dataset"]["standardise"] == "pool"
    assert config["protocol"]["precision"] == "fp32" and config["protocol"]["augment"] is False
    if model == "mlp":
        assert config["protocol"]["model_params"] == [["hidden", "16,16"]]
        assert "hidden layers 16, 16" in out
    assert (out_dir / "report" / "report.md").is_file()


def test_learning_loss_reads_an_mlps_hidden_layers(cli, tmp_path):
    data = _write_vectors(tmp_path / "features.npz")
    status, _, err = cli("--dataset", f"vectors:{data}", "--model", "mlp", "--model-param", "hidden=16,8",
                         "--strategies", "ll", "--baseline", "ll", *VECTOR_RUN[:-4], "--seeds", "1", "--out",
                         tmp_path / "ll")
    assert status == 0, err
    rows = pd.read_parquet(tmp_path / "ll" / "cycles.parquet")
    assert rows["ll_spearman_candidates"].notna().any()  # the module's predictions, ranked against true losses


PLAIN_VECTOR_NET = '''
from torch import nn
from bench.models.backbones import register_model


@register_model("test-vector-net")
def net(in_channels, n_classes):
    return nn.Sequential(nn.Linear(in_channels, 12), nn.Tanh(), nn.Linear(12, n_classes))
'''


def test_a_model_file_network_takes_vectors(cli, tmp_path, models):
    data, path = _write_vectors(tmp_path / "features.npz"), tmp_path / "net.py"
    path.write_text(PLAIN_VECTOR_NET)
    status, out, err = cli("--model-file", path, "--model", "test-vector-net", "--dataset", f"vectors:{data}",
                           "--strategies", "random", "badge", *VECTOR_RUN[:-4], "--seeds", "1", "--out", tmp_path / "r")
    assert status == 0, err
    assert "vectors of 6 features, hidden layers none, embedding 12" in out  # the last Linear's input: the tanh's
    rows = pd.read_parquet(tmp_path / "r" / "cycles.parquet")
    assert len(rows) == 2 * 4 and set(rows["model"]) == {"test-vector-net"}


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "cnn"], "Model 'cnn' does not take vectors of 6 features"),
    (["--model", "linear", "--strategies", "ll"], "reads the model's stages (its hidden layers, on vectors), and "
                                                  "model 'linear' has none"),
    (["--model", "linear", "--strategies", "vaal"], "Strategy 'vaal' reads images"),
    (["--model", "mlp", "--model-param", "depth=3"], "Model 'mlp' has no parameter 'depth' (its parameters: hidden)"),
    (["--model", "mlp", "--model-param", "hidden=0"], "must list positive layer widths"),
    (["--model", "mlp", "--model-param", "hidden"], "--model-param 'hidden' must read KEY=VALUE"),
    (["--model", "linear", "--train-mode", "frozen"], "--train-mode frozen has no meaning for vectors:"),
    (["--model", "linear", "--precision", "bf16"], "--precision bf16 has no meaning for vectors:"),
    (["--model", "linear", "--initial", "500"], "The 'initial' parameter must be smaller than the training pool"),
])
def test_what_vectors_cannot_take_is_one_line_exit_2(cli, tmp_path, args, message):
    data = _write_vectors(tmp_path / "features.npz")
    status, _, err = cli("--dataset", f"vectors:{data}", *args, "--seeds", "1", "--out", tmp_path / "r", "--dry-run")
    assert status == 2 and message in one_line(err), err
    assert not (tmp_path / "r").exists()


def test_a_vector_model_on_images_is_one_line_exit_2(cli, tiny_npz, tmp_path):
    status, _, err = cli("--dataset", f"npz:{tiny_npz}", "--model", "mlp", "--seeds", "1", "--dry-run")
    assert status == 2 and "Model 'mlp' takes feature vectors, and this dataset holds images" in one_line(err)
    status, _, err = cli("--dataset", f"npz:{tiny_npz}", "--model", "cnn", "--model-param", "hidden=3", "--dry-run")
    assert status == 2 and "Model 'cnn' has no parameter 'hidden' (its parameters: none)" in one_line(err)


def test_the_vector_setup_check_names_what_it_found(models):
    note = check_vector_setup("mlp", 9, 4, ["learning-loss"], {"hidden": "5,3"})
    assert note == "vectors of 9 features, hidden layers 5, 3, embedding 3"
    MODELS.register("test-two-outputs")(lambda d, c: VectorNet(d, 2))  # ignores n_classes
    with pytest.raises(UserError, match=r"logits of shape \[2, 2\] for 2 vectors of a 4-class dataset"):
        check_vector_setup("test-two-outputs", 9, 4)


def test_the_bundled_tabular_sets_run_by_their_listed_names(cli, tmp_path):
    status, listed, _ = cli("--list-datasets")
    names = [line.split()[0] for line in listed.splitlines() if line.split()[1:2] == ["vectors:"]]
    assert status == 0 and sorted(names) == ["breast-cancer", "digits-vectors", "wine"]
    for name in names:
        status, out, err = cli("--dataset", name, "--model", "mlp", "--model-param", "hidden=16", "--strategies",
                               "margin", "random", *VECTOR_RUN[:-4], "--seeds", "2", "--out", tmp_path / name)
        assert status == 0, err
        rows = pd.read_parquet(tmp_path / name / "cycles.parquet")
        classes = len(json.loads((tmp_path / name / "config.json").read_text())["dataset"]["classes"])
        assert len(rows) == 2 * 2 * 4 and set(rows["dataset"]) == {name}
        assert rows["test_acc"].gt(1.5 / classes).all() and rows["test_acc"].max() > 0.75, name  # it learns
        assert f"dataset   {name}: " in out and " vectors of " in out
