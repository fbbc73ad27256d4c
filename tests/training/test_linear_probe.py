"""The frozen-feature protocol (--train-mode frozen): the embeddings against the backbone's own forward pass, the
head against plain torch SGD, the cache reused and distrusted when damaged, the refusals, the job identity, and
the same rows from one worker or two."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.core.config import RunConfig, preset_protocol
from bench.core.errors import UserError
from bench.core.seeding import derive_seed
from bench.models.backbones import MODELS, create_model
from bench.results.identity import config_differences
from bench.training import linear_probe as frozen
from bench.training.linear_probe import (
    BACKBONE_SEED,
    DamagedCache,
    Embeddings,
    read_embeddings,
)
from conftest import SHARED_DATA, TINY, WIDE
from strategies import STRATEGIES

CIFAR_SLICE = SHARED_DATA / "cifar10-jpeg-10k.npz"
FROZEN = [*TINY, "--train-mode", "frozen", "--devices", "cpu", "--lr", "0.5"]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _cache_files(out: Path) -> list[Path]:
    return sorted((out / "embeddings").glob("*.npz"))


@pytest.fixture
def weights(tmp_path) -> Path:
    """A cnn state dict unlike the frozen backbone's own initialisation (4 classes, as tiny_npz)."""
    path = tmp_path / "backbone.pt"
    torch.save(create_model("cnn", 3, 4, 123).state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------- the embeddings


def test_the_cached_embeddings_are_the_backbones_forward_pass_on_the_images(cli, tiny_npz, tmp_path, weights):
    status, out, _ = cli("--dataset", f"npz:{tiny_npz}", *FROZEN, "--strategies", "random", "--weights", weights,
                         "--out", tmp_path / "run")
    assert status == 0
    assert "embedding 128 dimensions, computed" in out and "without augmentation" in out
    [cache] = _cache_files(tmp_path / "run")
    with np.load(cache, allow_pickle=False) as archive:
        train, test = archive["x_train"], archive["x_test"]

    # independently: the cnn built under the documented seed, the weights loaded, eval mode, images normalised
    # by hand with the npz's per-channel statistics
    arrays = np.load(tiny_npz, allow_pickle=False)
    x_train = arrays["x_train"].transpose(0, 3, 1, 2) / 255.0  # [N, C, H, W]
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True)
    model = create_model("cnn", 3, 4, derive_seed(0, "frozen-backbone"))
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(((x - mean) / std).astype(np.float32))).embedding.numpy()

    assert BACKBONE_SEED == derive_seed(0, "frozen-backbone")
    assert train.shape == (200, 128) and test.shape == (80, 128)
    np.testing.assert_allclose(train, forward(x_train), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(test, forward(arrays["x_test"].transpose(0, 3, 1, 2) / 255.0), atol=1e-5, rtol=1e-4)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["protocol"]["train_mode"] == "frozen" and config["frozen"]["embeddings"] == f"embeddings/{cache.name}"
    assert config["protocol"]["augment"] is False


def test_the_cache_is_reused_and_a_damaged_one_is_recomputed(cli, tiny_npz, tmp_path, monkeypatch):
    computed = []
    real = frozen.compute_embeddings
    monkeypatch.setattr(frozen, "compute_embeddings", lambda *a, **k: computed.append(1) or real(*a, **k))
    run = ["--dataset", f"npz:{tiny_npz}", *FROZEN, "--strategies", "random", "--out", tmp_path / "run"]
    assert cli(*run)[0] == 0
    [cache] = _cache_files(tmp_path / "run")
    original = read_embeddings(cache)
    assert len(computed) == 1

    status, out, _ = cli(*run, "--seeds", "2")  # a new seed: new work, the same embeddings
    assert status == 0 and len(computed) == 1 and f"read from {cache}" in out

    cache.write_bytes(cache.read_bytes()[:-300])  # a truncated file
    status, out, _ = cli(*run, "--seeds", "3")
    assert status == 0 and len(computed) == 2 and "damaged" in out
    assert read_embeddings(cache).sha256 == original.sha256  # recomputed, the same numbers

    with np.load(cache, allow_pickle=False) as archive:  # a readable file whose numbers were changed
        arrays = {k: archive[k] for k in archive.files}
    arrays["x_train"][0, 0] += 1.0
    np.savez(cache, **arrays)
    with pytest.raises(DamagedCache, match="does not match the sha256"):
        read_embeddings(cache)
    status, out, _ = cli(*run, "--seeds", "4")
    assert status == 0 and len(computed) == 3 and "does not match the sha256" in out
    rows = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    assert sorted(rows["seed"].unique()) == [0, 1, 2, 3]



# WIDE (conftest): a model file whose factory's parameter has no default


def test_the_backbone_and_its_cache_key_are_those_of_the_runs_model_params(cli, tiny_npz, tmp_path, models):
    path = tmp_path / "wide.py"
    path.write_text(WIDE)
    out_dir = tmp_path / "run"

    def run(width: int, *extra: str) -> str:
        status, out, err = cli("--model-file", path, "--model", "test-wide-net", "--model-param", f"width={width}",
                               "--dataset", f"npz:{tiny_npz}", *FROZEN, "--strategies", "random", "--out", out_dir,
                               *extra)
        assert status == 0, err
        return out

    out = run(32)
    assert "embedding 32 dimensions, computed" in out, out
    [line] = [line for line in out.splitlines() if line.startswith("model ")]
    assert "test-wide-net, width=32" in line and "embedding 32 (flatten -> fc)" in line, line
    [cache32] = _cache_files(out_dir)
    with np.load(cache32, allow_pickle=False) as archive:
        train = archive["x_train"]

    # independently: the factory's width-32 network under the documented seed, eval mode, images normalised by hand
    arrays = np.load(tiny_npz, allow_pickle=False)
    x_train = arrays["x_train"].transpose(0, 3, 1, 2) / 255.0  # [N, C, H, W]
    mean, std = x_train.mean(axis=(0, 2, 3), keepdims=True), x_train.std(axis=(0, 2, 3), keepdims=True)
    torch.manual_seed(BACKBONE_SEED)
    net = MODELS.get("test-wide-net")(3, 4, "32").eval()
    with torch.no_grad():
        expected = net.pool(net.body(torch.from_numpy(((x_train - mean) / std).astype(np.float32)))).flatten(1)
    assert train.shape == (200, 32)
    np.testing.assert_allclose(train, expected.numpy(), atol=1e-5, rtol=1e-4)

    # another width: another backbone, so another cache file (the width-32 one is left as it was and not read)
    out = run(16, "--force")
    assert "embedding 16 dimensions, computed" in out and "read from" not in out, out
    caches = _cache_files(out_dir)
    assert len(caches) == 2 and cache32 in caches
    [cache16] = [c for c in caches if c != cache32]
    assert read_embeddings(cache16).train.shape == (200, 16)
    assert read_embeddings(cache32).train.shape == (200, 32)
    assert f"read from {cache32}" in run(32, "--force")  # and width 32 again reads its own


def test_a_worker_refuses_an_embeddings_file_it_cannot_trust(tmp_path):
    rng = np.random.default_rng(0)
    emb = Embeddings(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32),
                     np.arange(6) % 2, np.arange(2), 2)
    path = tmp_path / "e.npz"
    frozen.write_embeddings(path, "k", emb)
    data = frozen.worker_data(str(path), emb.sha256)
    assert data.n_classes == 2 and torch.equal(data.x_train, torch.from_numpy(emb.train))
    with pytest.raises(RuntimeError, match="is not the run's"):
        frozen.worker_data(str(path), "0" * 64)
    with pytest.raises(RuntimeError, match="it is missing"):
        frozen.worker_data(str(tmp_path / "none.npz"), emb.sha256)


