"""The frozen-feature protocol (`--train-mode frozen`): a fixed backbone embeds the training pool and the test
set once, and each active-learning cycle trains only a linear head on those embeddings.

The backbone is the same for every seed: built with BACKBONE_SEED (derived from the purpose "frozen-backbone",
not from any run seed), then given the --weights file if there is one (without it the embeddings are those of a
random network). It runs once, in eval mode and fp32, over the un-augmented images: the embeddings are fixed, so
there is nothing to augment. The driver caches them in the results folder (embeddings/<key>.npz, plain arrays,
read back with allow_pickle=False, checked against the sha256 of their content) and every worker reads that
file: each job trains on the same numbers, whichever process computed them.

A cycle is then the shared trainer on rows of the embedding matrix: the head (a Linear, initialised from the
seed like a model) trains with the protocol's optimizer settings, epochs, batch size and milestones, and the
strategies read head(embedding) as logits and the embedding itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol, RunConfig
from bench.core.errors import regular_file
from bench.core.files import atomic_write
from bench.core.seeding import derive_seed, seeded_globals
from bench.data.images import ImageData
from bench.models.backbones import AuxHead, Backbone, ModelOutput
from bench.models.build import build_model
from bench.models.weights import load_weights, read_weights
from bench.training.optim import learning_rate
from bench.training.trainer import DeviceData, FitResult, Trainer, TrainingDiverged, synced_clock

BACKBONE_SEED = derive_seed(0, "frozen-backbone")  # the backbone's initialisation: one for every run seed
METHOD = "eval-mode fp32, no augmentation"  # how the embeddings are computed (part of the cache key)
ARRAYS = ("key", "sha256", "train", "test", "y_train", "y_test", "n_classes")  # the cache file's members

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
                   dataset_fingerprint: str, device_type: str = "cpu") -> str:
    """The cache key: sha256 over what decides the embeddings (model name, weights and model file content, image
    size, dataset content, the backbone's seed and how it is run)."""
    identity = {"model": model, "weights": model_fingerprint.get("weights", ""),
                "model_file": model_fingerprint.get("model_file", ""), "image_size": image_size,
                "dataset": dataset_fingerprint, "backbone_seed": BACKBONE_SEED, "method": METHOD}
    if device_type != "cpu":  # a GPU's kernels round otherwise; the CPU's cache files keep their names
        identity["device_type"] = device_type
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def frozen_backbone(name: str, data: ImageData, image_size: int | None, weights: Path | str | None = None,
                    weights_sha256: str | None = None) -> Backbone:
    """The fixed backbone in eval mode: BACKBONE_SEED's initialisation, then the weights file's tensors."""
    size = (image_size, image_size) if image_size else tuple(int(s) for s in data.x_train.shape[2:])
    model = build_model(name, data.channels, data.n_classes, BACKBONE_SEED, size)
    if weights:
        load_weights(model, read_weights(weights, weights_sha256), weights, name)
    return model.eval()


def compute_embeddings(data: ImageData, protocol: Protocol, device: torch.device, weights: Path | str | None = None,
                       weights_sha256: str | None = None) -> Embeddings:
    """One pass of the fixed backbone over the pool and the test set (eval mode, fp32, no augmentation)."""
    model = frozen_backbone(protocol.model, data, protocol.image_size, weights, weights_sha256)
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


def write_embeddings(path: Path, key: str, embeddings: Embeddings) -> None:
    """Write the cache file whole or not at all (bench.core.files.atomic_write): a killed run never leaves half a
    file, a failed write is one line."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed run's unfinished write (the driver holds the lock)
        stale.unlink(missing_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a handle: np.savez would add ".npz" to the temporary file's name
            np.savez(f, key=np.array(key), sha256=np.array(embeddings.sha256), train=embeddings.train,
                     test=embeddings.test, y_train=embeddings.y_train, y_test=embeddings.y_test,
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
    train, test, y_train, y_test = (arrays[n] for n in ("train", "test", "y_train", "y_test"))
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
    write_embeddings(path, key, embeddings)
    return embeddings, f"{why} in {time.perf_counter() - start:.1f} s, saved to {path}"


# ---------------------------------------------------------------------------------------------- a run's embeddings


def embeddings_file(config: RunConfig) -> Path:
    """Frozen mode: the folder's cache file of the fixed backbone's embeddings (named by what decides them)."""
    p = config.protocol
    key = embeddings_key(p.model, config.model_fingerprint, p.image_size, config.dataset_fingerprint,
                         config.device_type)
    return config.out / CACHE_FOLDER / f"{key}.npz"


def frozen_payload(config: RunConfig) -> dict[str, Any]:
    """What config.json records of a frozen-feature run's backbone and embeddings."""
    return {"backbone_seed": BACKBONE_SEED, "backbone_seed_purpose": "derive_seed(0, 'frozen-backbone')",
            "embeddings": str(embeddings_file(config).relative_to(config.out)), "method": METHOD,
            "head": "nn.Linear(embedding_dim, n_classes)"}


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


# ---------------------------------------------------------------------------------------------- training the head


@dataclass
class EmbeddingData:
    """The embeddings on the device, in the form the trainer reads images (DeviceData's fields): a batch is a set
    of rows, with no crop, flip or normalisation."""

    x_train: torch.Tensor  # [N, d] float32
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, d] float32
    y_test: torch.Tensor  # [M] int64
    pad: int = 0
    flip: bool = False

    @classmethod
    def from_embeddings(cls, embeddings: Embeddings, device: torch.device) -> EmbeddingData:
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(put(embeddings.train), put(embeddings.y_train), put(embeddings.test), put(embeddings.y_test))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def train_images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x_train[idx]  # [n, d]


