"""Datasets: every one becomes uint8 image tensors [N, C, H, W] plus int64 labels, with its own
normalisation and augmentation policy.

Specs: a registered name (`digits`, `cifar10`, `cifar100`, `svhn`, `mnist`, `fashion-mnist`),
`npz:PATH` or `imagefolder:PATH`. Nothing is unpickled: CIFAR is read from its binary release,
npz with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import UserError, regular_file
from bench.core.registry import Registry
from bench.data.npz import check_file, class_names, read_npz
from bench.data.vectors import VectorData

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass
class ImageData:
    """A dataset in memory. Images are uint8 so that they can live on the device at a quarter the bytes."""

    name: str
    x_train: torch.Tensor  # [N, C, H, W] uint8
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, C, H, W] uint8
    y_test: torch.Tensor  # [M] int64
    classes: list[str]
    mean: tuple[float, ...]  # per channel, in 0..1 pixel units
    std: tuple[float, ...]
    pad: int  # random-crop padding in pixels (0: no crop)
    flip: bool  # random horizontal flips

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])


Loader = Callable[[Path, bool], ImageData | VectorData]  # the vector sets: bench/data/bundled_vectors.py
DATASETS: Registry[Loader] = Registry("dataset")
register_dataset = DATASETS.register


def dataset_fingerprint(data: ImageData | VectorData) -> str:
    """sha256 of the dataset's arrays and class names: another dataset at the same path is another run."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(str((array.dtype, tuple(array.shape))).encode())
        digest.update(array.contiguous().numpy().tobytes())
    digest.update(json.dumps(list(map(str, data.classes))).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- helpers


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in 0..1 units of uint8 images [N, C, H, W]."""
    flat = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.float64) / 255.0
    std = np.maximum(flat.std(axis=1), 1e-3)
    return tuple(float(v) for v in flat.mean(axis=1)), tuple(float(v) for v in std)


def _to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4:
        return x.transpose(0, 3, 1, 2)
    raise UserError(f"{what} must have shape [N, H, W] or [N, H, W, C]. Got shape {list(x.shape)} instead.")


def from_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    pad: int | None = None,
    flip: bool | None = None,
) -> ImageData:
    """Build an ImageData from uint8 NCHW arrays, checking what a user's file could get wrong."""
    for what, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UserError(
                f"{name}: {what} must be a 1-d integer array of class labels. Got {y.dtype} {list(y.shape)}."
            )
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError(f"{name}: images and labels differ in count ({len(x_train)} vs {len(y_train)} train, "
                        f"{len(x_test)} vs {len(y_test)} test).")
    if len(x_train) == 0 or len(x_test) == 0:
        raise UserError(f"{name}: the train and test splits must both hold images.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(f"{name}: train and test images differ in shape ({list(x_train.shape[1:])} vs "
                        f"{list(x_test.shape[1:])}).")
    n_classes = int(max(y_train.max(), y_test.max())) + 1 if classes is None else len(classes)
    for what, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0 or y.max() >= n_classes:
            raise UserError(f"{name}: {what} holds labels outside 0..{n_classes - 1} "
                            f"(found {int(y.min())}..{int(y.max())}); labels must index the classes.")
    if classes is None:
        classes = [str(i) for i in range(n_classes)]
    if mean is None or std is None:
        mean, std = _channel_stats(x_train)
    channels, height = x_train.shape[1], x_train.shape[2]
    return ImageData(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        classes=list(classes),
        mean=tuple(mean),
        std=tuple(std),
        pad=max(1, height // 8) if pad is None else pad,
        flip=(channels == 3) if flip is None else flip,
    )


# ---------------------------------------------------------------------------------------------- digits


DIGITS_SPLIT = Path(__file__).with_name("digits_split.npz")  # the 80/20 stratified split, as indices


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, read from its data file ([1797, 64] pixel counts 0..16, [1797] labels)
    without importing scikit-learn (a second of imports in every worker)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError("The digits dataset ships with scikit-learn, which is not installed: pip install scikit-learn.")
    raw = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")  # [1797, 65]
    return raw[:, :-1], raw[:, -1].astype(np.int64)


@register_dataset("digits")
def load_digits(data_root: Path, download: bool) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1,797 images), split 80/20, stratified, with a fixed seed: the split
    train_test_split(test_size=0.2, stratify=labels, random_state=20190601) made, stored as indices
    (tests/data/test_images.py checks it against scikit-learn's)."""
    pixels, y = digits_arrays()
    x = np.clip(np.rint(pixels.reshape(-1, 8, 8) * 16), 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    with np.load(DIGITS_SPLIT, allow_pickle=False) as split:
        train, test = split["train"].astype(np.int64), split["test"].astype(np.int64)
    x_tr, x_te, y_tr, y_te = x[train], x[test], y[train], y[test]
    # Small translations only: a flipped digit is another symbol.
    return from_arrays("digits", x_tr[:, None], y_tr, x_te[:, None], y_te, pad=1, flip=False)


# ---------------------------------------------------------------------------------------------- npz


def load_npz(path: Path) -> ImageData:
    """Arrays x_train (uint8 NHWC or NHW), y_train, x_test, y_test, optional classes."""
    check_file(path, "npz dataset file", "an .npz file holding x_train, y_train, x_test, y_test (a folder of class "
               "sub-folders is imagefolder:PATH)")
    arrays = read_npz(path)
    for key in ("x_train", "x_test"):
        if arrays[key].dtype != np.uint8:
            raise UserError(f"{path}: {key} must be uint8 pixels 0..255. {_not_pixels(arrays[key])}")
    return from_arrays(f"npz:{path.name}", _to_nchw(arrays["x_train"], "x_train"), arrays["y_train"],
                       _to_nchw(arrays["x_test"], "x_test"), arrays["y_test"], class_names(arrays))


def _not_pixels(x: np.ndarray) -> str:
    """What to do with an npz image array that is not uint8: float features are vectors, not pixels to clip."""
    if np.issubdtype(x.dtype, np.floating):
        if x.ndim == 2:
            return (f"Got a 2-d {x.dtype} array {list(x.shape)} instead: float feature vectors [N, d] are a "
                    "vectors dataset, --dataset vectors:PATH.")
        finite = x[np.isfinite(x)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            return (f"Got dtype {x.dtype} instead; pixel values in 0..1 convert with "
                    "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) (float features: vectors:PATH).")
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
        return (f"Got dtype {x.dtype} with values {low:g}..{high:g}, not pixels in 0..1: float features go "
                "through --dataset vectors:PATH (2-d [N, d]).")
    return f"Got dtype {x.dtype} instead; integer pixels in 0..255 convert with x.astype(np.uint8)."


# ---------------------------------------------------------------------------------------------- image folder

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
# Every image is held decoded at full size, in memory and on the device: one larger than this is a mistake or a
# decompression bomb (a small file that decodes to gigabytes), refused from its header, before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_SIXTEEN_BIT_FORMATS = {"PNG", "PPM"}  # formats whose mode-I images hold 0..65535 (PIL scales a PGM's maxval to it)


def _read_split(root: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
        for file in files:
            images.append(_read_image(file))
            labels.append(label)
    if not images:
        raise UserError(f"{root}: no images found (expected {root}/<class>/*.png or *.jpg).")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(f"{root}: images differ in size ({sorted(shapes)[:3]} ...); resize them to one size first.")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _read_image(file: Path) -> np.ndarray:
    """One image file as uint8 [H, W, 3], or a UserError naming the file."""
    from PIL import Image

    regular_file(file, "an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused, not printed
            with Image.open(file) as img:  # reads the header only
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserError(f"{file} is {width}x{height} ({width * height:,} pixels), over the limit of "
                                    f"{MAX_IMAGE_PIXELS:,} pixels per image (images are held decoded at full size; "
                                    "a larger one is a mistake or a decompression bomb): resize the images first.")
                return _eight_bit(img, file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UserError(f"{file} is refused as a possible decompression bomb ({str(err).rstrip('.')}): resize it "
                        "or remove it.") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error) as err:  # PIL's ways of meeting a bad file
        raise UserError(f"{file} is not a readable image ({type(err).__name__}): replace or remove it.") from None


def _eight_bit(img, file: Path) -> np.ndarray:
    """The pixels as uint8 [H, W, 3], read faithfully: 16-bit values scaled (v * 255 / 65535, rounded), never
    clipped; alpha dropped only where every pixel is opaque; 32-bit integer and float pixels, whose white level
    no file states, refused. (PIL itself reads 16-bit colour PNGs as their high bytes.)"""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and img.format in _SIXTEEN_BIT_FORMATS):
        wide = np.asarray(img).astype(np.int64)  # [H, W]
        if wide.min() < 0 or wide.max() > 65535:
            raise UserError(f"{file} holds pixel values outside 0..65535 (mode {mode}); save it as an 8-bit or "
                            "16-bit image.")
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)  # rounded; no 16-bit value lies halfway
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("I", "F") or mode.startswith(("I;", "F;")):
        kind = "floating-point" if mode.startswith("F") else "32-bit integer"
        raise UserError(f"{file} holds {kind} pixels (mode {mode}), whose white level is not defined: save the "
                        "images as 8-bit or 16-bit PNG.")
    if {"A", "a"} & set(img.getbands()) or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"))  # [H, W, 4]
        if rgba[:, :, 3].min() < 255:
            raise UserError(f"{file} has transparent pixels (mode {mode}), and what lies behind them is not "
                            "defined: flatten the images onto a background first.")
        return np.ascontiguousarray(rgba[:, :, :3])
    return np.asarray(img.convert("RGB"))  # 1, L, P, RGB, CMYK, YCbCr, ...


def load_imagefolder(path: Path) -> ImageData:
    """PATH/train/<class>/*.png and PATH/test/<class>/*.png; classes are the train sub-folders, sorted."""
    train, test = path / "train", path / "test"
    if not train.is_dir() or not test.is_dir():
        raise UserError(f"imagefolder {str(path)!r} must hold train/ and test/ folders, each with one "
                        "sub-folder per class.")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{train}: no class sub-folders found; put each class's images in train/<class>/.")
    x_tr, y_tr = _read_split(train, classes)
    x_te, y_te = _read_split(test, classes)
    if all(np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2]) for x in (x_tr, x_te)):
        x_tr, x_te = x_tr[..., :1], x_te[..., :1]  # grayscale stored as RGB: keep one channel
    return from_arrays(f"imagefolder:{path.name}", _to_nchw(x_tr, "images"), y_tr, _to_nchw(x_te, "images"),
                       y_te, classes)


# ---------------------------------------------------------------------------------------------- torchvision sets


