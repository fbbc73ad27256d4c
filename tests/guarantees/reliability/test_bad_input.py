"""Bad input, across every flag and file the CLI reads: each case ends with exit status 2 and one line on
stderr that names the problem and the fix, no traceback, and leaves an existing results folder (and every
file the case handed to the CLI) byte-for-byte unchanged.

Every case runs in-process (launch.in_process, fast); the cases marked `real` also run through
run_bench.py in a subprocess, the way a user meets them."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from launch import WAIT, in_process, start_cli

from bench.results.lock import FolderLock

from .support import PROTOCOL, REFERENCE, one_error_line, snapshot

Setup = Callable[[Path], Callable[[], None] | None]  # (results folder) -> undo, or None


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # appended to the reference command; {F} is the folder of the case files
    problem: str  # the error line names the problem with this text ...
    fix: str  # ... and the fix with this one
    setup: Setup | None = None  # damage done to the copy of a finished results folder
    real: bool = False  # also run through run_bench.py in a subprocess
    absent: str = ""  # advice the line must not give (a flag the command lacks)


def _truncate(name: str) -> Setup:
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])

    return damage


def _write(name: str, text: str) -> Setup:
    def damage(run: Path) -> None:
        (run / name).write_text(text)

    return damage


def _foreign_parquet(run: Path) -> None:
    pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}).to_parquet(run / "cycles.parquet")


def _unregistered_strategy(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["strategies"].append("test-from-a-file")  # as if a --strategy-file had defined it
    (run / "config.json").write_text(json.dumps(config))


def _hold_lock(run: Path) -> Callable[[], None]:
    lock = FolderLock(run)
    lock.acquire()
    return lock.release


def _picks(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Setup:
    """selections.parquet changed as no run writes it."""
    def damage(run: Path) -> None:
        picks = pd.read_parquet(run / "selections.parquet")
        change(picks).to_parquet(run / "selections.parquet", index=False)

    return damage


def _run_inside_report(run: Path) -> None:
    """A run's results inside the folder's report/, which the next report rewrites whole."""
    shutil.copytree(run, run.parent / "inner")
    shutil.move(run.parent / "inner", run / "report" / "inner")


def _first_pick(column: str, value: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(picks: pd.DataFrame) -> pd.DataFrame:
        picks.loc[picks.index[0], column] = value
        return picks

    return change


def _group(picks: pd.DataFrame, strategy: str = "random", seed: int = 0, cycle: int = 1) -> pd.Series:
    return (picks["strategy"] == strategy) & (picks["seed"] == seed) & (picks["cycle"] == cycle)


def _extra_cycle(picks: pd.DataFrame) -> pd.DataFrame:
    """Picks for random/seed0 cycles 5 and 6, which cycles.parquet has no row for (3 cycles)."""
    later = [picks[_group(picks, cycle=1)].assign(cycle=c, index=lambda d, c=c: d["index"] + 100 * c) for c in (5, 6)]
    return pd.concat([picks, *later], ignore_index=True)


CASES = [
    # -- unknown or misspelt names ------------------------------------------------------------------------
    Case("unknown-strategy", ("--strategies", "entrpy"), "Unknown strategy 'entrpy'", "did you mean 'entropy'",
         real=True),
    Case("unknown-dataset", ("--dataset", "digts"), "Unknown dataset 'digts'", "did you mean 'digits'"),
    Case("unknown-model", ("--model", "resnet19"), "Unknown model 'resnet19'",
         "choose one of cnn, linear, mlp, resnet18"),
    Case("unknown-preset", ("--preset", "papr"), "Unknown preset 'papr'", "choose one of quick, paper, blog"),
    Case("unknown-backend", ("--backend", "dsk"), "Unknown backend 'dsk'", "did you mean 'dask'"),
    Case("unknown-device", ("--devices", "gpu"), "Unknown device 'gpu'", "cuda:N"),
    Case("frozen-with-bf16", ("--train-mode", "frozen", "--precision", "bf16"),
         "--precision bf16 has no effect with --train-mode frozen", "drop --precision"),
    Case("batch-of-one-cannot-finetune", ("--batch-size", "1"), "must be at least 2 to fine-tune",
         "--train-mode frozen trains its linear head with any batch size"),
    Case("seeds-auto-with-too-few-max-seeds", ("--seeds", "auto", "--max-seeds", "2"),
         "--max-seeds must be at least 3 for --seeds auto", "Got 2 instead"),
    Case("seeds-auto-with-one-strategy", ("--strategies", "random", "--seeds", "auto"),
         "'random' alone makes none", "or give --seeds N"),
    Case("huge-image-size", ("--image-size", "100000"), "must be at most 4096 pixels",
         "needs more memory than a machine has"),
    Case("zero-margin", ("--margin", "0"), "expected a positive number of AULC points", "see --help"),
    Case("empty-device-list", ("--devices", ","), "--devices ',' names no device", "use auto, cpu or cuda:N"),
    Case("absent-cuda-device", ("--devices", "cuda:7"), "Device cuda:7 is not available", "--devices cpu"),
    Case("unknown-precision", ("--precision", "fp8"), "invalid choice: 'fp8'", "choose from"),
    Case("misspelt-flag", ("--bugdet", "20"), "unrecognized arguments: --bugdet", "see --help"),
    Case("unknown-baseline", ("--baseline", "rndom"), "--baseline: Unknown strategy 'rndom'",
         "did you mean 'random'"),
    Case("unknown-strategy-parameter", ("--strategy-param", "entropy.depth=3"), "has no parameter 'depth'",
         "its parameters"),
    Case("param-for-unknown-strategy", ("--strategy-param", "entrpy.depth=3"), "Unknown strategy 'entrpy'",
         "did you mean 'entropy'"),
    Case("malformed-strategy-parameter", ("--strategy-param", "entropy"), "--strategy-param 'entropy'",
         "must read STRATEGY.KEY=VALUE"),
    Case("ill-typed-strategy-parameter", ("--strategies", "ll", "--strategy-param", "ll.margin=wide"),
         "learning-loss.margin", "must be a number. Got 'wide'"),
    # -- impossible protocols ---------------------------------------------------------------------------
    Case("initial-larger-than-pool", ("--initial", "2000"), "training pool (1437 examples)",
         "must be smaller than the training pool"),
    Case("budget-runs-out", ("--budget", "800"), "needs 1620 labels", "lower --budget, --initial or --cycles"),
    Case("subset-smaller-than-budget", ("--subset", "10"), "'subset' parameter must be at least the budget (20)",
         "Got 10 instead"),
    Case("zero-budget", ("--budget", "0"), "'budget'", "must be a positive integer. Got 0 instead"),
    Case("negative-initial", ("--initial", "-5"), "'initial'", "must be a positive integer. Got -5 instead"),
    Case("zero-cycles", ("--cycles", "0"), "'cycles'", "must be a positive integer. Got 0 instead"),
    Case("zero-epochs", ("--epochs", "0"), "'epochs'", "must be a positive integer. Got 0 instead"),
    Case("zero-seeds", ("--seeds", "0"), "--seeds", "expected a positive integer, got '0'"),
    Case("zero-batch-size", ("--batch-size", "0"), "'batch_size'", "must be a positive integer. Got 0 instead"),
    Case("non-integer-budget", ("--budget", "ten"), "--budget: invalid int value: 'ten'", "see --help"),
    Case("infinite-learning-rate", ("--lr", "inf"), "'lr'", "must be a positive number. Got inf instead"),
    Case("negative-momentum", ("--momentum", "-0.5"), "'momentum'", "must be a number in [0, 1)"),
    Case("zero-milestone", ("--milestones", "0"), "'milestones'", "must list positive epochs"),
    Case("zero-jobs", ("--jobs", "0"), "--jobs", "expected a positive integer, got '0'"),
    Case("name-is-a-path", ("--name", ".."), "--name '..' is not a folder name", "the folder's path with --out"),
    Case("warm-and-cold-start", ("--warm-start", "--cold-start"), "--cold-start: not allowed with",
         "see --help"),
    Case("batch-too-small-for-a-strategy", ("--strategy-file", "{F}/pairs.py", "--strategies", "test-pairs",
                                            "--batch-size", "3"),
         "'test-pairs' needs a batch size of at least 4", "Got --batch-size 3 instead", real=True),
    Case("batch-size-1-with-learning-loss", ("--strategies", "ll", "--batch-size", "1"),
         "must be at least 2 to fine-tune", "Got 1 instead"),
    # -- malformed data files ---------------------------------------------------------------------------
    Case("npz-missing", ("--dataset", "npz:{F}/absent.npz"), "absent.npz' does not exist",
         "give the path of an .npz file"),
    Case("npz-not-a-zip", ("--dataset", "npz:{F}/text.npz"), "not a zip archive", "save it with numpy.savez"),
    Case("npz-truncated", ("--dataset", "npz:{F}/truncated.npz"), "truncated.npz: not a readable .npz file",
         "numpy.savez"),
    Case("npz-without-required-arrays", ("--dataset", "npz:{F}/no_test_labels.npz"), "lacks y_test",
         "it must hold x_train, y_train, x_test, y_test", real=True),
    Case("npz-float-pixels", ("--dataset", "npz:{F}/float.npz"), "x_train must be uint8 pixels 0..255",
         "convert with np.clip"),
    Case("npz-nan-pixels", ("--dataset", "npz:{F}/nan.npz"), "Got dtype float32", "convert with np.clip"),
    Case("npz-float-labels", ("--dataset", "npz:{F}/float_labels.npz"), "y_train must be a 1-d integer array",
         "Got float32"),
    Case("npz-labels-out-of-range", ("--dataset", "npz:{F}/label_7_of_3.npz"), "labels outside 0..2 (found 0..7)",
         "labels must index the classes"),
    Case("npz-negative-labels", ("--dataset", "npz:{F}/negative_label.npz"), "labels outside 0..2 (found -1..2)",
         "labels must index the classes"),
    Case("npz-pickled-objects", ("--dataset", "npz:{F}/objects.npz"), "cannot be read without unpickling",
         "save plain arrays"),
    Case("npz-count-mismatch", ("--dataset", "npz:{F}/count.npz"), "images and labels differ in count",
         "(60 vs 50 train"),
    Case("npz-empty-train-split", ("--dataset", "npz:{F}/empty_train.npz"), "empty_train.npz",
         "must both hold images"),
    Case("imagefolder-empty", ("--dataset", "imagefolder:{F}/empty_images"), "no images found",
         "expected"),
    Case("imagefolder-without-splits", ("--dataset", "imagefolder:{F}/absent_images"),
         "must hold train/ and test/ folders", "one sub-folder per class"),
    Case("imagefolder-corrupt-image", ("--dataset", "imagefolder:{F}/corrupt_images"),
         "broken.png is not a readable image", "replace or remove it", real=True),
    Case("imagefolder-mixed-sizes", ("--dataset", "imagefolder:{F}/mixed_sizes"), "images differ in size",
         "resize them to one size"),
    # -- vectors files (--dataset vectors:PATH) ---------------------------------------------------------------
    Case("vectors-nan-features", ("--dataset", "vectors:{F}/vec_nan.npz", "--model", "linear"),
         "x_train holds NaN, infinite or float32-overflowing values in 1 row(s)", "impute or drop them", real=True),
    Case("vectors-inf-features", ("--dataset", "vectors:{F}/vec_inf.npz", "--model", "linear"),
         "holds NaN, infinite", "impute or drop them"),
    Case("vectors-dimensions-differ", ("--dataset", "vectors:{F}/vec_dims.npz", "--model", "linear"),
         "x_train has 5 features and x_test 4", "vectors of one dimension"),
    Case("vectors-3d", ("--dataset", "vectors:{F}/vec_3d.npz", "--model", "linear"),
         "must be a 2-d array of feature vectors", "x.reshape(len(x), -1)"),
    Case("vectors-1d", ("--dataset", "vectors:{F}/vec_1d.npz", "--model", "linear"),
         "must be a 2-d array of feature vectors", "x.reshape(-1, 1)"),
    Case("vectors-float-labels", ("--dataset", "vectors:{F}/vec_float_labels.npz", "--model", "linear"),
         "y_train must be a 1-d integer array of class labels 0..C-1", "Got float64"),
    Case("vectors-skipped-class", ("--dataset", "vectors:{F}/vec_skipped.npz", "--model", "linear"),
         "y_train has no example of class 1", "renumber them"),
    Case("vectors-pickled-objects", ("--dataset", "vectors:{F}/vec_objects.npz", "--model", "linear"),
         "cannot be read without unpickling", "save plain arrays"),
    Case("vectors-initial-larger-than-pool", ("--dataset", "vectors:{F}/vec_good.npz", "--model", "linear",
                                              "--initial", "200"), "training pool (60 examples)", "Got 200 instead"),
    Case("vectors-image-model", ("--dataset", "vectors:{F}/vec_good.npz", "--model", "cnn", "--budget", "5"),
         "Model 'cnn' does not take vectors of 5 features", "use --model linear or mlp"),
    Case("vector-model-on-images", ("--model", "mlp"), "Model 'mlp' takes feature vectors",
         "--train-mode frozen to embed the images first"),
    Case("unknown-model-parameter", ("--model-param", "hidden=3"), "Model 'cnn' has no parameter 'hidden'",
         "give --model-param KEY=VALUE"),
    Case("torchvision-dataset-offline", ("--dataset", "mnist", "--no-download", "--data-root", "{F}/no_data"),
         "mnist is not under", "place MNIST/raw/"),
    # -- a damaged or foreign results folder (same command as the finished run) ---------------------------
    Case("truncated-cycles-parquet", (), "cycles.parquet is unreadable", "start a new run with --name",
         setup=_truncate("cycles.parquet"), real=True),
    Case("truncated-selections-parquet", (), "selections.parquet is unreadable", "--name",
         setup=_truncate("selections.parquet")),
    Case("foreign-cycles-parquet", (), "cycles.parquet lacks the column(s) dataset, strategy, seed, cycle", "--name",
         setup=_foreign_parquet),
    Case("config-json-not-json", (), "config.json is not readable JSON", "move it away",
         setup=_write("config.json", '{"protocol": {"initial": 20,')),
    Case("config-json-not-an-object", (), "config.json is not a run configuration", "move it away",
         setup=_write("config.json", "[1, 2, 3]\n")),
    Case("changed-configuration", ("--epochs", "3"), "another configuration (protocol.epochs 2 -> 3)",
         "--force to move the old results aside", real=True),
    Case("folder-in-use", (), "is in use by another process", "write elsewhere with --name", setup=_hold_lock,
         real=True),
    Case("stored-strategy-not-registered", (), "strategy 'test-from-a-file', which is not registered",
         "pass the --strategy-file that defines it again", setup=_unregistered_strategy),
    # -- strategy files -----------------------------------------------------------------------------------
    Case("strategy-file-syntax-error", ("--strategy-file", "{F}/syntax_error.py"), "has a syntax error at line 2",
         "syntax_error.py", real=True),
    Case("strategy-file-without-strategy", ("--strategy-file", "{F}/no_strategy.py"), "defines no strategy",
         "subclass strategies.Strategy and set `name`"),
    Case("strategy-file-duplicate-name", ("--strategy-file", "{F}/duplicate.py"), "Strategy name 'entropy' is taken",
         "give the new strategy another name"),
    Case("strategy-file-loaded-twice", ("--strategy-file", "{F}/pairs.py", "--strategy-file", "{F}/pairs.py"),
         "Strategy name 'test-pairs' is taken", "another name"),
    Case("strategy-file-missing", ("--strategy-file", "{F}/absent.py"), "absent.py' does not exist",
         "give the path of a .py file"),
    Case("strategy-file-import-error", ("--strategy-file", "{F}/import_error.py"), "failed to import",
         "No module named 'a_module_that_is_not_there'"),
    Case("strategy-file-not-python", ("--strategy-file", "{F}/strategy.txt"), "cannot be imported",
         "it must be a Python source file (.py)"),
    Case("strategy-name-with-a-path-separator", ("--strategy-file", "{F}/slash_name.py"),
         "Strategy name 'mine/v2' is refused", "use letters, digits and _ . + - only", real=True),
    Case("model-file-missing", ("--model-file", "{F}/absent_model.py"), "absent_model.py' does not exist",
         "give the path of a .py file"),
    Case("weights-missing", ("--weights", "{F}/absent.pt"), "absent.pt' does not exist",
         "torch.save(model.state_dict(), PATH)"),
    Case("weights-not-a-state-dict", ("--weights", "{F}/a_file"), "cannot be read as a state dict",
         "torch.save(model.state_dict(), PATH)"),
    Case("unknown-torchvision-model", ("--model", "torchvision:resnet19"),
         "Unknown torchvision classification model 'resnet19'", "did you mean 'resnet18'"),
    Case("image-size-zero", ("--image-size", "0"), "expected a positive integer, got '0'", "see --help"),
    Case("strategy-needs-unknown-input", ("--strategy-file", "{F}/unknown_needs.py"),
         "needs unknown inputs ['gradients']", "known: ['aux_output'"),
    # -- an unwritable output folder ----------------------------------------------------------------------
    Case("out-under-a-regular-file", ("--out", "{F}/a_file/run"), "Cannot write to the output folder",
         "choose another --out", real=True),
    Case("out-is-a-regular-file", ("--out", "{F}/a_file"), "(File exists)", "choose another --out"),
    Case("out-in-proc", ("--out", "/proc/al-bench-results"), "Cannot write to the output folder /proc/",
         "choose another --out"),
    # -- the report command -------------------------------------------------------------------------------
    Case("report-without-results", ("report", "{F}/no_data"), "No results to report",
         "Pass the folder of a run"),
    Case("report-of-truncated-results", ("report", "{F}/truncated_results"), "Cannot read", "as parquet"),
    # -- the report command and the folder's lock -------------------------------------------------------
    Case("report-of-a-folder-in-use", ("report", "{R}"), "is in use by another process", "wait for it to finish",
         setup=_hold_lock, absent="--name"),
    Case("dry-run-of-a-folder-in-use", ("--dry-run",), "is in use by another process", "wait for it to finish",
         setup=_hold_lock),
    # -- picks no run writes (selections.parquet), on resume and in a report --------------------------------
    Case("picks-duplicated", (), "selections.parquet holds picks a run never writes", "restore it",
         setup=_picks(lambda p: pd.concat([p, p.iloc[:1]], ignore_index=True))),
    Case("picks-index-out-of-the-pool", (), "index 100000 outside the training pool", "restore it",
         setup=_picks(_first_pick("index", 100_000))),
    Case("picks-negative-index", ("report", "{R}"), "index -3 outside the training pool", "restore it",
         setup=_picks(_first_pick("index", -3))),
    Case("picks-short-of-the-budget", (), "random/seed0 cycle 1 has 19 picks where its row adds 20", "restore it",
         setup=_picks(lambda p: p.drop(p.index[_group(p)][:1]))),
    Case("picks-for-cycles-without-rows", ("report", "{R}"), "random/seed0 cycle 5 has picks but no row",
         "restore it", setup=_picks(_extra_cycle)),
    Case("picks-rank-repeated", (), "ranks", "restore it", setup=_picks(_first_pick("rank", 1))),
    # -- folder names and places ----------------------------------------------------------------------------
    Case("report-over-a-run-inside-it", ("report", "{R}"), "it holds the results of a run", "move them out of it",
         setup=_run_inside_report),
    Case("max-seeds-without-seeds-auto", ("--max-seeds", "10"), "--max-seeds 10 is for --seeds auto",
         "add --seeds auto, or drop --max-seeds"),
    Case("empty-out", ("--out", ""), "--out '' names no folder", "give the results folder's path"),
    Case("name-longer-than-a-file-name", ("--name", "n" * 300), "--name is 300 bytes long",
         "give a name of at most 255"),
    Case("out-inside-a-runs-report", ("--out", "{R}/report/nested"), "inside the report folder of the run in",
         "choose an --out outside it", real=True),
    Case("out-is-a-runs-report", ("--out", "{R}/report"), "inside the report folder of the run in",
         "choose an --out outside it"),
    Case("out-inside-a-runs-checkpoints", ("--out", "{R}/checkpoints/x"), "inside the checkpoints folder of the run",
         "choose an --out outside it"),
    Case("report-of-the-results-file", ("report", "{F}/truncated_results/cycles.parquet"),
         "cycles.parquet is the results file itself", "pass its folder, "),
]


# ---------------------------------------------------------------------------------------------- the files


def _npz(path: Path, n_train: int = 60, **changes: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 8, 8, 3), dtype=np.uint8),
              "y_train": np.arange(n_train) % 3,
              "x_test": rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), "y_test": np.arange(30) % 3}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _vectors(path: Path, **changes: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(60, 5)).astype(np.float32), "y_train": np.arange(60) % 3,
              "x_test": rng.normal(size=(30, 5)).astype(np.float32), "y_test": np.arange(30) % 3}
    arrays.update(changes)
    np.savez(path, **arrays)


def _vectors_files(f: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    nan, inf = x.copy(), x.copy()
    nan[3, 2], inf[4, 0] = np.nan, np.inf
    _vectors(f / "vec_good.npz")
    _vectors(f / "vec_nan.npz", x_train=nan)
    _vectors(f / "vec_inf.npz", x_train=inf)
    _vectors(f / "vec_dims.npz", x_test=rng.normal(size=(30, 4)))
    _vectors(f / "vec_3d.npz", x_train=rng.normal(size=(60, 5, 2)))
    _vectors(f / "vec_1d.npz", x_train=rng.normal(size=60))
    _vectors(f / "vec_float_labels.npz", y_train=(np.arange(60) % 3).astype(np.float64))
    _vectors(f / "vec_skipped.npz", y_train=np.where(np.arange(60) % 3 == 1, 2, np.arange(60) % 3))
    _vectors(f / "vec_objects.npz", x_train=np.array([[1.0, "a"]] * 60, dtype=object))


def _images(folder: Path, sizes: list[int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (folder / split / cls).mkdir(parents=True)
            for i, size in enumerate(sizes):
                pixels = rng.integers(0, 256, (size, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / cls / f"{i}.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Every bad file a case hands to the CLI."""
    f = tmp_path_factory.mktemp("case-files")
    x = np.random.default_rng(1).integers(0, 256, (60, 8, 8, 3)).astype(np.float32) / 255
    x_nan = x.copy()
    x_nan[0, 0, 0, 0] = np.nan
    _npz(f / "good.npz")
    (f / "text.npz").write_text("x_train,y_train\n1,2\n")
    (f / "truncated.npz").write_bytes((f / "good.npz").read_bytes()[:3000])
    _npz(f / "no_test_labels.npz", y_test=None)
    _npz(f / "float.npz", x_train=x, x_test=x[:30])
    _npz(f / "nan.npz", x_train=x_nan, x_test=x[:30])
    _npz(f / "float_labels.npz", y_train=(np.arange(60) % 3).astype(np.float32))
    _npz(f / "label_7_of_3.npz", y_train=np.where(np.arange(60) == 5, 7, np.arange(60) % 3),
         classes=np.array(["a", "b", "c"]))
    _npz(f / "negative_label.npz", y_train=np.where(np.arange(60) == 5, -1, np.arange(60) % 3),
         classes=np.array(["a", "b", "c"]))
    _npz(f / "objects.npz", classes=np.array([{"a": 1}, "b", "c"], dtype=object))
    _npz(f / "count.npz", y_train=np.arange(50) % 3)
    _npz(f / "empty_train.npz", n_train=0)
    _vectors_files(f)
    for cls in ("a", "b"):
        (f / "empty_images" / "train" / cls).mkdir(parents=True)
        (f / "empty_images" / "test" / cls).mkdir(parents=True)
    _images(f / "corrupt_images", [8, 8, 8])
    (f / "corrupt_images" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    _images(f / "mixed_sizes", [8, 9, 10])
    (f / "no_data").mkdir()
    (f / "truncated_results").mkdir()
    (f / "truncated_results" / "cycles.parquet").write_bytes(b"PAR1\x00\x00")
    header = "from strategies import Strategy\n\n\n"
    (f / "pairs.py").write_text(header + "class Pairs(Strategy):\n    '''Needs pairs (test only).'''\n\n"
                                "    name = 'test-pairs'\n    needs = frozenset({'logits'})\n    min_batch_size = 4\n\n"
                                "    def score(self, inputs):\n        return inputs.logits[:, 0]\n")
    (f / "syntax_error.py").write_text(header.strip() + "\nclass Broken(Strategy:\n    name = 'test-broken'\n")
    (f / "no_strategy.py").write_text("import math\n\nTAU = 2 * math.pi\n")
    logits = "    needs = frozenset({'logits'})\n\n"
    (f / "duplicate.py").write_text(header + "class Mine(Strategy):\n    name = 'entropy'\n" + logits +
                                    "    def score(self, inputs):\n        return inputs.logits[:, 0]\n")
    (f / "slash_name.py").write_text(header + "class Slash(Strategy):\n    name = 'mine/v2'\n" + logits +
                                     "    def score(self, inputs):\n        return inputs.logits[:, 0]\n")
    (f / "import_error.py").write_text("import a_module_that_is_not_there  # noqa: F401\n")
    (f / "strategy.txt").write_text(header + "class Text(Strategy):\n    name = 'test-text'\n")
    (f / "unknown_needs.py").write_text(header + "class Grads(Strategy):\n    name = 'test-grads'\n"
                                        "    needs = frozenset({'gradients'})\n")
    (f / "a_file").write_text("a regular file where a folder is expected\n")
    return f


def _argv(case: Case, f: Path, run: Path) -> list[str]:
    args = [a.replace("{F}", str(f)).replace("{R}", str(run)) for a in case.args]
    return args if args[:1] == ["report"] else [*REFERENCE, "--out", str(run), *args]


def _prepare(case: Case, f: Path, reference: Path, run: Path):
    """A copy of the finished reference folder, damaged as the case says; returns (undo, snapshot)."""
    shutil.copytree(reference, run)
    undo = case.setup(run) if case.setup else None
    return undo, {"run": snapshot(run), "files": snapshot(f)}


def _check(case: Case, code: int, stderr: str, before: dict, f: Path, run: Path) -> None:
    assert code == 2, stderr
    line = one_error_line(stderr)
    assert line.startswith("error: "), line
    assert case.problem in line and case.fix in line, line
    assert not case.absent or case.absent not in line, line
    assert snapshot(run) == before["run"], "the results folder changed"
    assert snapshot(f) == before["files"], "a file the CLI was given changed"


def _skip_if_unsupported(case: Case) -> None:
    if case.id == "absent-cuda-device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")


