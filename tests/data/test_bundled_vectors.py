"""bench.data.bundled_vectors: the built-in vector sets read scikit-learn's data files as scikit-learn does, on
stored stratified splits that equal scikit-learn's train_test_split, shipped with the package."""

from __future__ import annotations

import numpy as np
import pytest
import tomllib
from launch import ROOT

from bench.data.bundled_vectors import ABOUT, VECTORS_SPLITS, stored_split
from bench.data.datasets import load_dataset


@pytest.mark.parametrize(("name", "shape", "n_test", "classes"), [
    ("digits-vectors", (1797, 64), 360, 10), ("breast-cancer", (569, 30), 114, 2), ("wine", (178, 13), 36, 3)])
def test_each_set_equals_scikit_learns_data_on_scikit_learns_split(name, shape, n_test, classes):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = {"digits-vectors": datasets.load_digits, "breast-cancer": datasets.load_breast_cancer,
             "wine": datasets.load_wine}[name]()
    assert bunch.data.shape == shape
    train, test = train_test_split(np.arange(shape[0]), test_size=0.2, stratify=bunch.target, random_state=20190601)
    stored = stored_split(name)
    assert stored[0].tolist() == train.tolist() and stored[1].tolist() == test.tolist()
    data = load_dataset(name)
    np.testing.assert_array_equal(data.x_train.numpy(), bunch.data[train].astype(np.float32))
    np.testing.assert_array_equal(data.x_test.numpy(), bunch.data[test].astype(np.float32))
    assert data.y_train.tolist() == bunch.target[train].tolist() and data.y_test.tolist() == bunch.target[test].tolist()
    assert data.x_test.shape == (n_test, shape[1]) and data.n_classes == classes
    names = [str(n) for n in bunch.target_names]
    assert data.classes == names
    assert f"{shape[1]} features x {shape[0]:,} examples ({shape[0] - n_test:,} train, {n_test} test), {classes} " \
           "classes" in ABOUT[name]


def test_digits_vectors_are_the_digits_images_on_the_same_split():
    images, vectors = load_dataset("digits"), load_dataset("digits-vectors")
    assert vectors.y_train.tolist() == images.y_train.tolist() and vectors.y_test.tolist() == images.y_test.tolist()
    # the image set scales 0..16 counts to 0..255 pixels (x 16, clipped); the vectors keep the counts
    np.testing.assert_array_equal(np.clip(vectors.x_train.numpy() * 16, 0, 255).reshape(-1, 1, 8, 8),
                                  images.x_train.numpy())


def test_the_split_file_ships_with_the_package():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert VECTORS_SPLITS.name in package_data["bench.data"] and VECTORS_SPLITS.is_file()
    assert VECTORS_SPLITS.parent == ROOT / "bench" / "data"
