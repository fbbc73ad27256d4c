"""Nothing silent at the boundaries: a strategy's scores and picks are checked where the loop calls it, images
are read at their true bit depth or refused, image sizes are checked against the model before any work, and
every write of a results folder fails in one line, leaving the previous files as they were."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from launch import in_process
from PIL import Image

import strategies
from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.report.layout import write_report
from bench.results.store import RunStore
from bench.runner.scheduler import DataSource, execute
from bench.training.jobs import JobSpec, JobState
from bench.training.loop import start_state
from strategies import Strategy


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and on a busy machine several threads are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _one_line(text: str) -> str:
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------------------------------------- strategy outputs

N, K, POOL = 60, 10, 120  # candidates per cycle, the budget and the pool of the tiny job below
PROTOCOL = dataclasses.replace(Protocol(), initial=20, budget=K, cycles=2, subset=N, epochs=1, milestones=(),
                               precision="fp32")


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> DataSource:
    """A 120-image pool of 8x8 images: the job's data is beside the point, its speed is not."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (POOL, 8, 8), dtype=np.uint8), y_train=np.arange(POOL) % 3,
             x_test=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y_test=np.arange(12) % 3)
    return DataSource(f"npz:{path}", "data", False)


def _cycle(source: DataSource, score=None, select=None) -> tuple[str | None, JobState | None]:
    """Run the acquiring cycle of a tiny job with a throwaway strategy, as a worker does; returns the job's
    one-line error (what the scheduler records in failures.json) and the next state."""
    attrs: dict = {"name": "boundary-probe"}
    if score is not None:
        attrs["score"] = lambda self, inputs: score(inputs.n)
    if select is not None:
        attrs["select"] = lambda self, inputs, k: select(inputs.n, k)
    with strategies.STRATEGIES.scoped():
        type("BoundaryProbe", (Strategy,), attrs)
        spec = JobSpec("t", source.spec, "boundary-probe", 0, PROTOCOL)
        outcome = execute(spec, start_state(spec, POOL), source)
    return outcome.error, outcome.state


@pytest.mark.parametrize("score, wrong", [
    (lambda n: np.arange(n, dtype=np.float64)[:, None], "shape [60, 1]"),  # was flattened
    (lambda n: np.arange(n + 1, dtype=np.float64)[::-1].copy(), "shape [61]"),  # top picks in range: was silent
    (lambda n: np.arange(n - 1, dtype=np.float64), "shape [59]"),  # picked from part of the candidates
    (lambda n: np.ones((n, 2)), "shape [60, 2]"),
    (lambda n: torch.ones(n, dtype=torch.bool), "bool"),
    (lambda n: np.array(["high"] * n), "<U4"),
    (lambda n: None, "object"),
], ids=["n-by-1", "n-plus-1", "n-minus-1", "2-d", "bool", "strings", "none"])
def test_a_score_that_is_not_one_number_per_candidate_fails_its_job_in_one_line(tiny_source, score, wrong):
    error, state = _cycle(tiny_source, score=score)
    assert error is not None and state is None, "the job went on with a malformed score"
    _one_line(error)
    assert "'boundary-probe'" in error and wrong in error and "shape [60]" in error, error


@pytest.mark.parametrize("picks, wrong", [
    (lambda n, k: np.arange(k) + 0.5, "float64"),  # was truncated to 0..k-1
    (lambda n, k: np.arange(k, dtype=np.float64), "float64"),  # integral floats are still floats
    (lambda n, k: np.arange(k)[:, None], "shape [10, 1]"),
    (lambda n, k: np.ones(k, dtype=bool), "bool"),
    (lambda n, k: [True, False, *range(2, k)], "booleans"),  # np.asarray would read them as 1 and 0
    (lambda n, k: [0] * k, "duplicate"),
    (lambda n, k: np.arange(n - k + 1, n + 1), "out of range"),
    (lambda n, k: np.arange(-1, k - 1), "out of range"),
    (lambda n, k: np.arange(k - 1), "9 positions"),
    (lambda n, k: np.arange(k + 1), "11 positions"),
    (lambda n, k: "0123456789", "<U10"),
], ids=["fractional", "integral-floats", "k-by-1", "bool-array", "bool-list", "duplicates", "above-range",
        "negative", "too-few", "too-many", "string"])
def test_select_must_return_k_distinct_integer_positions_in_range(tiny_source, picks, wrong):
    error, state = _cycle(tiny_source, select=picks)
    assert error is not None and state is None, "the job went on with malformed picks"
    _one_line(error)
    assert "'boundary-probe'" in error and wrong in error and "10 distinct integer positions in 0..59" in error, error


