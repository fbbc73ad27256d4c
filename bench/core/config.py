"""Typed, frozen configuration: the protocol of one active-learning run, presets, validation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import UserError

# tf32: fp32 tensors whose CUDA matmuls and convolutions round their inputs to TF32; fp32 is IEEE fp32 (training)
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
# corrected: the LR schedule steps after each epoch's optimizer steps, and learning loss detaches its module from
# 0-based epoch `detach_after` on. reference: the reference code's order as it runs on PyTorch >= 1.1 (the schedule
# steps before the epoch, so each decay comes one epoch early) and its `epoch > detach_after` test.
CONVENTIONS = ("corrected", "reference")
# finetune: each cycle trains the whole network. frozen: a fixed backbone embeds the images once, and each cycle
# trains a linear head on those embeddings (bench/training/linear_probe.py).
TRAIN_MODES = ("finetune", "frozen")
MAX_IMAGE_SIZE = 4096  # pixels a side: 512 fp32 RGB images of 4096 x 4096 are 96 GiB already
# The verdicts' design (bench.analysis.verdicts): the equivalence margin as an AULC fraction, and --seeds auto's plan.
MARGIN = 0.01  # +-1 AULC point
FIRST_LOOK = 5  # seeds at the first look of --seeds auto
MAX_SEEDS_AUTO = 30  # the default --max-seeds
# What --help names without importing the registries (torch): tests/test_cli.py checks them against them.
HELP_DATASETS = ("breast-cancer", "cifar10", "cifar100", "digits", "digits-vectors", "fashion-mnist", "mnist", "svhn",
                 "wine", "npz:PATH", "imagefolder:PATH", "vectors:PATH")
HELP_MODELS = ("cnn", "resnet18", "linear", "mlp", "torchvision:NAME", "a --model-file's NAME")

EpochPoint = int | float  # an epoch (int), or a fraction of the epochs (float in (0, 1])


def resolve_epoch(value: EpochPoint, epochs: int, name: str) -> int:
    """An epoch given as an int, or as a fraction of `epochs` (float in (0, 1]), as a whole epoch."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"The '{name}' parameter must be an epoch (an integer) or a fraction of the epochs "
                        f"(a number in (0, 1]). Got {value!r} instead.")
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise UserError(f"The '{name}' parameter must be a fraction of the epochs in (0, 1] (or a whole epoch "
                            f"written without a decimal point). Got {value!r} instead.")
        return round(value * epochs)
    if value < 0:
        raise UserError(f"The '{name}' parameter must be a non-negative epoch. Got {value!r} instead.")
    return value


