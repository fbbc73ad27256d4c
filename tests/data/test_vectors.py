"""bench.data.vectors: vectors files (.npz, parquet, CSV tables) become float32 feature vectors [N, d] with int64
labels; every way a user's file can be wrong is one line (UserError; exit 2 through the command line); a table
without a split column gets a fixed stratified 80/20 split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from launch import ROOT

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.core.seeding import numpy_rng
from bench.data.datasets import load_dataset
from bench.data.images import dataset_fingerprint
from bench.data.vectors import TEST_SHARE, VectorData, from_vector_arrays, load_vectors, table_split

RNG = np.random.default_rng(7)
X_TRAIN, X_TEST = RNG.normal(size=(40, 5)), RNG.normal(size=(12, 5))  # float64 features
Y_TRAIN, Y_TEST = np.arange(40) % 4, np.arange(12) % 4


def _npz(tmp_path: Path, name: str = "v.npz", **arrays) -> Path:
    base = {"x_train": X_TRAIN.astype(np.float32), "y_train": Y_TRAIN, "x_test": X_TEST.astype(np.float32),
            "y_test": Y_TEST}
    base.update(arrays)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_a_good_npz_loads_as_float32_vectors_with_int64_labels(tmp_path):
    data = load_dataset(f"vectors:{_npz(tmp_path, classes=np.array(['a', 'b', 'c', 'd']))}")
    assert isinstance(data, VectorData) and data.name == "vectors:v.npz"
    assert data.x_train.shape == (40, 5) and data.x_test.shape == (12, 5) and data.dim == 5
    assert str(data.x_train.dtype) == "torch.float32" and str(data.y_train.dtype) == "torch.int64"
    np.testing.assert_array_equal(data.x_train.numpy(), X_TRAIN.astype(np.float32))
    assert data.y_test.tolist() == Y_TEST.tolist() and data.classes == ["a", "b", "c", "d"] and data.n_classes == 4
    unnamed = load_vectors(_npz(tmp_path, "plain.npz", x_train=X_TRAIN, x_test=X_TEST))  # float64: held as float32
    assert unnamed.classes == ["0", "1", "2", "3"] and str(unnamed.x_test.dtype) == "torch.float32"


BAD = [  # one case per item of the list of bad input; (arrays, what the line says)
    ("nan", {"x_train": np.where(np.arange(40)[:, None] == 3, np.nan, X_TRAIN)}, "NaN, infinite"),
    ("inf", {"x_test": np.where(np.arange(12)[:, None] == 0, np.inf, X_TEST)}, "in 1 row(s)"),
    ("float32-overflow", {"x_train": np.where(np.arange(40)[:, None] == 1, 1e39, X_TRAIN)}, "float32-overflowing"),
    ("d-differs", {"x_test": RNG.normal(size=(12, 6))}, "x_train has 5 features and x_test 6"),
    ("1-d", {"x_train": X_TRAIN[:, 0]}, "x_train must be a 2-d array of feature vectors [examples, features]. "
     "Got shape [40] instead (one feature per example: x.reshape(-1, 1))"),
    ("3-d", {"x_test": X_TEST[:, :, None]}, "Got shape [12, 5, 1] instead"),
    ("float-labels", {"y_train": Y_TRAIN.astype(np.float64)}, "y_train must be a 1-d integer array"),
    ("negative-label", {"y_train": np.where(np.arange(40) == 2, -1, Y_TRAIN)}, "labels outside 0..3 (found -1..3)"),
    ("label-past-classes", {"y_test": np.where(np.arange(12) == 2, 4, Y_TEST),
                            "classes": np.array(["a", "b", "c", "d"])}, "y_test holds labels outside 0..3"),
    ("skipped-class", {"y_train": np.where(Y_TRAIN == 2, 3, Y_TRAIN)}, "y_train has no example of class 2"),
    ("object-array", {"x_train": np.array([[{"a": 1}]] * 40, dtype=object)}, "cannot be read without unpickling"),
    ("text-features", {"x_train": X_TRAIN.astype(str)}, "must hold numbers"),
    ("count", {"y_train": Y_TRAIN[:39]}, "vectors and labels differ in count"),
    ("no-test-labels", {"y_test": None}, "lacks y_test"),
]


@pytest.mark.parametrize(("arrays", "says"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_each_bad_file_is_one_line(tmp_path, arrays, says):
    with pytest.raises(UserError) as caught:
        load_dataset(f"vectors:{_npz(tmp_path, **arrays)}")
    assert says in _one_line(caught)


def test_fewer_examples_than_the_initial_set_is_refused(tmp_path):
    data = load_vectors(_npz(tmp_path))
    with pytest.raises(UserError) as caught:
        Protocol(initial=40).validate_pool(len(data.y_train))
    assert "must be smaller than the training pool (40 examples). Got 40 instead" in _one_line(caught)
    Protocol(initial=39, budget=1, cycles=2).validate_pool(len(data.y_train))  # 39 + 1 fit in 40


def test_an_object_array_is_refused_without_unpickling_it(tmp_path):
    marker = tmp_path / "unpickled"

    class Bomb:  # unpickling it opens (creates) the marker file
        def __reduce__(self):
            return open, (str(marker), "w")

    path = _npz(tmp_path, "bomb.npz", x_train=np.array([Bomb()] * 40, dtype=object))
    with pytest.raises(UserError, match="cannot be read without unpickling"):
        load_dataset(f"vectors:{path}")
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as archive:  # the file is a real bomb: unpickled, it writes the marker
        archive["x_train"][0].close()
    assert marker.exists()


@pytest.mark.parametrize(("name", "content", "says"), [
    ("absent.npz", None, "vectors file '{p}' does not exist: give the path of an .npz file"),
    ("folder", "dir", "vectors file '{p}' is a folder"),
    ("text.npz", "x_train,y_train\n", "{p}: not a readable .npz file (not a zip archive)"),
    ("broken.parquet", "not parquet", "{p}: not a readable parquet table"),
    ("table.tsv", "a\tlabel\n", "{p}: neither an .npz file (a zip archive) nor a table by its name (.parquet"),
])
def test_a_path_that_is_no_vectors_file_is_one_line(tmp_path, name, content, says):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as caught:
        load_dataset(f"vectors:{path}")
    assert _one_line(caught).startswith(says.format(p=path))


def _table(split: bool = True, labels=None) -> pd.DataFrame:
    frame = pd.DataFrame(np.vstack([X_TRAIN, X_TEST]), columns=[f"f{i}" for i in range(5)])
    frame.insert(2, "label", np.concatenate([Y_TRAIN, Y_TEST]) if labels is None else labels)
    if split:
        frame["split"] = ["train"] * 40 + ["test"] * 12
    return frame


def test_parquet_and_csv_tables_load_with_their_split_and_features_in_order(tmp_path):
    _table().to_parquet(tmp_path / "t.parquet")
    _table().to_csv(tmp_path / "t.csv", index=False)
    for file in ("t.parquet", "t.csv"):
        data = load_dataset(f"vectors:{tmp_path / file}")
        assert data.x_train.shape == (40, 5) and data.x_test.shape == (12, 5)
        np.testing.assert_allclose(data.x_train.numpy(), X_TRAIN.astype(np.float32))  # label column left out
        np.testing.assert_allclose(data.x_test.numpy(), X_TEST.astype(np.float32))
        assert data.y_train.tolist() == Y_TRAIN.tolist() and data.classes == ["0", "1", "2", "3"]


def test_class_names_as_labels_become_the_sorted_classes(tmp_path):
    names = np.array(["wolf", "cat", "dog", "ant"])[np.concatenate([Y_TRAIN, Y_TEST])]
    _table(labels=names).to_csv(tmp_path / "named.csv", index=False)
    data = load_dataset(f"vectors:{tmp_path / 'named.csv'}")
    assert data.classes == ["ant", "cat", "dog", "wolf"]
    assert [data.classes[i] for i in data.y_train.tolist()] == names[:40].tolist()


def test_a_table_without_a_split_is_split_80_20_per_class_the_same_way_every_time(tmp_path):
    y = np.repeat([0, 1, 2], [50, 23, 7])
    frame = pd.DataFrame({"a": RNG.normal(size=80), "label": y})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.assign(a=frame["a"] + 1).to_csv(tmp_path / "b.csv", index=False)  # other features, same labels
    one, again, other = (load_dataset(f"vectors:{tmp_path / f}") for f in ("a.csv", "a.csv", "b.csv"))
    # per class round(0.2 n): 10 of 50, 5 of 23 (4.6), 1 of 7 (1.4), worked by hand
    assert np.bincount(one.y_test.numpy()).tolist() == [10, 5, 1] and len(one.y_train) == 64
    np.testing.assert_array_equal(one.x_test.numpy(), again.x_test.numpy())
    np.testing.assert_allclose(other.x_test.numpy(), one.x_test.numpy() + 1, rtol=1e-6)  # the split follows labels
    train, test = table_split(y)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(80)) and TEST_SHARE == 0.2
    recipe = np.sort(np.concatenate([numpy_rng(20190601, "vectors-split", c).permutation(np.flatnonzero(y == c))[:n]
                                     for c, n in ((0, 10), (1, 5), (2, 1))]))  # the docstring's recipe
    assert test.tolist() == recipe.tolist()
    assert table_split(np.array([0, 0, 1]))[1].size == 0  # round(0.4) = 0, and a lone example stays in train


@pytest.mark.parametrize(("frame", "says"), [
    (_table().assign(f3=["x"] * 52), "feature column 'f3' is not numeric (dtype "),
    (_table().assign(f1=[True] * 52), "feature column 'f1' is not numeric (dtype bool)"),
    (_table().rename(columns={"label": "target"}), "the table has no 'label' column (columns: f0, f1, target"),
    (_table().assign(split=["train"] * 51 + ["validation"]), "the 'split' column holds 'validation'"),
    (_table()[["label", "split"]], "no feature columns beside 'label'"),
    (_table().assign(label=np.concatenate([Y_TRAIN, Y_TEST]) + 0.5), "must hold integer class labels"),
    (_table().assign(f0=[np.nan] + [0.0] * 51), "x_train holds NaN"),
    (_table().assign(label=np.where(np.arange(52) == 5, 7, np.concatenate([Y_TRAIN, Y_TEST]))),
     "y_train has no example of class 4"),
])
def test_each_bad_table_is_one_line(tmp_path, frame, says):
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(UserError) as caught:
        load_dataset(f"vectors:{tmp_path / 'bad.parquet'}")
    assert says in _one_line(caught)


def test_the_fingerprint_is_the_content(tmp_path):
    first, same = load_vectors(_npz(tmp_path, "a.npz")), load_vectors(_npz(tmp_path, "b.npz"))
    changed = X_TRAIN.astype(np.float32).copy()
    changed[17, 3] = np.nextafter(changed[17, 3], np.float32(np.inf))  # one feature, one ulp
    other = load_vectors(_npz(tmp_path, "c.npz", x_train=changed))
    assert dataset_fingerprint(first) == dataset_fingerprint(same)  # another file name, the same content
    assert dataset_fingerprint(other) != dataset_fingerprint(first)
    relabelled = from_vector_arrays("r", X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, ["a", "b", "c", "z"])
    assert dataset_fingerprint(relabelled) != dataset_fingerprint(from_vector_arrays("r", X_TRAIN, Y_TRAIN, X_TEST,
                                                                                     Y_TEST))


@pytest.mark.parametrize("case", ["nan", "d-differs", "3-d", "skipped-class", "object-array"])
def test_bad_files_through_the_command_line_are_exit_2_and_one_line(cli, tmp_path, case):
    arrays = next(c[1] for c in BAD if c[0] == case)
    status, _, stderr = cli("--dataset", f"vectors:{_npz(tmp_path, **arrays)}", "--dry-run")
    says = next(c[2] for c in BAD if c[0] == case)
    assert status == 2 and "Traceback" not in stderr and stderr.startswith("error: ") and says in stderr
    assert stderr.strip().count("\n") == 0


def test_the_command_line_refuses_bad_input_and_an_initial_set_larger_than_the_file(tmp_path):
    # a separate process, as a user runs it: exit 2, one line, no traceback
    bad, good = _npz(tmp_path, "bad.npz", x_train=X_TRAIN[:, :, None]), _npz(tmp_path, "good.npz")
    for args, says in ((["--dataset", f"vectors:{bad}"], "Got shape [40, 5, 1] instead"),
                       (["--dataset", f"vectors:{good}", "--model", "linear", "--initial", "500"],
                        "must be smaller than the training pool (40 examples). Got 500 instead")):
        done = subprocess.run([sys.executable, "run_bench.py", *args, "--dry-run"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert says in done.stderr and done.stderr.strip().count("\n") == 0