@pytest.mark.parametrize("score, picks", [
    (lambda n: np.arange(n)[::-1].copy(), None),  # integer scores are scores
    (lambda n: torch.arange(n, dtype=torch.bfloat16), None),
    (None, lambda n, k: list(range(k))),
    (None, lambda n, k: torch.arange(k)),
    (None, lambda n, k: np.arange(n - k, n, dtype=np.uint8)),
], ids=["int-scores", "bf16-scores", "list", "tensor", "uint8"])
def test_well_formed_outputs_are_accepted(tiny_source, score, picks):
    error, state = _cycle(tiny_source, score=score, select=picks)
    assert error is None, error
    assert state.added.dtype == np.int64 and state.added.size == K and np.unique(state.added).size == K


def test_top_k_ranks_float64_scores_without_rounding_them_to_float32():
    from strategies import top_k

    # confident predictions' margins differ below float32's resolution: rounded to float32 they all tie at 1
    scores = torch.tensor([1 - 3e-9, 1 - 2e-9, 1 - 1e-9], dtype=torch.float64)
    assert top_k(scores, 3).tolist() == [2, 1, 0]


# ---------------------------------------------------------------------------------------------- images and npz


def _folder(root: Path, train: list[Image.Image], test: list[Image.Image] | None = None, suffix=".png") -> str:
    """An image folder with one class; returns its dataset spec."""
    for split, images in (("train", train), ("test", test or train)):
        (root / split / "a").mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(root / split / "a" / f"{i}{suffix}")
    return f"imagefolder:{root}"


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    wide = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1021 + 7).astype(np.uint16)  # 7..64330
    data = load_dataset(_folder(tmp_path, [Image.fromarray(wide)]))
    assert Image.open(tmp_path / "train" / "a" / "0.png").mode == "I;16"
    expected = np.floor(wide.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)  # rounded
    assert data.x_train.shape == (1, 1, 8, 8)
    assert np.array_equal(data.x_train[0, 0].numpy(), expected)
    assert (data.x_train == 255).float().mean() < 0.05  # clipping made 98% of these pixels 255


def test_sixteen_bit_pgm_is_scaled(tmp_path):
    wide = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128 and 255 in 8 bits
    data = load_dataset(_folder(tmp_path, [Image.fromarray(wide)], suffix=".pgm"))
    assert data.x_train[0, 0].numpy().tolist() == [[0, 1, 128, 255]]


def test_eight_bit_modes_read_as_pil_shows_them(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    opaque = Image.fromarray(np.dstack([rgb, np.full((4, 4), 255, np.uint8)]))  # RGBA, alpha 255 everywhere
    palette = Image.fromarray(rgb).quantize(8)
    bilevel = Image.fromarray(rng.integers(0, 2, (4, 4), dtype=np.uint8) * 255).convert("1")
    cmyk = Image.fromarray(rgb).convert("CMYK")
    for i, (image, expected) in enumerate([(opaque, rgb), (palette, np.asarray(palette.convert("RGB"))),
                                          (cmyk, np.asarray(cmyk.convert("RGB")))]):
        data = load_dataset(_folder(tmp_path / str(i), [image], suffix=".tif" if image.mode == "CMYK" else ".png"))
        assert np.array_equal(data.x_train[0].numpy().transpose(1, 2, 0), expected), image.mode
    data = load_dataset(_folder(tmp_path / "1", [bilevel]))
    assert data.x_train.shape == (1, 1, 4, 4) and set(data.x_train.unique().tolist()) <= {0, 255}


@pytest.mark.parametrize("make, suffix, words", [
    (lambda: Image.fromarray(np.zeros((4, 4), np.float32)), ".tif", "mode F"),
    (lambda: Image.fromarray(np.array([[0, 70000, 5, 5]] * 4, np.int32)), ".tif", "mode I"),
    (lambda: Image.fromarray(np.dstack([np.zeros((4, 4, 3), np.uint8), np.arange(16, dtype=np.uint8).reshape(4, 4)])),
     ".png", "transparent"),
    (lambda: Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]), "LA"), ".png",
     "transparent"),
], ids=["float", "int32", "rgba-transparent", "la-transparent"])
def test_modes_without_a_faithful_8_bit_reading_are_refused_in_one_line(tmp_path, make, suffix, words):
    spec = _folder(tmp_path, [make()], suffix=suffix)
    with pytest.raises(UserError, match=words) as caught:
        load_dataset(spec)
    assert "0" + suffix in _one_line(str(caught.value))