def test_a_failed_cache_write_is_one_line_and_leaves_the_previous_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    emb = Embeddings(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32),
                     np.arange(6) % 2, np.arange(2), 2)
    path = tmp_path / "embeddings" / "e.npz"
    frozen.write_embeddings(path, "k", emb)  # the folder is made
    before = path.read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(frozen.np, "savez", full_disk)
    with pytest.raises(UserError, match="^Cannot write .*e.npz \\(No space left on device\\): free disk space") as err:
        frozen.write_embeddings(path, "k2", emb)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["e.npz"]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(UserError, match="a file or folder of that name is in the way"):
        frozen.write_embeddings(blocked / "e.npz", "k", emb)


# ---------------------------------------------------------------------------------------------- refusals, identity


def test_learning_loss_is_refused_before_any_work(cli, tiny_npz, tmp_path):
    status, out, err = cli("--dataset", f"npz:{tiny_npz}", *FROZEN, "--strategies", "random", "ll",
                           "--out", tmp_path / "run")
    line = _one_line(err)
    assert status == 2 and "'learning-loss'" in line and "stage feature maps" in line and "--train-mode" in line
    assert not (tmp_path / "run").exists()
    status, out, _ = cli("--dataset", f"npz:{tiny_npz}", *FROZEN, "--dry-run", "--out", tmp_path / "run")
    assert status == 0 and "job       random/seed0" in out and "learning-loss" not in out  # the default leaves it out


