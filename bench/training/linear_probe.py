"""The frozen-feature protocol (`--train-mode frozen`): an image backbone that writes vectors, followed by the vector
path. A fixed backbone embeds the training pool and the test set once; each active-learning cycle is then exactly a
`vectors:` run of the `linear` model on those embeddings (bench.training.vector_trainer), standardised by the pool.

The backbone is the same for every seed: built with BACKBONE_SEED (derived from the purpose "frozen-backbone",
not from any run seed), then given the --weights file if there is one (without it the embeddings are those of a
random network). It runs once, in eval mode and fp32, over the un-augmented images: the embeddings are fixed, so
there is nothing to augment. The driver caches them in the results folder (embeddings/<key>.npz, a vectors file:
x_train, y_train, x_test, y_test and classes, plus the key and the sha256 of the content; read back with
allow_pickle=False and checked against that digest) and every worker reads that file: each job trains on the same
numbers, whichever process computed them. `--dataset vectors:embeddings/<key>.npz --model linear` with the same
protocol gives the same rows (tests/training/test_linear_probe.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.config import Protocol, RunConfig
from bench.core.errors import regular_file
from bench.core.files import atomic_write
from bench.core.seeding import derive_seed
from bench.data.images import ImageData
from bench.data.vectors import VectorData, from_vector_arrays
from bench.models.backbones import Backbone
from bench.models.build import build_model
from bench.models.weights import load_weights, read_weights
from bench.training.trainer import DeviceData, Trainer
from bench.training.vector_trainer import STANDARDISE

BACKBONE_SEED = derive_seed(0, "frozen-backbone")  # the backbone's initialisation: one for every run seed
METHOD = "eval-mode fp32, no augmentation"  # how the embeddings are computed (part of the cache key)
# the cache file's members: a vectors file's (bench.data.vectors) and the key and digest that check it
ARRAYS = ("key", "sha256", "x_train", "x_test", "y_train", "y_test", "n_classes")
HEAD = "linear"  # the vector model every frozen-feature cycle trains on the embeddings

# The results folder's cache of the fixed backbone's embeddings: not among the results that --force and --fresh move
# (bench.results.store.RESULT_FILES), so a new run over the same backbone and data reads it again.
CACHE_FOLDER = "embeddings"


# ---------------------------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class Embeddings:
    """The fixed backbone's view of a dataset."""

    train: np.ndarray  # [N, d] float32, the training pool
    test: np.ndarray  # [M, d] float32
    y_train: np.ndarray  # [N] int64
    y_test: np.ndarray  # [M] int64
    n_classes: int

    @property
    def sha256(self) -> str:
        """The content's digest: the cache file carries it, workers check it."""
        digest = hashlib.sha256()
        for array in (self.train, self.test, self.y_train, self.y_test):
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(self.n_classes).encode())
        return digest.hexdigest()


def embeddings_key(model: str, model_fingerprint: dict[str, str], image_size: int | None,
                   dataset_fingerprint: str, device_type: str = "cpu",
                   model_params: Mapping[str, str] | None = None) -> str:
    """The cache key: sha256 over what decides the embeddings (model name, its --model-param values, weights and
    model file content, image size, dataset content, the backbone's seed and how it is run)."""
    identity: dict[str, Any] = {"model": model, "weights": model_fingerprint.get("weights", ""),
                                "model_file": model_fingerprint.get("model_file", ""), "image_size": image_size,
                                "dataset": dataset_fingerprint, "backbone_seed": BACKBONE_SEED, "method": METHOD}
    if model_params:  # another width is another backbone; a run without params keeps its cache file's name
        identity["model_params"] = sorted(dict(model_params).items())
    if device_type != "cpu":  # a GPU's kernels round otherwise; the CPU's cache files keep their names
        identity["device_type"] = device_type
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def frozen_backbone(name: str, data: ImageData, image_size: int | None, weights: Path | str | None = None,
                    weights_sha256: str | None = None, params: Mapping[str, str] | None = None) -> Backbone:
    """The fixed backbone in eval mode: BACKBONE_SEED's initialisation of the network the factory builds with the
    run's --model-param values (params), then the weights file's tensors."""
    size = (image_size, image_size) if image_size else tuple(int(s) for s in data.x_train.shape[2:])
    model = build_model(name, data.channels, data.n_classes, BACKBONE_SEED, size, params)
    if weights:
        load_weights(model, read_weights(weights, weights_sha256), weights, name)
    return model.eval()


