"""The frozen-feature protocol (--train-mode frozen): the embeddings against the backbone's own forward pass, the
head against plain torch SGD, the cache reused and distrusted when damaged, the refusals, the job identity, and
the same rows from one worker or two."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol, RunConfig, preset_protocol
from bench.core.errors import UserError
from bench.core.seeding import derive_seed, numpy_rng, torch_generator
from bench.models.backbones import create_model
from bench.results.identity import config_differences
from bench.training import linear_probe as frozen
from bench.training.jobs import JobSpec
from bench.training.linear_probe import (
    BACKBONE_SEED,
    DamagedCache,
    EmbeddingData,
    Embeddings,
    HeadTrainer,
    read_embeddings,
)
from bench.training.loop import gather_inputs, next_cycle, start_state
from conftest import TINY, train_with_torch_sgd
from strategies import create_strategy

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
        train, test = archive["train"], archive["test"]

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
    arrays["train"][0, 0] += 1.0
    np.savez(cache, **arrays)
    with pytest.raises(DamagedCache, match="does not match the sha256"):
        read_embeddings(cache)
    status, out, _ = cli(*run, "--seeds", "4")
    assert status == 0 and len(computed) == 3 and "does not match the sha256" in out
    rows = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    assert sorted(rows["seed"].unique()) == [0, 1, 2, 3]


def test_a_worker_refuses_an_embeddings_file_it_cannot_trust(tmp_path):
    rng = np.random.default_rng(0)
    emb = Embeddings(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32),
                     np.arange(6) % 2, np.arange(2), 2)
    path = tmp_path / "e.npz"
    frozen.write_embeddings(path, "k", emb)
    data, n_classes = frozen.worker_data(str(path), emb.sha256, torch.device("cpu"))
    assert n_classes == 2 and torch.equal(data.x_train, torch.from_numpy(emb.train))
    with pytest.raises(RuntimeError, match="is not the run's"):
        frozen.worker_data(str(path), "0" * 64, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="it is missing"):
        frozen.worker_data(str(tmp_path / "none.npz"), emb.sha256, torch.device("cpu"))


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


# ---------------------------------------------------------------------------------------------- the head


def _embeddings(n: int = 60, m: int = 30, d: int = 5, c: int = 3) -> Embeddings:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(c, d)) * 2
    y, y_test = np.arange(n) % c, np.arange(m) % c
    return Embeddings((centres[y] + rng.normal(size=(n, d))).astype(np.float32),
                      (centres[y_test] + rng.normal(size=(m, d))).astype(np.float32), y, y_test, c)


def _plain_head(p: Protocol, emb: Embeddings, labeled: np.ndarray, seed: int, cycle: int,
                start: dict[str, torch.Tensor] | None = None) -> nn.Linear:
    """The head trained by plain torch code: nn.Linear under the seed's init stream, torch.optim.SGD and MultiStepLR,
    each epoch's order drawn from the (seed, "train", cycle) generator; a one-example batch trains like any other
    (no batch norm in a linear head)."""
    torch.manual_seed(derive_seed(seed, "init-weights"))
    head = nn.Linear(emb.train.shape[1], emb.n_classes)
    if start is not None:
        head.load_state_dict({k.removeprefix("classifier."): v for k, v in start.items()})
    x, y = torch.from_numpy(emb.train), torch.from_numpy(emb.y_train)
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
    trainer = HeadTrainer(EmbeddingData.from_embeddings(emb, torch.device("cpu")), p, torch.device("cpu"))
    spec = JobSpec("r", p.dataset, "entropy", 3, p)
    state = start_state(spec, emb.train.shape[0])
    x_test, y_test = torch.from_numpy(emb.test), torch.from_numpy(emb.y_test)
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
    trainer = HeadTrainer(EmbeddingData.from_embeddings(emb, torch.device("cpu")), p, torch.device("cpu"))
    head = frozen.initial_head(0, 5, 3)
    cand, labeled = torch.arange(20, 50), torch.arange(0, 10)
    inputs = gather_inputs(create_strategy("badge"), trainer, head, None, cand, labeled, numpy_rng(0, "t"))
    x = torch.from_numpy(emb.train)
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
    trainer = HeadTrainer(EmbeddingData.from_embeddings(emb, torch.device("cpu")), p, torch.device("cpu"))
    heads = {}
    for name in ("bald", "entropy"):
        spec = JobSpec("r", p.dataset, name, 0, p, {"samples": 4, "dropout": 0.5} if name == "bald" else {})
        result, after = next_cycle(spec, trainer, emb.n_classes, start_state(spec, 60))
        heads[name] = after.model
        assert after.aux is None or name == "bald"
    torch.testing.assert_close(heads["bald"], heads["entropy"], atol=1e-5, rtol=1e-5)


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

