"""Every dataset a run can name, by spec: a registered name (`digits`, `cifar10`, `cifar100`, `svhn`, `mnist`,
`fashion-mnist`), `npz:PATH` or `imagefolder:PATH`; importing this module registers them all."""

from __future__ import annotations

from pathlib import Path

from bench.data import downloads  # noqa: F401  (registers the torchvision sets)
from bench.data.images import DATASETS, ImageData, load_imagefolder, load_npz

_FILE_SPECS = ("npz:PATH", "imagefolder:PATH")


def list_datasets() -> list[str]:
    return DATASETS.names() + list(_FILE_SPECS)


def check_dataset(spec: str) -> None:
    """Refuse an unknown dataset name before any work (npz: and imagefolder: files are checked when loaded)."""
    if not spec.startswith(("npz:", "imagefolder:")):
        DATASETS.get(spec, also=_FILE_SPECS)


def load_dataset(spec: str, data_root: Path = Path("data"), download: bool = True) -> ImageData:
    """Load a dataset by spec; a problem the user can fix raises UserError with the fix."""
    if spec.startswith("npz:"):
        return load_npz(Path(spec[4:]))
    if spec.startswith("imagefolder:"):
        return load_imagefolder(Path(spec[len("imagefolder:"):]))
    return DATASETS.get(spec, also=_FILE_SPECS)(Path(data_root), download)
