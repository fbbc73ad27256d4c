"""bench.data.datasets: every dataset a run can name, by spec; an unknown name is one line with the closest
match, refused before any work."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data.datasets import ABOUT, check_dataset, describe_datasets, list_datasets, load_dataset


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")


def test_every_name_a_run_can_give_is_listed():
    assert list_datasets() == ["breast-cancer", "cifar10", "cifar100", "digits", "digits-vectors", "fashion-mnist",
                               "mnist", "svhn", "wine", "npz:PATH", "imagefolder:PATH", "vectors:PATH"]


def test_check_dataset_refuses_an_unknown_name_in_one_line_and_leaves_files_to_their_loader(tmp_path):
    with pytest.raises(UserError) as caught:
        check_dataset("MNIST")
    assert str(caught.value) == ("Unknown dataset 'MNIST' (did you mean 'mnist'?): choose one of breast-cancer, "
                                 "cifar10, cifar100, digits, digits-vectors, fashion-mnist, mnist, svhn, wine, "
                                 "npz:PATH, imagefolder:PATH, vectors:PATH.")
    check_dataset(f"npz:{tmp_path / 'not-yet.npz'}")  # a file is checked when it is loaded, not here
    check_dataset(f"imagefolder:{tmp_path / 'later'}")
    check_dataset(f"vectors:{tmp_path / 'later.npz'}")
    check_dataset("digits")


def test_a_spec_names_its_loader(tmp_path):
    x = np.arange(4 * 5 * 5, dtype=np.uint8).reshape(4, 5, 5)
    np.savez(tmp_path / "set.npz", x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x[:2], y_test=np.array([1, 0]))
    data = load_dataset(f"npz:{tmp_path / 'set.npz'}")
    assert np.array_equal(data.x_train[:, 0].numpy(), x) and data.y_test.tolist() == [1, 0]
    with pytest.raises(UserError, match="must hold train/ and test/ folders"):  # the image folders' loader
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")


def test_every_dataset_has_its_one_line_description():
    assert set(ABOUT) == set(list_datasets())
    assert [line.split()[0] for line in describe_datasets().splitlines()] == list_datasets()
    for name, about in ABOUT.items():
        assert about.startswith(("images", "vectors")) and "\n" not in about, name
