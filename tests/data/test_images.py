"""bench.data.images: the bundled digits split, npz files and image folders, and the arrays every dataset becomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import UserError
from bench.data.datasets import load_dataset
from bench.data.images import from_arrays


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert np.array_equal(a.x_train.numpy(), b.x_train.numpy())
    train_share = np.bincount(a.y_train.numpy()) / len(a.y_train)
    test_share = np.bincount(a.y_test.numpy()) / len(a.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    assert a.x_train.dtype.is_floating_point is False and int(a.x_train.max()) == 255
    assert not a.flip and a.pad == 1


def test_npz_nhwc_is_loaded_channels_first(tiny_npz):
    data = load_dataset(f"npz:{tiny_npz}")
    raw = np.load(tiny_npz)
    assert data.x_train.shape == (200, 3, 12, 12)
    assert np.array_equal(data.x_train.numpy(), raw["x_train"].transpose(0, 3, 1, 2))
    assert data.classes == ["a", "b", "c", "d"] and data.flip


def _npz(tmp_path: Path, **arrays) -> str:
    base = {"x_train": np.zeros((10, 8, 8), np.uint8), "y_train": np.arange(10) % 2,
            "x_test": np.zeros((4, 8, 8), np.uint8), "y_test": np.arange(4) % 2}
    base.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return f"npz:{path}"


@pytest.mark.parametrize("arrays, message", [
    ({"y_test": None}, "lacks y_test"),
    ({"x_train": np.zeros((10, 8, 8), np.float32)}, "must be uint8"),
    ({"y_train": np.arange(10) - 1}, "labels outside"),
    ({"y_train": np.arange(9)}, "differ in count"),
    ({"x_test": np.zeros((4, 9, 9), np.uint8)}, "differ in shape"),
    ({"y_train": np.linspace(0, 1, 10)}, "integer array"),
    ({"classes": np.array(["only-one"])}, "labels outside"),
])
def test_bad_npz_is_a_user_error(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_pickled_npz_and_missing_file_are_user_errors(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    with pytest.raises(UserError, match="unpickling"):
        load_dataset(f"npz:{path}")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")


def test_imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["cat", "dog"]
    assert data.x_train.shape == (6, 3, 6, 6) and data.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "train" / "cat" / "0.png"))
    assert np.array_equal(data.x_train[0].numpy(), first.transpose(2, 0, 1))


def test_empty_imagefolder_is_a_user_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_digits_without_importing_scikit_learn_equal_scikit_learns_split():
    # the loader reads scikit-learn's data file and a stored split: both must equal what scikit-learn makes
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = np.clip(np.rint(bunch.images * 16), 0, 255).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.2, stratify=bunch.target,
                                              random_state=20190601)
    data = load_dataset("digits")
    assert np.array_equal(data.x_train[:, 0].numpy(), x_tr) and np.array_equal(data.x_test[:, 0].numpy(), x_te)
    assert np.array_equal(data.y_train.numpy(), y_tr) and np.array_equal(data.y_test.numpy(), y_te)


def test_arrays_get_their_own_normalisation_and_augmentation_by_default():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    data = from_arrays("own", x, np.arange(6) % 3, x[:2], np.arange(2))
    for c in range(3):  # per channel over every training pixel, in 0..1 units
        assert data.mean[c] == pytest.approx(x[:, c].mean() / 255) and data.std[c] == pytest.approx(x[:, c].std() / 255)
    assert data.classes == ["0", "1", "2"] and data.pad == 2 and data.flip  # 16 // 8 pixels; colour images flip
    gray = from_arrays("gray", x[:, :1, :8, :8], np.arange(6) % 3, x[:2, :1, :8, :8], np.arange(2))
    assert gray.pad == 1 and not gray.flip and gray.channels == 1 and gray.n_classes == 3


@pytest.mark.parametrize(("x", "says", "not_said"), [
    (np.zeros((10, 5), np.float32), "float feature vectors [N, d] are a vectors dataset, --dataset vectors:PATH",
     "np.clip"),
    (np.full((10, 8, 8), 0.5, np.float64), "pixel values in 0..1 convert with np.clip(np.rint(x * 255), 0, 255)", ""),
    (np.linspace(-3, 7, 640).reshape(10, 8, 8), "values -3..7, not pixels in 0..1: float features go through "
     "--dataset vectors:PATH", "np.clip"),
    (np.full((10, 8, 8), 200, np.int64), "integer pixels in 0..255 convert with x.astype(np.uint8)", "np.clip"),
])
def test_a_float_npz_points_to_vectors_and_only_pixels_in_0_1_to_the_uint8_conversion(tmp_path, x, says, not_said):
    # unbounded features clipped into 0..255 would be destroyed: the conversion is offered only for 0..1 pixels
    with pytest.raises(UserError) as caught:
        load_dataset(_npz(tmp_path, x_train=x))
    assert says in str(caught.value) and "must be uint8 pixels 0..255" in str(caught.value)
    assert not not_said or not_said not in str(caught.value)
