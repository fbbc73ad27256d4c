"""bench.data.npz: the one .npz reader of the npz: image format and the vectors: format, which never unpickles."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data.npz import SPLIT_KEYS, check_file, class_names, read_npz


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_it_returns_every_array_and_the_class_names(tmp_path):
    path = _write(tmp_path / "a.npz", x_train=np.ones((3, 2)), y_train=np.arange(3), x_test=np.zeros((1, 2)),
                  y_test=np.arange(1), classes=np.array(["p", "q", "r"]), extra=np.arange(2))
    arrays = read_npz(check_file(path, "npz dataset file", "an .npz file"))
    assert sorted(arrays) == sorted([*SPLIT_KEYS, "classes", "extra"]) and arrays["x_train"].shape == (3, 2)
    assert class_names(arrays) == ["p", "q", "r"]
    assert class_names({k: arrays[k] for k in SPLIT_KEYS}) is None


def test_what_it_refuses_is_one_line_naming_the_file(tmp_path):
    objects = _write(tmp_path / "o.npz", x_train=np.array([None, 1], dtype=object), y_train=np.arange(2),
                     x_test=np.zeros(1), y_test=np.zeros(1))
    flat_classes = _write(tmp_path / "c.npz", x_train=np.ones(2), y_train=np.arange(2), x_test=np.zeros(1),
                          y_test=np.zeros(1), classes=np.array([["a"], ["b"]]))
    lacking = _write(tmp_path / "l.npz", x_train=np.ones(2), y_train=np.arange(2))
    (tmp_path / "t.npz").write_text("x,y\n")
    for path, says in ((objects, "cannot be read without unpickling"), (flat_classes, "classes must be a 1-d"),
                       (lacking, "lacks x_test, y_test"), (tmp_path / "t.npz", "not a zip archive")):
        with pytest.raises(UserError) as caught:
            read_npz(path)
        assert str(caught.value).startswith(f"{path}: ") and says in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match=r"^vectors file '.*' is a folder: give the path of a table\.$"):
        check_file(tmp_path, "vectors file", "a table")