def _png_header_only(path: Path, width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> None:
    """A tiny PNG file that declares width x height pixels (its image data is one empty row)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
                     + chunk(b"IEND", b""))


def _bomb_folder(root: Path, width: int, height: int, valid: bool) -> Path:
    (root / "train" / "a").mkdir(parents=True)
    (root / "test" / "a").mkdir(parents=True)
    bomb = root / "train" / "a" / "bomb.png"
    if valid:  # a real, fully decodable 1-bit image: a few kB of file, width x height pixels once decoded
        Image.new("1", (width, height)).save(bomb)
    else:
        _png_header_only(bomb, width, height)
    Image.new("L", (4, 4)).save(root / "test" / "a" / "0.png")
    return bomb


@pytest.mark.parametrize("width, height, valid", [
    (20000, 20000, False),  # over twice PIL's own limit: PIL raises DecompressionBombError
    (10000, 10000, False),  # over PIL's limit: PIL warns (DecompressionBombWarning)
    (5000, 5000, True),  # under PIL's limit, over the harness's
], ids=["pil-error", "pil-warning", "harness-limit"])
def test_a_decompression_bomb_is_refused_in_one_line_naming_the_file(tmp_path, width, height, valid):
    bomb = _bomb_folder(tmp_path, width, height, valid)
    with pytest.raises(UserError) as caught:
        load_dataset(f"imagefolder:{tmp_path}")
    message = _one_line(str(caught.value))
    assert str(bomb) in message and "pixels" in message and "images differ in size" not in message, message


def test_an_npz_member_that_is_not_an_npy_array_is_one_line(tmp_path):
    path = tmp_path / "text.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", "these are not pixels")
        for key, value in (("y_train", np.zeros(2, np.int64)), ("x_test", np.zeros((2, 4, 4), np.uint8)),
                           ("y_test", np.zeros(2, np.int64))):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
    with pytest.raises(UserError, match="x_train") as caught:
        load_dataset(f"npz:{path}")
    assert "not a .npy array" in _one_line(str(caught.value))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([None, 1], dtype=object))
    with pytest.raises(UserError, match="unpickling") as caught:  # and nothing was unpickled
        load_dataset(f"npz:{objects}")
    _one_line(str(caught.value))


# ---------------------------------------------------------------------------------------------- image size vs model


@pytest.mark.parametrize("model, shape", [("cnn", (1, 8, 8)), ("cnn", (3, 4, 4)), ("cnn", (3, 32, 32)),
                                          ("resnet18", (1, 1, 1)), ("resnet18", (3, 8, 8))])
def test_sizes_a_model_takes_pass_the_input_check(model, shape):
    from bench.models.build import check_input_size

    check_input_size(model, *shape)


@pytest.mark.parametrize("shape", [(1, 3, 3), (1, 2, 2), (3, 1, 8), (1, 8, 2)])
def test_sizes_too_small_for_the_small_cnn_are_one_line_naming_size_and_model(shape):
    from bench.models.build import check_input_size

    channels, height, width = shape
    with pytest.raises(UserError) as caught:
        check_input_size("cnn", channels, height, width)
    message = _one_line(str(caught.value))
    assert f"{height}x{width}" in message and "'cnn'" in message, message


# ---------------------------------------------------------------------------------------------- checkpoints


def _state(seed: int) -> JobState:
    weights = {"w": torch.arange(1000, dtype=torch.float32) + seed}
    return JobState(1, np.arange(5, dtype=np.int64) + seed, np.arange(2, dtype=np.int64), weights)


def _torch_save_into_a_full_disk(original):
    def save(obj, path, *args, **kwargs):
        return original(obj, "/dev/full")  # the very RuntimeError torch raises when the disk is full

    return save


def _runtime_error(original):
    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    return save


def _no_space(original):
    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return save


@pytest.mark.parametrize("failing", [
    pytest.param(_torch_save_into_a_full_disk, marks=pytest.mark.skipif(not os.path.exists("/dev/full"),
                                                                        reason="no /dev/full")),
    _runtime_error, _no_space], ids=["dev-full", "runtime-error", "enospc"])
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch, failing):
    store = RunStore(tmp_path)
    store.save_checkpoint("random", 0, _state(0))
    path = tmp_path / "checkpoints" / "random__seed0.pt"
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", failing(torch.save))
    with pytest.raises(UserError) as caught:
        store.save_checkpoint("random", 0, _state(1))
    message = _one_line(str(caught.value))
    assert message.startswith(f"Cannot write {path}") and "free disk space" in message, message
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    monkeypatch.undo()
    assert store.load_checkpoint("random", 0).labeled.tolist() == [0, 1, 2, 3, 4]


def test_a_file_where_the_checkpoints_folder_goes_is_one_line(tmp_path):
    (tmp_path / "checkpoints").write_text("mine")
    with pytest.raises(UserError, match="checkpoints") as caught:
        RunStore(tmp_path).save_checkpoint("random", 0, _state(0))
    assert "move it away" in _one_line(str(caught.value))
    assert (tmp_path / "checkpoints").read_text() == "mine"


# ---------------------------------------------------------------------------------------------- the report


def _cycles(shift: float) -> pd.DataFrame:
    """One strategy, two seeds, three cycles: a report with two plots and three tables, quick to draw."""
    rows = [{"run": "r", "dataset": "digits", "model": "cnn", "strategy": "random", "seed": seed, "cycle": cycle,
             "n_labeled": 20 + 10 * cycle, "test_acc": 0.5 + 0.1 * cycle + shift + 0.01 * seed, "test_loss": 1.0,
             "train_seconds": 1.0, "select_seconds": 0.1, "config_hash": "h", "finished_at": "2026-01-01T00:00:00"}
            for seed in range(2) for cycle in range(3)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """A run folder with a report written from one table, and cycles.parquet since replaced by another (so a
    new report would differ in every table and plot)."""
    folder = tmp_path_factory.mktemp("run")
    _cycles(0.05).to_parquet(folder / "cycles.parquet", index=False)
    write_report(folder)
    _cycles(-0.05).to_parquet(folder / "cycles.parquet", index=False)
    return folder


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _fail_nth(monkeypatch, owner, attribute: str, nth: int, error: Exception) -> None:
    original, calls = getattr(owner, attribute), []

    def failing(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == nth:
            if isinstance(error, OSError):
                Path(path).write_bytes(b"half a file")
            raise error
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(owner, attribute, failing)


def test_a_full_disk_while_writing_the_report_is_one_line_exit_2_and_keeps_the_previous_report(
        reported, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    shutil.copytree(reported, folder)
    before = _tree(folder)
    _fail_nth(monkeypatch, pd.DataFrame, "to_csv", 3, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert in_process("report", folder) == 2
    line = _one_line(capsys.readouterr().err.strip())
    assert "(No space left on device)" in line and f"run_bench.py report {folder}" in line, line
    assert _tree(folder) == before  # the previous report, byte for byte, and no temporary folder left


@pytest.mark.parametrize("which", [0, 1])  # the report's figures are saved alternately by it and a forked child
def test_a_plot_that_cannot_be_saved_is_one_line_and_keeps_the_previous_report(reported, tmp_path, monkeypatch,
                                                                               which):
    from matplotlib.figure import Figure

    folder = tmp_path / "run"
    shutil.copytree(reported, folder)
    before = _tree(folder)
    plots = sorted(p.name for p in (reported / "report" / "plots").iterdir())
    assert len(plots) == 3  # accuracy by labels, by compute, and the AULC
    original = Figure.savefig

    def refuse(self, path, *args, **kwargs):  # matplotlib's refusal of one figure, wherever it is saved
        if Path(path).name == plots[which]:
            raise ValueError("Image size of 70000x500 pixels is too large. It must be less than 2^16 in each "
                             "direction.")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", refuse)
    with pytest.raises(UserError) as caught:
        write_report(folder)
    message = _one_line(str(caught.value))
    assert f"plots/{plots[which]}" in message and "too large" in message, message
    assert _tree(folder) == before


def test_a_report_that_is_a_file_is_one_line_and_left_alone(reported, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(reported / "cycles.parquet", folder)
    (folder / "report").write_text("my notes")
    with pytest.raises(UserError) as caught:
        write_report(folder)
    message = _one_line(str(caught.value))
    assert str(folder / "report") in message and "not a folder" in message, message
    assert (folder / "report").read_text() == "my notes" and sorted(p.name for p in folder.iterdir()) == [
        "cycles.parquet", "report"]


def test_a_new_report_replaces_the_previous_one_whole(reported, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(reported, folder)
    (folder / "report" / "stale.txt").write_text("from an older version")
    path = write_report(folder)
    text = path.read_text()  # final mean accuracy 65.5% in the new cycles, 75.5% in the old ones
    assert path == folder / "report" / "report.md" and "| 65.5 ± " in text and "75.5" not in text
    assert not (folder / "report" / "stale.txt").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["cycles.parquet", "report"]