def parse_epoch_point(text: str) -> EpochPoint:
    """Command-line form: '160' is an epoch, '0.8' a fraction of the epochs."""
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a run's numbers, apart from the strategy and the seed."""

    dataset: str = "digits"  # dataset spec: a registered name, npz:PATH, imagefolder:PATH or vectors:PATH
    model: str = "cnn"  # registered model name
    model_params: tuple[tuple[str, str], ...] = ()  # --model-param KEY=VALUE pairs for the model's factory, by key
    initial: int = 30  # labeled examples before the first cycle
    budget: int = 30  # labels acquired per cycle
    cycles: int = 6  # train + evaluate rounds; the last one acquires nothing
    subset: int | None = None  # candidates scored per cycle (a seeded random subset); None = the whole pool
    epochs: int = 200  # training epochs per cycle
    batch_size: int = 32  # training examples per step
    # sgd | adamw | any torch.optim optimizer by its lower-case name (rmsprop, nadam, ...): bench/training/optim.py
    optimizer: str = "sgd"
    lr: float = 0.05  # learning rate
    momentum: float = 0.9  # SGD momentum (an optimizer without one, such as adamw, refuses any other value)
    weight_decay: float = 5e-4  # the optimizer's weight decay (SGD: an L2 penalty; AdamW: decoupled, as torch's)
    milestones: tuple[int, ...] = (160,)  # epochs after which the learning rate is multiplied by gamma
    gamma: float = 0.1  # learning-rate decay factor at each milestone
    warm_start: bool = True  # keep weights across cycles (True) or restart from the initial weights (False)
    augment: bool = True  # the dataset's training augmentation (random crop, flips where they make sense)
    precision: str = "auto"  # auto | fp32 | tf32 | bf16 | fp16 (auto: bf16 autocast where the hardware has it)
    eval_batch_size: int = 512  # examples per step when evaluating and scoring (no effect on results)
    convention: str = "corrected"  # corrected | reference (the reference code's schedule order and detach test)
    image_size: int | None = None  # side in pixels the images are resized to on the device (None: as stored)
    train_mode: str = "finetune"  # finetune | frozen (a linear head on a fixed backbone's embeddings)
    deterministic: bool = True  # CUDA's deterministic mode (seeding.use_deterministic); False: faster kernels
    # largest / smallest class count of the training pool (1: the pool as it is); R > 1: each seed's pool is a
    # per-class subsample along an exponential profile, class 0 the most frequent (bench/data/imbalance.py)
    imbalance: float = 1.0

    def validate(self) -> None:
        """Turn a bad value into one clear sentence (raises UserError)."""
        for name in ("initial", "budget", "cycles", "epochs", "batch_size", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        if self.batch_size == 1 and self.train_mode == "finetune":  # every batch would be skipped: nothing trains
            raise UserError("The 'batch_size' parameter must be at least 2 to fine-tune a network: batch norm "
                            "cannot train on one image, so every batch of one is skipped. Got 1 instead (--train-mode "
                            "frozen trains its linear head with any batch size).")
        if self.subset is not None:
            _positive_int("subset", self.subset)
            if self.subset < self.budget:
                raise UserError(
                    f"The 'subset' parameter must be at least the budget ({self.budget}) so that a cycle "
                    f"can pick its labels from it. Got {self.subset} instead."
                )
        # The name's shape only: torch.optim's classes are checked where the run is resolved (bench.training.optim),
        # which imports torch anyway; --help and this module do not.
        if not isinstance(self.optimizer, str) or not self.optimizer.isidentifier():
            raise UserError("The 'optimizer' parameter must be sgd, adamw or a torch.optim optimizer's name "
                            f"(rmsprop, nadam, ...). Got {self.optimizer!r} instead.")
        for name in ("lr",):
            if not (isinstance(getattr(self, name), (int, float)) and 0 < getattr(self, name) < math.inf):
                raise UserError(
                    f"The '{name}' parameter must be a positive number. Got {getattr(self, name)!r} instead."
                )
        for name in ("weight_decay", "gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise UserError(f"The '{name}' parameter must be a non-negative number. Got {value!r} instead.")
        if isinstance(self.momentum, bool) or not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise UserError(f"The 'momentum' parameter must be a number in [0, 1). Got {self.momentum!r} instead.")
        if any(not isinstance(m, int) or m <= 0 for m in self.milestones):
            raise UserError(
                f"The 'milestones' parameter must list positive epochs. Got {list(self.milestones)} instead."
            )
        if self.image_size is not None:
            _positive_int("image_size", self.image_size)
            if self.image_size > MAX_IMAGE_SIZE:  # one evaluation batch of such images would not fit in memory
                raise UserError(f"The 'image_size' parameter must be at most {MAX_IMAGE_SIZE} pixels: a batch of "
                                f"{self.image_size}x{self.image_size} images needs more memory than a machine has. "
                                f"Got {self.image_size} instead.")
        pairs = self.model_params
        if not isinstance(pairs, tuple) or any(
                not (isinstance(kv, tuple) and len(kv) == 2 and all(isinstance(x, str) for x in kv)) for kv in pairs):
            raise UserError("The 'model_params' parameter must be a tuple of (name, value) string pairs, as "
                            f"--model-param NAME=VALUE gives. Got {pairs!r} instead.")
        if len({k for k, _ in pairs}) != len(pairs):
            raise UserError(f"The 'model_params' parameter names a model parameter twice. Got {pairs!r} instead.")
        if self.convention not in CONVENTIONS:
            raise UserError(f"The 'convention' parameter must be one of {', '.join(CONVENTIONS)}. "
                            f"Got {self.convention!r} instead.")
        if self.train_mode not in TRAIN_MODES:
            raise UserError(f"The 'train_mode' parameter must be one of {', '.join(TRAIN_MODES)}. "
                            f"Got {self.train_mode!r} instead.")
        if not isinstance(self.deterministic, bool):
            raise UserError(f"The 'deterministic' parameter must be True or False. Got {self.deterministic!r} instead.")
        ratio = self.imbalance
        if isinstance(ratio, bool) or not (isinstance(ratio, (int, float)) and 1 <= ratio < math.inf):
            raise UserError("The 'imbalance' parameter must be a ratio of at least 1 (largest over smallest class "
                            f"count; 1 keeps the pool as it is). Got {ratio!r} instead.")
        if self.precision not in PRECISIONS:
            raise UserError(
                f"The 'precision' parameter must be one of {', '.join(PRECISIONS)}. Got {self.precision!r} instead."
            )

    def labels_needed(self) -> int:
        """Labeled examples at the last cycle."""
        return self.initial + self.budget * (self.cycles - 1)

    def validate_pool(self, n_pool: int) -> None:
        """Check that a training pool of n_pool examples can supply this protocol."""
        if self.initial >= n_pool:
            raise UserError(
                f"The 'initial' parameter must be smaller than the training pool ({n_pool} examples). "
                f"Got {self.initial} instead."
            )
        if self.labels_needed() > n_pool:
            raise UserError(
                f"The protocol needs {self.labels_needed()} labels (initial {self.initial} + budget {self.budget} "
                f"x {self.cycles - 1} acquisitions) but the training pool has {n_pool}: lower --budget, "
                f"--initial or --cycles."
            )


DEFAULT_PROTOCOL = {f.name: f.default for f in dataclasses.fields(Protocol)}


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"The '{name}' parameter must be a positive integer. Got {value!r} instead.")


# Every preset keeps the paper's proportions (Yoo & Kweon, CVPR 2019, Sec. 4.1: 200 epochs, the learning rate
# x0.1 after epoch 160, the learning-loss module's gradient to the backbone stopped after epoch 120): milestones
# and detach_after are fractions of the epochs, resolved to whole epochs when the protocol is built, so that
# `--epochs` keeps them. Learning loss: margin 1, weight 1 (its defaults), detach at 0.6 of the epochs.
DECAY_AT = (0.8,)
_LL_PAPER = {"margin": 1.0, "weight": 1.0, "detach_after": 0.6}

PRESETS: dict[str, dict[str, Any]] = {
    # A faithful miniature of the paper on digits with a small CNN (the Protocol defaults): 200 epochs, so that
    # even the 30-label first cycle gets 200 optimizer steps (a warm-started network trained jointly with the
    # learning-loss module settles; 40 steps do not), decay at 0.8, detach at 0.6.
    "quick": {
        "protocol": dict(milestones=DECAY_AT),
        "strategy_params": {"learning-loss": dict(_LL_PAPER)},
    },
    # Yoo & Kweon, CVPR 2019: CIFAR-10, ResNet-18, 1k initial, 1k per cycle, 10 cycles, 10k random subset,
    # 200 epochs, batch 128, SGD lr 0.1 momentum 0.9 wd 5e-4, lr x0.1 after epoch 160, detach after 120.
    "paper": {
        "protocol": dict(
            dataset="cifar10", model="resnet18", initial=1000, budget=1000, cycles=10, subset=10000,
            epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, milestones=DECAY_AT,
            warm_start=True,
        ),
        "strategy_params": {"learning-loss": dict(_LL_PAPER)},
    },
    # The tutorial that reimplemented it: 5 cycles of 40 epochs at lr 0.01, no decay (as the tutorial). It kept
    # the paper's detach epoch 120, which 40 epochs never reach; here the module detaches at 0.6 of the epochs.
    "blog": {
        "protocol": dict(
            dataset="cifar10", model="resnet18", initial=1000, budget=1000, cycles=5, subset=10000,
            epochs=40, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4, milestones=(),
            warm_start=True,
        ),
        "strategy_params": {"learning-loss": dict(_LL_PAPER)},
    },
}


@dataclass(frozen=True)
class RunConfig:
    """A whole benchmark: one protocol, several strategies and seeds, where to write."""

    protocol: Protocol
    strategies: tuple[str, ...]  # canonical strategy names
    seeds: tuple[int, ...]
    name: str  # run name (the results folder's name by default)
    out: Path  # results folder
    preset: str = "quick"
    devices: str = "auto"  # auto | cpu | cuda:N[,cuda:M...]
    data_root: Path = Path("data")  # where torchvision datasets live
    download: bool = True  # fetch missing torchvision datasets when online
    strategy_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # {strategy: {param: value}}
    dataset_fingerprint: str = ""  # sha256 of the dataset's arrays ("" until the data is loaded)
    weights: Path | None = None  # --weights: a state dict loaded into each cycle's freshly initialised model
    model_files: tuple[Path, ...] = ()  # --model-file: files registering models (the workers import them too)
    model_fingerprint: dict[str, str] = field(default_factory=dict)  # sha256 of the weights and of the model's file
    strategy_code: dict[str, str] = field(default_factory=dict)  # {user strategy: digest of the code its file ran}
    device_type: str = "cpu"  # cpu | cuda: where the jobs run, resolved from devices
    precision_used: str = ""  # float32 | tf32 | bfloat16 | float16, resolved on the device ("": as on a plain CPU)

    def numerics(self) -> dict[str, str]:
        """Where and in which precision the numbers are computed: a CPU and a GPU, or fp32 and bf16, give other
        numbers from one protocol, so a folder never pairs their rows."""
        return {"device_type": self.device_type,
                "precision": self.precision_used or CPU_PRECISION[self.protocol.precision]}

    def result_defining(self) -> dict[str, Any]:
        """The settings that decide the numbers (a folder holding other settings is not the same run)."""
        return {
            "protocol": dataclasses.asdict(self.protocol),
            "dataset_fingerprint": self.dataset_fingerprint,
            "model_fingerprint": dict(sorted(self.model_fingerprint.items())),
            "strategy_params": {k: dict(sorted(v.items())) for k, v in sorted(self.strategy_params.items())},
            **self.numerics(),
        }

    def job_hash(self, strategy: str) -> str:
        """The identity of one strategy's jobs: protocol, dataset content, the strategy and its parameters.
        Every row and checkpoint carries it; a folder holding another one is another configuration."""
        params = dict(sorted(self.strategy_params.get(strategy, {}).items()))
        identity = {"protocol": protocol_identity(self.protocol), "dataset": self.dataset_fingerprint,
                    "strategy": strategy, "params": params}
        if self.protocol.train_mode == "frozen":  # the head's inputs changed: another job than a raw-embedding run's
            identity["head"] = FROZEN_HEAD
        if self.model_fingerprint:  # only when set: a run without weights or a model file keeps its identity
            identity["model"] = dict(sorted(self.model_fingerprint.items()))
        if strategy in self.strategy_code:  # a user's strategy: the code it runs (an edited file is another job)
            identity["code"] = self.strategy_code[strategy]
        if self.device_type != "cpu":  # only off the CPU: every earlier (CPU) run keeps its identity; a CPU
            identity["numerics"] = self.numerics()  # folder's precision is held by its config.json (results.identity)
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# The precision each setting computes in on a CPU without native bf16: what a folder whose config.json predates the
# resolved precision is taken to have run in (bench.results.identity), and a configuration's before it is resolved.
CPU_PRECISION = {"auto": "float32", "fp32": "float32", "tf32": "tf32", "bf16": "bfloat16", "fp16": "float16"}
# What a frozen-feature cycle trains (bench.training.linear_probe): part of its jobs' identity, so that a folder of the
# head trained on raw embeddings, before they were standardised, is not resumed with these numbers.
FROZEN_HEAD = "linear model on the embeddings standardised by the pool"
# Optional protocol fields enter a job's identity only when set: a protocol without them hashes as it always has.
OPTIONAL_FIELDS = {"image_size": None, "train_mode": "finetune", "deterministic": True, "optimizer": "sgd",
                   "imbalance": 1.0, "model_params": ()}


def protocol_identity(protocol: Protocol) -> dict[str, Any]:
    """The protocol's fields for the job hash: optional ones left out while at their default."""
    return {k: v for k, v in dataclasses.asdict(protocol).items() if OPTIONAL_FIELDS.get(k, ...) != v}


def preset_protocol(preset: str, **overrides: Any) -> Protocol:
    """The preset's protocol with the fields given replaced (each one given, None too: subset=None is the whole
    pool)."""
    if preset not in PRESETS:
        raise UserError(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
    fields = {**DEFAULT_PROTOCOL, **PRESETS[preset]["protocol"]}
    fields.update(overrides)
    if isinstance(fields["optimizer"], str):  # torch's spelling (AdamW, RMSprop) names the same job as ours
        fields["optimizer"] = fields["optimizer"].lower()
    epochs = fields["epochs"]
    _positive_int("epochs", epochs)
    fields["milestones"] = tuple(resolve_epoch(m, epochs, "milestones") for m in fields["milestones"])
    for given, epoch in zip(overrides.get("milestones") or (), fields["milestones"], strict=False):
        if isinstance(given, float) and epoch == 0:  # a fraction that rounds to no epoch at all
            raise UserError(f"The 'milestones' parameter {given!r} is {given * epochs:g} of an epoch at {epochs} "
                            f"epochs, which rounds to epoch 0: give a fraction of at least {1 / epochs:.3g}, or "
                            "whole epochs.")
    if fields["train_mode"] == "frozen":  # fixed embeddings: nothing to augment; the head trains in fp32
        if overrides.get("precision") in ("tf32", "bf16", "fp16"):
            raise UserError(f"--precision {overrides['precision']} has no effect with --train-mode frozen: the "
                            "embeddings and the head are computed in fp32; drop --precision.")
        fields.update(augment=False, precision="fp32")
    return Protocol(**fields)


def proportions(epochs: int, points: dict[str, Any]) -> dict[str, Any]:
    """Epoch settings as fractions of the epochs (what a preset states), for display and provenance."""
    def fraction(e: int) -> float:
        return round(e / epochs, 4)

    return {k: [fraction(e) for e in v] if isinstance(v, (list, tuple)) else fraction(v) for k, v in points.items()}