def test_train_mode_is_part_of_the_job_identity_and_finetune_hashes_are_unchanged():
    def config(**fields) -> RunConfig:
        p = preset_protocol("quick", dataset="npz:tiny.npz", initial=20, budget=20, cycles=3, epochs=3, **fields)
        return RunConfig(protocol=p, strategies=("random", "entropy"), seeds=(0,), name="x", out=Path("x"),
                         dataset_fingerprint="0123456789abcdef")

    # computed by the code before --train-mode existed
    assert (config().job_hash("random"), config().job_hash("entropy")) == ("5ac5456e8c06", "ef77db0efcdc")
    assert config(train_mode="finetune").job_hash("random") == "5ac5456e8c06"
    assert config(train_mode="frozen").job_hash("random") != "5ac5456e8c06"
    # the frozen hash of the code whose head trained on raw embeddings: standardised ones are another job
    assert config(train_mode="frozen").job_hash("random") != "38516d7945f2"
    # a folder written before the field existed is the same configuration as a finetune run, not a frozen one
    stored = json.loads(json.dumps(config().result_defining(), default=str))
    del stored["protocol"]["train_mode"]
    assert config_differences(stored, config()) == []
    assert "protocol.train_mode 'finetune' -> 'frozen'" in config_differences(stored, config(train_mode="frozen"))


def test_a_bad_train_mode_is_one_line(cli, tiny_npz):
    status, _, err = cli("--dataset", f"npz:{tiny_npz}", *TINY, "--train-mode", "linear")
    assert status == 2 and "--train-mode" in _one_line(err)


# ---------------------------------------------------------------------------------------------- workers


def test_two_workers_give_the_same_rows_as_one(cli, tiny_npz, tmp_path):
    args = ["--dataset", f"npz:{tiny_npz}", *FROZEN, "--seeds", "2", "--strategies", "random", "entropy", "bald",
            "--strategy-param", "bald.samples=3"]
    assert cli(*args, "--out", tmp_path / "one", "--jobs", "1")[0] == 0
    assert cli(*args, "--out", tmp_path / "two", "--jobs", "2")[0] == 0
    key = ["strategy", "seed", "cycle"]
    columns = [*key, "n_labeled", "test_acc", "test_loss", "train_loss", "config_hash"]
    one, two = (pd.read_parquet(tmp_path / f / "cycles.parquet")[columns].sort_values(key).reset_index(drop=True)
                for f in ("one", "two"))
    assert len(one) == 3 * 2 * 3
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    picks = [pd.read_parquet(tmp_path / f / "selections.parquet").sort_values(["strategy", "seed", "cycle", "rank"])
             .reset_index(drop=True)[["strategy", "seed", "cycle", "rank", "index"]] for f in ("one", "two")]
    pd.testing.assert_frame_equal(*picks)
    assert one["test_loss"].nunique() > 1  # heads that differ between jobs and cycles, not one constant
    assert not picks[0][picks[0]["strategy"] == "entropy"]["index"].equals(
        picks[0][picks[0]["strategy"] == "random"]["index"])



