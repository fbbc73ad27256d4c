"""Reading a dataset's .npz file without unpickling anything: the one reader of the `npz:` image format and the
`vectors:` format, which share their keys (x_train, y_train, x_test, y_test, optional classes)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from bench.core.errors import UserError, regular_file

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def check_file(path: Path, what: str, hint: str) -> Path:
    """path when it is a file; else one line naming what it is. what: the file's role ("npz dataset file");
    hint: what to give instead, appended after "give the path of"."""
    regular_file(path, f"the {what}")
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"{what} {str(path)!r} {where}: give the path of {hint}.")
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read with allow_pickle=False (an object array is refused, never unpickled), with
    the four split keys present; `classes`, when present, 1-d. Any problem is one UserError naming the file."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable .npz file (not a zip archive); save it with numpy.savez.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "allow_pickle" in str(err):  # an object array: numpy refuses it from the header, before unpickling
            raise UserError(f"{path}: cannot be read without unpickling ({err}); save plain arrays "
                            "(np.savez with numeric/str arrays).") from None
        raise UserError(f"{path}: a member is not a readable .npy array ({err}); save the arrays with "
                        "numpy.savez.") from None
    except Exception as err:  # zipfile.BadZipFile, OSError, EOFError ...
        raise UserError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}).") from None
    foreign = sorted(key for key, value in arrays.items() if not isinstance(value, np.ndarray))
    if foreign:  # numpy hands back a member without the .npy header as raw bytes
        raise UserError(f"{path}: member {foreign[0]!r} is not a .npy array; the npz file must hold only arrays "
                        "saved with numpy.savez.")
    missing = [k for k in SPLIT_KEYS if k not in arrays]
    if missing:
        raise UserError(f"{path}: the npz file lacks {', '.join(missing)}; it must hold x_train, y_train, "
                        "x_test, y_test (and optionally classes).")
    if "classes" in arrays and arrays["classes"].ndim != 1:
        raise UserError(f"{path}: classes must be a 1-d array of class names. Got shape "
                        f"{list(arrays['classes'].shape)} instead.")
    return arrays


def class_names(arrays: dict[str, np.ndarray]) -> list[str] | None:
    """The file's class names, or None when it names none."""
    return [str(c) for c in arrays["classes"].tolist()] if "classes" in arrays else None