def compute_embeddings(data: ImageData, protocol: Protocol, device: torch.device, weights: Path | str | None = None,
                       weights_sha256: str | None = None) -> Embeddings:
    """One pass of the fixed backbone over the pool and the test set (eval mode, fp32, no augmentation)."""
    model = frozen_backbone(protocol.model, data, protocol.image_size, weights, weights_sha256,
                            dict(protocol.model_params))
    model = model.to(device, memory_format=torch.channels_last)
    images = DeviceData.from_images(data, device, augment=False)
    # fp32 whatever the protocol's precision: the embeddings are computed once and every cycle of every job reads them
    prepare = Trainer(images, dataclasses.replace(protocol, precision="fp32"), device).prepare
    bs = protocol.eval_batch_size

    @torch.inference_mode()
    def embed(x: torch.Tensor) -> np.ndarray:  # x: [n, C, H, W] uint8 on the device -> [n, d] float32
        parts = [model(prepare(x[i:i + bs])).embedding.float() for i in range(0, x.shape[0], bs)]
        return torch.cat(parts).cpu().numpy()

    return Embeddings(embed(images.x_train), embed(images.x_test), data.y_train.numpy().astype(np.int64),
                      data.y_test.numpy().astype(np.int64), data.n_classes)


# ---------------------------------------------------------------------------------------------- the cache file


class DamagedCache(ValueError):
    """An embeddings cache file that cannot be trusted (why, in one line)."""


def write_embeddings(path: Path, key: str, embeddings: Embeddings, classes: list[str] | None = None) -> None:
    """Write the cache file whole or not at all (bench.core.files.atomic_write): a killed run never leaves half a
    file, a failed write is one line."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed run's unfinished write (the driver holds the lock)
        stale.unlink(missing_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a handle: np.savez would add ".npz" to the temporary file's name
            names = classes if classes is not None else [str(i) for i in range(embeddings.n_classes)]
            np.savez(f, key=np.array(key), sha256=np.array(embeddings.sha256), x_train=embeddings.train,
                     x_test=embeddings.test, y_train=embeddings.y_train, y_test=embeddings.y_test,
                     classes=np.array([str(c) for c in names]),
                     n_classes=np.array(embeddings.n_classes, dtype=np.int64))

    atomic_write(path, write, then="run the same command again")


def read_embeddings(path: Path, key: str | None = None, sha256: str | None = None) -> Embeddings:
    """Read a cache file (allow_pickle=False) and check it whole: its members, their types and shapes, finite
    values, the key (when given) and the digest of its content, stored in it and (when given) expected.
    Raises DamagedCache with the reason; FileNotFoundError when there is no file; UserError for a FIFO, a socket
    or a device in its place (reading one would never end)."""
    regular_file(path, "the cache of the frozen backbone's embeddings (.npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DamagedCache(f"unreadable ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]})") \
            from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise DamagedCache(f"it lacks {', '.join(missing)}")
    train, test, y_train, y_test = (arrays[n] for n in ("x_train", "x_test", "y_train", "y_test"))
    shapes_ok = (train.ndim == 2 and test.ndim == 2 and train.shape[1] == test.shape[1] and y_train.ndim == 1
                 and y_test.ndim == 1 and y_train.shape[0] == train.shape[0] and y_test.shape[0] == test.shape[0])
    if not shapes_ok or train.dtype != np.float32 or test.dtype != np.float32 or y_train.dtype != np.int64 \
            or y_test.dtype != np.int64:
        raise DamagedCache(f"its arrays have unexpected shapes or types (train {train.dtype}{list(train.shape)}, "
                           f"test {test.dtype}{list(test.shape)})")
    if not (np.isfinite(train).all() and np.isfinite(test).all()):
        raise DamagedCache("it holds non-finite values")
    if key is not None and str(arrays["key"]) != key:
        raise DamagedCache(f"it holds the embeddings of another setting (key {str(arrays['key'])[:12]}...)")
    embeddings = Embeddings(train, test, y_train, y_test, int(arrays["n_classes"]))
    if embeddings.sha256 != str(arrays["sha256"]):
        raise DamagedCache("its content does not match the sha256 it carries")
    if sha256 is not None and embeddings.sha256 != sha256:
        raise DamagedCache(f"its content (sha256 {embeddings.sha256[:12]}...) is not the run's "
                           f"({sha256[:12]}...)")
    return embeddings


def cached_embeddings(path: Path, key: str, data: ImageData, protocol: Protocol, device: torch.device,
                      weights: Path | str | None = None, weights_sha256: str | None = None) -> tuple[Embeddings, str]:
    """The run's embeddings: the cache file's when it is sound and fits the dataset, else computed and written.
    Returns them and what happened, in words (a damaged file is recomputed, and the words say why)."""
    why = "computed"
    try:
        found = read_embeddings(path, key)
        if found.train.shape[0] != data.x_train.shape[0] or found.test.shape[0] != data.x_test.shape[0]:
            raise DamagedCache(f"it holds {found.train.shape[0]} + {found.test.shape[0]} embeddings for "
                               f"{data.x_train.shape[0]} + {data.x_test.shape[0]} images")
        return found, f"read from {path}"
    except FileNotFoundError:
        pass
    except DamagedCache as err:
        why = f"recomputed: the cache file {path} was damaged ({err})"
    start = time.perf_counter()
    embeddings = compute_embeddings(data, protocol, device, weights, weights_sha256)
    write_embeddings(path, key, embeddings, [str(c) for c in data.classes])
    return embeddings, f"{why} in {time.perf_counter() - start:.1f} s, saved to {path}"


# ---------------------------------------------------------------------------------------------- a run's embeddings


def embeddings_file(config: RunConfig) -> Path:
    """Frozen mode: the folder's cache file of the fixed backbone's embeddings (named by what decides them)."""
    p = config.protocol
    key = embeddings_key(p.model, config.model_fingerprint, p.image_size, config.dataset_fingerprint,
                         config.device_type, dict(p.model_params))
    return config.out / CACHE_FOLDER / f"{key}.npz"


def frozen_payload(config: RunConfig) -> dict[str, Any]:
    """What config.json records of a frozen-feature run's backbone and embeddings."""
    return {"backbone_seed": BACKBONE_SEED, "backbone_seed_purpose": "derive_seed(0, 'frozen-backbone')",
            "embeddings": str(embeddings_file(config).relative_to(config.out)), "method": METHOD,
            "head": HEAD, "standardise": STANDARDISE}