def test_there_are_enough_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert len({c.args + (c.setup,) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case, files, reference, tmp_path, capsys):
    _skip_if_unsupported(case)
    run = tmp_path / "run"
    undo, before = _prepare(case, files, reference, run)
    try:
        code = in_process(*_argv(case, files, run))
    finally:
        if undo:
            undo()
    _check(case, code, capsys.readouterr().err, before, files, run)


REAL = [c for c in CASES if c.real]


@pytest.fixture(scope="module", autouse=True)
def real_started(request, files, reference, tmp_path_factory) -> dict[str, tuple]:
    """The selected `real` cases through run_bench.py, all started as the module starts (they only start up
    and stop)."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "originalname", "") == "test_bad_input_through_run_bench"}
    started = {}
    for case in (c for c in REAL if c.id in selected):
        run = tmp_path_factory.mktemp(case.id) / "run"
        undo, before = _prepare(case, files, reference, run)
        started[case.id] = (start_cli(run.parent / "logs", *_argv(case, files, run)), undo, before, run)
    yield started
    for proc, *_ in started.values():
        if proc.proc.poll() is None:
            proc.proc.kill()


@pytest.fixture(scope="module")
def real_runs(real_started) -> dict[str, tuple]:
    results = {}
    for key, (proc, undo, before, run) in real_started.items():
        code, _, err = proc.finish()
        if undo:
            undo()
        results[key] = (code, err, before, run)
    return results


@pytest.mark.parametrize("case", REAL, ids=[c.id for c in REAL])
def test_bad_input_through_run_bench(case, files, real_runs):
    code, stderr, before, run = real_runs[case.id]
    _check(case, code, stderr, before, files, run)


# ---------------------------------------------------------------------------------------------- not a file

# A FIFO (or socket, or device) where the harness expects a file: opening it would wait for a writer forever, so
# every case runs through run_bench.py with a deadline (a hang is the fault), and nothing reads the FIFO itself.


@dataclass(frozen=True)
class NotAFile:
    id: str
    place: str  # where the FIFO goes: {R} the copy of the finished run, {F} a folder of its own
    args: tuple[str, ...]  # appended to the reference command (or a report command); {R} and {F} as in place


NOT_FILES = [
    NotAFile("config-json", "{R}/config.json", ()),
    NotAFile("cycles-parquet", "{R}/cycles.parquet", ()),
    NotAFile("selections-parquet", "{R}/selections.parquet", ()),
    NotAFile("checkpoint", "{R}/checkpoints/random__seed2.pt", ("--seeds", "3")),
    NotAFile("cycles-parquet-in-a-report", "{R}/cycles.parquet", ("report", "{R}")),
    NotAFile("config-json-in-a-report", "{R}/config.json", ("report", "{R}")),
    NotAFile("npz-dataset", "{F}/data.npz", ("--dataset", "npz:{F}/data.npz")),
    NotAFile("weights", "{F}/weights.pt", ("--weights", "{F}/weights.pt")),
    NotAFile("strategy-file", "{F}/mine.py", ("--strategy-file", "{F}/mine.py")),
    NotAFile("model-file", "{F}/model.py", ("--model-file", "{F}/model.py")),
    NotAFile("image-of-an-imagefolder", "{F}/images/train/a/1.png", ("--dataset", "imagefolder:{F}/images")),
]


def _regular_files(folder: Path) -> dict[str, bytes | None]:
    """snapshot() without reading what is not a regular file (reading a FIFO would wait)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def not_a_file_runs(reference, tmp_path_factory) -> dict[str, tuple]:
    """Every NOT_FILES case started at once (each only starts up and stops), then awaited with a deadline."""
    import os

    started = {}
    for case in NOT_FILES:
        base = tmp_path_factory.mktemp(case.id)
        run, own = base / "run", base / "files"
        shutil.copytree(reference, run)
        if "images" in case.place:
            _images(own / "images", [8, 8, 8])
        place = Path(case.place.replace("{R}", str(run)).replace("{F}", str(own)))
        place.parent.mkdir(parents=True, exist_ok=True)
        place.unlink(missing_ok=True)
        os.mkfifo(place)
        args = [a.replace("{R}", str(run)).replace("{F}", str(own)) for a in case.args]
        argv = args if args[:1] == ["report"] else [*REFERENCE, "--out", str(run), *args]
        before = _regular_files(base)
        started[case.id] = (start_cli(base / "logs", *argv), before, base, place)
    results, deadline = {}, time.monotonic() + 2 * WAIT  # for all at once: each only starts up, on a shared machine
    for key, (proc, before, base, place) in started.items():
        try:
            code, _, err = proc.finish(timeout=max(1.0, deadline - time.monotonic()))
        except Exception:  # subprocess.TimeoutExpired: it waited on the FIFO
            proc.proc.kill()
            code, err = None, "hung on the FIFO"
        (base / "logs").rename(base.parent / f"{base.name}-logs")  # the logs are not the case's files
        results[key] = (code, err, before, _regular_files(base), place)
    return results


@pytest.mark.parametrize("case", NOT_FILES, ids=[c.id for c in NOT_FILES])
def test_a_fifo_where_a_file_belongs_is_refused_at_once(case, not_a_file_runs):
    import stat

    code, stderr, before, after, place = not_a_file_runs[case.id]
    assert code == 2, stderr
    line = one_error_line(stderr)
    assert f"{place} is not a regular file (a FIFO)" in line, line
    assert stat.S_ISFIFO(place.stat().st_mode)
    before.pop("logs", None), after.pop("logs", None)
    assert {k: v for k, v in after.items() if not k.startswith("logs")} == \
        {k: v for k, v in before.items() if not k.startswith("logs")}, "a file changed"


def test_a_fifo_in_place_of_the_frozen_embeddings_cache_is_refused_at_once(tmp_path):
    """The cache a frozen-feature run wrote, replaced by a FIFO: the next run that needs it says so at once."""
    import os
    import subprocess

    from launch import run_cli

    frozen = ["--strategies", "random", "entropy", *PROTOCOL, "--train-mode", "frozen", "--devices", "cpu",
              "--out", tmp_path / "run"]
    first = run_cli(*frozen, "--seeds", "1")
    assert first.returncode == 0, first.stderr
    (cache,) = (tmp_path / "run" / "embeddings").glob("*.npz")
    cache.unlink()
    os.mkfifo(cache)
    try:
        again = run_cli(*frozen, "--seeds", "2", timeout=WAIT)  # seed 1's jobs need the embeddings
    except subprocess.TimeoutExpired:
        pytest.fail("the run waited on the FIFO")
    assert again.returncode == 2, again.stderr
    assert f"{cache} is not a regular file (a FIFO)" in one_error_line(again.stderr)