class HeadTrainer(Trainer):
    """The shared trainer (fit, evaluate, infer) on embeddings: the head's input is the embedding row as it is,
    in fp32. Without an auxiliary head, an SGD protocol's fit takes the closed-form gradient of a linear head's
    cross-entropy and applies torch.optim.SGD's update by hand: at these sizes autograd and the optimizer objects
    cost several times the arithmetic. The batches, their order and the schedule are the shared trainer's, so a
    head trained here equals one trained through autograd (BALD's cycles take that path, for its dropout head, and
    so does every other optimizer, built by bench.training.optim)."""

    def __init__(self, data: EmbeddingData, protocol: Protocol, device: torch.device) -> None:
        super().__init__(data, dataclasses.replace(protocol, precision="fp32"), device)  # type: ignore[arg-type]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fit(self, model: Backbone, labeled: torch.Tensor, generator: torch.Generator,
            aux: AuxHead | None = None, aux_generator: torch.Generator | None = None) -> FitResult:
        if aux is not None or not isinstance(model, LinearHead) or self.protocol.optimizer != "sgd":
            return super().fit(model, labeled, generator, aux, aux_generator)
        start = synced_clock(self.device)
        p, classifier, n = self.protocol, model.classifier, labeled.numel()
        ones = torch.ones(n, 1, device=self.device)
        x = torch.cat([self.data.x_train[labeled], ones], dim=1)  # [n, d + 1]: the bias as one more weight
        target = F.one_hot(self.data.y_train[labeled], classifier.out_features).float()  # [n, C]
        weight = torch.cat([classifier.weight.detach(), classifier.bias.detach()[:, None]], dim=1)  # [C, d + 1]
        buffer: torch.Tensor | None = None  # SGD's momentum buffer
        epoch_loss = torch.zeros((), device=self.device)
        model.train()
        with torch.no_grad():
            for epoch in range(p.epochs):
                lr = learning_rate(p, epoch)
                order = torch.randperm(n, generator=generator, device=self.device)  # the shared trainer's draw
                xs, ts = x[order], target[order]
                last = epoch == p.epochs - 1  # the loss is reported for the last epoch only
                epoch_loss = torch.zeros((), device=self.device)
                for first in range(0, n, p.batch_size):
                    xb, tb = xs[first:first + p.batch_size], ts[first:first + p.batch_size]  # [B, d + 1], [B, C]
                    b = xb.shape[0]
                    # no batch norm here: a batch of one trains (the shared trainer skips it only for batch norm)
                    log_p = torch.log_softmax(xb @ weight.T, dim=1)  # [B, C]
                    if last:
                        epoch_loss -= (log_p * tb).sum()
                    d_logits = log_p.exp_().sub_(tb)  # B x d(mean cross-entropy)/d logits: softmax - onehot
                    # torch.optim.SGD's step: gradient plus weight decay, momentum buffer, step
                    grad = torch.addmm(weight, d_logits.T, xb, beta=p.weight_decay, alpha=1.0 / b)  # [C, d + 1]
                    buffer = grad if buffer is None else buffer.mul_(p.momentum).add_(grad)
                    weight.sub_(buffer, alpha=lr)
                if not torch.isfinite(weight).all():  # one sync per epoch
                    raise TrainingDiverged(f"the head's weights became non-finite at epoch {epoch + 1}")
            classifier.weight.copy_(weight[:, :-1])
            classifier.bias.copy_(weight[:, -1])
        return FitResult(synced_clock(self.device) - start, float(epoch_loss) / max(n, 1))


class LinearHead(Backbone):
    """A linear classifier on fixed embeddings, offered as a Backbone: its input is the embedding, its logits
    head(embedding); it has no stage features."""

    def __init__(self, embedding_dim: int, n_classes: int) -> None:
        super().__init__()
        self.stage_channels, self.embedding_dim = [], embedding_dim
        self.stem, self.stages = nn.Identity(), nn.ModuleList()
        self.classifier = nn.Linear(embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.head(x), x, [])


def initial_head(seed: int, embedding_dim: int, n_classes: int) -> LinearHead:
    """The seed's initial head: nn.Linear's own initialisation drawn under derive_seed(seed, "init-weights"), the
    stream a fine-tuned model's initialisation uses (global RNG state is restored)."""
    with seeded_globals(seed, "init-weights"):
        return LinearHead(embedding_dim, n_classes)


def worker_data(path: str, sha256: str, device: torch.device) -> tuple[EmbeddingData, int]:
    """A worker's copy of the run's embeddings: the driver's cache file, checked against its digest."""
    try:
        embeddings = read_embeddings(Path(path), sha256=sha256)
    except (FileNotFoundError, DamagedCache) as err:
        reason = "it is missing" if isinstance(err, FileNotFoundError) else str(err)
        raise RuntimeError(f"the run's embeddings file {path} cannot be used on this worker ({reason}): in frozen "
                           "mode the workers read it from the results folder, which they must share") from None
    return EmbeddingData.from_embeddings(embeddings, device), embeddings.n_classes


def describe(model: str, weights: Path | None, n_classes: int | None = None) -> str:
    """The frozen-feature protocol of a run, in words (the run's `frozen` line)."""
    source = f"--weights {weights}" if weights else "no --weights: the features of a randomly initialised network"
    head = f"a linear head (embedding -> {n_classes} classes)" if n_classes else "a linear head"
    return (f"backbone {model} built once for every seed (initialisation seed derive_seed(0, 'frozen-backbone')), "
            f"{source}; it embeds the pool and the test set once, in eval mode and fp32, without augmentation (the "
            f"embeddings are fixed), cached in embeddings/; each cycle trains only {head} on them")
