"""Every dataset a run can name, by spec: a registered name (the image sets `digits`, `cifar10`, `cifar100`,
`svhn`, `mnist`, `fashion-mnist`; the vector sets `digits-vectors`, `breast-cancer`, `wine`), `npz:PATH`,
`imagefolder:PATH` or `vectors:PATH`; importing this module registers them all."""

from __future__ import annotations

from pathlib import Path

from bench.data import bundled_vectors, downloads  # noqa: F401  (register the vector and torchvision sets)
from bench.data.images import DATASETS, ImageData, load_imagefolder, load_npz
from bench.data.vectors import VECTORS, VectorData, load_vectors

_FILE_SPECS = ("npz:PATH", "imagefolder:PATH", "vectors:PATH")
ABOUT = {  # one line a dataset, for --list-datasets: images name, source, size; vectors features x examples, classes
    "digits": "images: scikit-learn's bundled 8x8 digits, offline; 1x8x8, 1,437 train + 360 test, 10 classes",
    "cifar10": "images: CIFAR-10, downloaded into --data-root; 3x32x32, 50,000 train + 10,000 test, 10 classes",
    "cifar100": "images: CIFAR-100, downloaded into --data-root; 3x32x32, 50,000 train + 10,000 test, 100 classes",
    "mnist": "images: MNIST (torchvision), downloaded into --data-root; 1x28x28, 60,000 train + 10,000 test, "
             "10 classes",
    "fashion-mnist": "images: Fashion-MNIST (torchvision), downloaded into --data-root; 1x28x28, 60,000 train + "
                     "10,000 test, 10 classes",
    "svhn": "images: SVHN (torchvision), downloaded into --data-root; 3x32x32, 73,257 train + 26,032 test, "
            "10 classes",
    **bundled_vectors.ABOUT,
    "npz:PATH": "images from an .npz: uint8 x_train, x_test [N, H, W] or [N, H, W, C], integer y_train, y_test, "
                "optional classes",
    "imagefolder:PATH": "images from PATH/train/<class>/*.png and PATH/test/<class>/*.png",
    "vectors:PATH": "vectors from an .npz (float x_train [N, d], x_test [M, d], integer y_train, y_test) or a "
                    ".parquet / .csv table (label, optional split, numeric feature columns)",
}


def list_datasets() -> list[str]:
    return DATASETS.names() + list(_FILE_SPECS)


def describe_datasets() -> str:
    """Every dataset a run can name, one line each: its spec and what it holds (--list-datasets)."""
    names = list_datasets()
    width = max(map(len, names))
    return "\n".join(f"{name:<{width}}  {ABOUT.get(name, 'registered dataset')}" for name in names)


def check_dataset(spec: str) -> None:
    """Refuse an unknown dataset name before any work (npz:, imagefolder: and vectors: files are checked when
    loaded)."""
    if not spec.startswith(("npz:", "imagefolder:", VECTORS)):
        DATASETS.get(spec, also=_FILE_SPECS)


def load_dataset(spec: str, data_root: Path = Path("data"), download: bool = True) -> ImageData | VectorData:
    """Load a dataset by spec; a problem the user can fix raises UserError with the fix."""
    if spec.startswith("npz:"):
        return load_npz(Path(spec[4:]))
    if spec.startswith("imagefolder:"):
        return load_imagefolder(Path(spec[len("imagefolder:"):]))
    if spec.startswith(VECTORS):
        return load_vectors(Path(spec[len(VECTORS):]))
    return DATASETS.get(spec, also=_FILE_SPECS)(Path(data_root), download)


def holds_vectors(spec: str) -> bool:
    """Whether a spec names a dataset of vectors (a vectors: file or a bundled vector set), before it is loaded."""
    return spec.startswith(VECTORS) or spec in bundled_vectors.ABOUT