def prepare_embeddings(config: RunConfig, data: ImageData, device: str) -> tuple[Path, str] | None:
    """Frozen mode: the run's embeddings, read from the folder's cache or computed once here (the workers read
    the file); the file and the sha256 of its content. None in finetune mode."""
    if config.protocol.train_mode != "frozen":
        return None
    path = embeddings_file(config)
    found, note = cached_embeddings(path, path.stem, data, config.protocol, torch.device(device),
                                    config.weights, config.model_fingerprint.get("weights"))
    torch.cuda.empty_cache()  # the backbone is gone: its cached blocks go back to the device, for the workers
    print(f"embedding {found.train.shape[1]} dimensions, {note}", flush=True)
    return path, found.sha256


# ---------------------------------------------------------------------------------------------- the workers


def worker_data(path: str, sha256: str) -> VectorData:
    """A worker's copy of the run's embeddings, as vectors: the driver's cache file, checked against its digest."""
    try:
        embeddings = read_embeddings(Path(path), sha256=sha256)
    except (FileNotFoundError, DamagedCache) as err:
        reason = "it is missing" if isinstance(err, FileNotFoundError) else str(err)
        raise RuntimeError(f"the run's embeddings file {path} cannot be used on this worker ({reason}): in frozen "
                           "mode the workers read it from the results folder, which they must share") from None
    return from_vector_arrays(f"embeddings:{Path(path).name}", embeddings.train, embeddings.y_train,
                              embeddings.test, embeddings.y_test, [str(i) for i in range(embeddings.n_classes)])


def describe(model: str, weights: Path | None, n_classes: int | None = None) -> str:
    """The frozen-feature protocol of a run, in words (the run's `frozen` line)."""
    source = f"--weights {weights}" if weights else "no --weights: the features of a randomly initialised network"
    head = (f"the {HEAD} model (embedding -> {n_classes} classes)" if n_classes else f"the {HEAD} model") + \
        ", on the embeddings standardised by the pool, as a vectors: run"
    return (f"backbone {model} built once for every seed (initialisation seed derive_seed(0, 'frozen-backbone')), "
            f"{source}; it embeds the pool and the test set once, in eval mode and fp32, without augmentation (the "
            f"embeddings are fixed), cached in embeddings/; each cycle trains only {head} on them")