# ---------------------------------------------------------------------------------------------- one vector path


def _strategies_on_embeddings() -> list[str]:
    """Every built-in strategy that runs on a frozen backbone's embeddings (the linear model, no stages, no images)."""
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).frozen_refusal() is None
            and STRATEGIES.get(name).__module__.startswith("strategies.")]


def _frozen_then_vectors(cli, dataset: str, out: Path, protocol: list[str]) -> tuple[pd.DataFrame, ...]:
    """The frozen run on the images, then a vectors: run of the linear model on the embeddings it cached: their
    cycles and selections, keyed alike."""
    names = _strategies_on_embeddings()
    small = ["--strategy-param", "bald.samples=3", "--strategy-param", "batchbald.num_samples=20"]
    common = [*protocol, "--devices", "cpu", "--lr", "0.5", "--strategies", *names, *small]
    status, _, err = cli("--dataset", dataset, "--train-mode", "frozen", *common, "--out", out / "frozen")
    assert status == 0, err
    [cache] = _cache_files(out / "frozen")
    status, _, err = cli("--dataset", f"vectors:{cache}", "--model", "linear", *common, "--out", out / "vectors")
    assert status == 0, err
    key = ["strategy", "seed", "cycle"]
    found = []
    for name in ("cycles", "selections"):
        tables = [pd.read_parquet(out / run / f"{name}.parquet") for run in ("frozen", "vectors")]
        order = [*key, "rank"] if name == "selections" else key
        found += [t.sort_values(order).reset_index(drop=True) for t in tables]
    return tuple(found)


@pytest.mark.parametrize("source", ["tiny", "cifar-slice"])
def test_frozen_mode_is_the_vector_path_on_the_embeddings_it_cached(cli, tiny_npz, tmp_path, source):
    """--train-mode frozen = an image backbone that writes vectors + the vector path: a vectors: run of the linear
    model on the cached embeddings gives the same rows and picks, to the last digit, for every strategy that runs
    on both."""
    if source == "cifar-slice":
        if not CIFAR_SLICE.is_file():
            pytest.skip("the CIFAR-10 slice is not on this machine")
        dataset, protocol = f"npz:{CIFAR_SLICE}", ["--initial", "20", "--budget", "20", "--cycles", "2",
                                                    "--subset", "200", "--epochs", "2", "--seeds", "1"]
    else:
        dataset, protocol = f"npz:{tiny_npz}", TINY
    frozen_rows, vector_rows, frozen_picks, vector_picks = _frozen_then_vectors(cli, dataset, tmp_path, protocol)
    assert set(frozen_rows["model"]) != set(vector_rows["model"])  # two runs: a backbone's, the linear model's
    columns = ["strategy", "seed", "cycle", "n_labeled", "test_acc", "test_loss", "train_loss"]
    assert sorted(frozen_rows["strategy"].unique()) == sorted(_strategies_on_embeddings())
    pd.testing.assert_frame_equal(frozen_rows[columns], vector_rows[columns], check_exact=True)
    picks = ["strategy", "seed", "cycle", "rank", "index"]
    pd.testing.assert_frame_equal(frozen_picks[picks], vector_picks[picks], check_exact=True)
    assert frozen_rows["test_loss"].nunique() > 1
