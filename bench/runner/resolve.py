"""A run resolved before any work: `build_config` (preset, overrides, strategies and their parameters checked and
recorded), `RunOptions` (how it runs and reports, each field checked as its flag), the job list, the device type
and precision that enter the jobs' identity, and the payload config.json records."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.core import provenance
from bench.core.config import (
    MARGIN,
    PRESETS,
    Protocol,
    RunConfig,
    preset_protocol,
    proportions,
    resolve_epoch,
)
from bench.core.errors import UserError
from bench.core.registry import IMPORTED_CODE, code_digest, unknown_name
from bench.data.datasets import check_dataset, holds_vectors
from bench.data.images import ImageData
from bench.data.vectors import VectorData
from bench.models.build import check_deterministic, check_model, load_model_file, model_fingerprint
from bench.results.lock import check_place
from bench.runner import clusters
from bench.runner.devices import jobs_per_device
from bench.runner.tracking import check_tracking
from bench.training import linear_probe
from bench.training.jobs import JobSpec
from bench.training.optim import optimizer_class
from bench.training.trainer import compile_works, precision_name
from bench.training.vector_trainer import STANDARDISE
from strategies import STRATEGIES, create_strategy, load_strategy_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]


BACKENDS = ("loky", "dask")  # this machine's processes; a dask.distributed cluster


ON_EXISTING = ("resume", "force", "fresh")  # what to do with a folder that holds results


MAX_SEEDS = 10_000  # seeds 0..N-1 of one run


@dataclass(frozen=True)
class RunOptions:
    """How a benchmark runs and reports; nothing here changes its numbers."""

    backend: str = "loky"  # loky (this machine's processes) | dask (a dask.distributed cluster)
    jobs: int = 1  # CPU worker processes (with dask and no address: local workers)
    jobs_per_device: int | str = 1  # jobs sharing each CUDA device, or "auto" (bench.runner.devices's rule)
    compile: bool = False  # torch.compile the model (falls back, with a warning, where it cannot)
    scheduler_address: str | None = None  # dask scheduler, tcp://HOST:PORT (None: a local cluster)
    cluster: str | None = None  # slurm | pbs | lsf: dask workers in scheduler jobs (bench.runner.clusters)
    cluster_options: tuple[str, ...] = ()  # KEY=VALUE for the cluster class (a list: the key repeated)
    strategy_files: tuple[Path, ...] = ()  # user strategy files, imported by the workers too
    baseline: str = "random"  # strategy the report compares against
    margin: float = MARGIN  # the equivalence margin of the verdicts (AULC fraction: 0.01 = 1 point)
    target_accuracy: float | None = None  # --target-accuracy (0..1): labels saved to reach it too; None: not asked
    max_seeds: int | None = None  # --seeds auto: seeds in rounds up to this many; None: the config's fixed seeds
    on_existing: str = "resume"  # resume | force (move old results aside) | fresh (delete them)
    command: tuple[str, ...] = ()  # the command line, recorded in config.json
    track: str = "none"  # none | mlflow: each job's params and per-cycle metrics mirrored (bench.runner.tracking)
    tracking_uri: str | None = None  # MLflow tracking URI (None: MLflow's default, sqlite:///mlflow.db here)

    def validate(self) -> None:
        """Every field checked as the command line checks its flag: one UserError, before any work."""
        if self.backend not in BACKENDS:
            raise unknown_name("backend", self.backend, BACKENDS)
        if self.on_existing not in ON_EXISTING:
            raise unknown_name("on_existing choice", self.on_existing, ON_EXISTING)
        if not _whole(self.jobs, 1):
            raise UserError(f"The 'jobs' parameter (--jobs) must be a positive integer. Got {self.jobs!r} instead.")
        k = self.jobs_per_device
        if k != "auto" and not _whole(k, 1):
            raise UserError(f"--jobs-per-device must be a positive integer or auto. Got {k!r} instead.")
        m = self.margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and m > 0):
            raise UserError(f"The 'margin' parameter (--margin) must be a positive number (an AULC fraction: 0.01 is "
                            f"1 point). Got {m!r} instead.")
        t = self.target_accuracy
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1):
            raise UserError("The 'target_accuracy' parameter (--target-accuracy) must be a test accuracy above 0 and "
                            f"at most 1 (0.95 is 95%), or None. Got {t!r} instead.")
        if self.max_seeds is not None and not _whole(self.max_seeds, 3):
            raise UserError("The 'max_seeds' parameter (--max-seeds) must be an integer of at least 3 (a paired "
                            f"interval needs 3 seeds to decide anything), or None. Got {self.max_seeds!r} instead.")
        if not isinstance(self.baseline, str):
            raise UserError(f"The 'baseline' parameter must be a strategy name. Got {self.baseline!r} instead.")
        if self.scheduler_address is not None and not isinstance(self.scheduler_address, str):
            raise UserError("The 'scheduler_address' parameter must be tcp://HOST:PORT or None. Got "
                            f"{self.scheduler_address!r} instead.")
        for name in ("strategy_files", "command"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, (tuple, list)):
                raise UserError(f"The {name!r} parameter must be a tuple (of paths, of words). Got {value!r} "
                                "instead.")
        check_tracking(self.track, self.tracking_uri)  # --track mlflow without MLflow installed: refused here
        clusters.check_run(self)  # --cluster and its options, and the flags it needs or refuses


def _whole(value: object, low: int) -> bool:
    """Whether value is an int (not a bool) of at least low."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class RunResult:
    folder: Path  # the results folder
    failed: tuple[str, ...]  # keys of the jobs that failed (details in failures.json)
    report: Path | None  # report.md


def load_strategy_files(paths: tuple[Path, ...] | list[Path]) -> None:
    for path in paths:
        load_strategy_file(Path(path))


def build_config(preset: str = "quick", strategies: list[str] | None = None, seeds: int = 3,
                 protocol: dict[str, Any] | None = None, strategy_params: dict[str, dict[str, Any]] | None = None,
                 name: str | None = None, out: Path | None = None, devices: str = "auto",
                 data_root: Path = Path("data"), download: bool = True, weights: Path | None = None,
                 model_files: tuple[Path, ...] | list[Path] = ()) -> RunConfig:
    """A checked RunConfig: the preset's protocol with the `protocol` fields given replaced (subset=None: the
    whole pool), strategies by name or alias (None: every registered one), each strategy's parameters with its
    defaults recorded and its epoch parameters resolved to epochs; the model files imported, the weights file
    read."""
    _check_arguments(strategies, protocol, strategy_params, name, out)
    p = preset_protocol(preset, **(protocol or {}))
    p.validate()
    optimizer_class(p)  # a name torch.optim lacks, or a setting the optimizer does not take: one line
    for path in model_files:
        load_model_file(path)
    check_model(p.model)
    check_dataset(p.dataset)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise UserError(f"The 'seeds' parameter must be an integer from 1 to {MAX_SEEDS}. Got {seeds!r} instead.")
    names = list(dict.fromkeys(STRATEGIES.canonical(n) for n in strategies)) if strategies else STRATEGIES.names()
    if p.train_mode == "frozen":  # named: refused in one line; by default: left out
        refused = {n: why for n in names if (why := STRATEGIES.get(n).frozen_refusal())}
        if refused and strategies:
            name, why = next(iter(refused.items()))
            raise UserError(f"Strategy {name!r} cannot run with --train-mode frozen: {why}. Drop it from "
                            "--strategies, or use --train-mode finetune.")
        names = [n for n in names if n not in refused]
    if holds_vectors(p.dataset) and not strategies:  # by default: what cannot run on vectors (or this model) left out
        names = [n for n in names if not STRATEGIES.get(n).needs & {"images", "labeled_images"}
                 and not (p.model == "linear" and STRATEGIES.get(n).reads_stages())]
    params = {k: dict(v) for k, v in PRESETS[preset]["strategy_params"].items() if k in names}
    for given_name, given in (strategy_params or {}).items():
        target = STRATEGIES.canonical(given_name)
        if target not in names:  # it would change nothing but the configuration's identity
            raise UserError(f"--strategy-param sets {target!r}, which is not among the strategies of this run "
                            f"({', '.join(names)}): add it to --strategies or drop the parameter.")
        params.setdefault(target, {}).update(given)
    for strategy_name in names:
        strategy = create_strategy(strategy_name, **params.get(strategy_name, {}))  # unknown or ill-typed fail
        if p.batch_size < strategy.min_batch_size:
            raise UserError(f"Strategy {strategy_name!r} needs a batch size of at least {strategy.min_batch_size}. "
                            f"Got --batch-size {p.batch_size} instead: raise --batch-size.")
        if strategy.params:  # record every parameter, defaults too: a changed default changes the config
            params[strategy_name] = {key: getattr(strategy, key) for key in strategy.params}
            for key in strategy.epoch_params:  # fractions of the epochs, resolved: the config holds epochs
                params[strategy_name][key] = resolve_epoch(params[strategy_name][key], p.epochs,
                                                           f"{strategy_name}.{key}")
    if name is not None and (name.strip() in ("", ".", "..") or "/" in name or "\\" in name):
        # results/NAME is a folder of its own: "." would be results/ itself, ".." or "a/b" somewhere else
        raise UserError(f"--name {name!r} is not a folder name: give a name without '/' or '\\' (not '.' or "
                        "'..'), or the folder's path with --out.")
    if name is not None and len(name.encode()) > (most := _name_max(Path("results"))):
        raise UserError(f"--name is {len(name.encode())} bytes long, longer than a file name may be here: give a name "
                        f"of at most {most} bytes (or the folder's path with --out).")
    kind, is_path, where = p.dataset.partition(":")  # npz:PATH and imagefolder:PATH by their file or folder stem
    name = name or f"{preset}-{(Path(where).stem if kind == 'npz' else Path(where).name) if is_path else p.dataset}"
    return RunConfig(protocol=p, strategies=tuple(names), seeds=tuple(range(seeds)), name=name,
                     out=Path(out) if out is not None else Path("results") / name, preset=preset, devices=devices,
                     data_root=Path(data_root), download=download,
                     strategy_params={k: v for k, v in params.items() if k in names}, weights=weights,
                     model_files=tuple(Path(f) for f in model_files),
                     model_fingerprint=model_fingerprint(p.model, weights), strategy_code=strategy_code(names))


def _check_arguments(strategies: Any, protocol: Any, strategy_params: Any, name: Any, out: Any) -> None:
    """build_config's arguments of the wrong kind, each one line (the command line cannot give them)."""
    if strategies is not None and (isinstance(strategies, str) or not all(isinstance(s, str) for s in strategies)):
        raise UserError(f"The 'strategies' parameter must be a list of strategy names. Got {strategies!r} instead.")
    if protocol is not None and not isinstance(protocol, dict):
        raise UserError(f"The 'protocol' parameter must be a dict of Protocol fields. Got {protocol!r} instead.")
    fields = list(Protocol.__dataclass_fields__)
    for key in protocol or {}:
        if key not in fields:
            raise unknown_name("protocol field", str(key), fields)
    if strategy_params is not None and not (isinstance(strategy_params, dict)
                                            and all(isinstance(v, dict) for v in strategy_params.values())):
        raise UserError("The 'strategy_params' parameter must be a dict of {strategy: {parameter: value}}. Got "
                        f"{strategy_params!r} instead.")
    if name is not None and not isinstance(name, str):
        raise UserError(f"The 'name' parameter (--name) must be a string. Got {name!r} instead.")
    if out is not None:
        if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
            raise UserError(f"--out {str(out)!r} names no folder: give the results folder's path (or leave it out "
                            "for results/NAME).")
        check_place(Path(out))


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that the file system under folder (or its nearest existing parent) takes."""
    for place in (folder, *Path(os.path.abspath(folder)).parents):
        if place.is_dir():
            try:
                return int(os.pathconf(place, "PC_NAME_MAX"))
            except (OSError, ValueError):
                break
    return 255


def user_files(options: RunOptions, config: RunConfig) -> list[str]:
    """The resolved paths of the strategy and model files this run imported (workers import them too)."""
    paths = [str(Path(f).resolve()) for f in (*options.strategy_files, *config.model_files)]
    return [p for p in dict.fromkeys(paths) if p in IMPORTED_CODE]


def strategy_code(names: list[str]) -> dict[str, str]:
    """{strategy: digest of the code its file ran} for the strategies defined in a user's file."""
    found = {}
    for name in names:
        file = getattr(sys.modules.get(STRATEGIES.get(name).__module__), "__file__", None)
        if file and str(Path(file).resolve()) in IMPORTED_CODE:
            found[name] = code_digest(file)
    return found


def resolve_baseline(name: str) -> str:
    """The report's baseline as a registered strategy name (a typo would otherwise surface after the run)."""
    try:
        return STRATEGIES.canonical(name)
    except UserError as err:
        raise UserError(f"--baseline: {err}") from None


def execution(options: RunOptions, config: RunConfig, data: ImageData, devices: list[str]) -> dict[str, Any]:
    """How this run executes (recorded in config.json; none of it is part of a job's identity): the jobs per
    device, resolved when "auto" (runner.devices), and whether the model is compiled, after checking that compiling
    works."""
    compiled = options.compile
    if compiled and (reason := compile_works(torch.device(devices[0]))) is not None:
        print(f"warning   --compile: torch.compile does not work here ({reason}); running uncompiled", file=sys.stderr)
        compiled = False
    k, packing = jobs_per_device(options.jobs_per_device, config.protocol, data, devices,
                                 [create_strategy(s, **config.strategy_params.get(s, {})) for s in config.strategies])
    return {"jobs_per_device": k, "packing": packing, "compile": compiled}


def settle_for_data(config: RunConfig, data: ImageData | VectorData) -> RunConfig:
    """config as its dataset decides it: vectors train in fp32, with no augmentation (bench.training.vector_trainer);
    a setting that means nothing for vectors is refused in one line."""
    p = config.protocol
    if not isinstance(data, VectorData):
        return config
    given = {"--train-mode frozen": p.train_mode == "frozen", f"--image-size {p.image_size}": p.image_size,
             f"--precision {p.precision}": p.precision not in ("auto", "fp32")}
    refused = [flag for flag, present in given.items() if present]
    if refused:
        raise UserError(f"{refused[0]} has no meaning for {p.dataset}, a dataset of vectors (they train in fp32, "
                        "unresized, on the vector models; --train-mode frozen is what embeds images into vectors): "
                        "drop it.")
    return dataclasses.replace(config, protocol=dataclasses.replace(p, precision="fp32", augment=False))


def resolve_numerics(config: RunConfig, devices: list[str]) -> RunConfig:
    """config with the device type its jobs run on and the precision they compute in (part of their identity),
    after refusing a model that deterministic mode cannot train there."""
    device = torch.device(devices[0])
    check_deterministic(config.protocol.model, device.type, config.protocol.deterministic)
    return dataclasses.replace(config, device_type=device.type,
                               precision_used=precision_name(config.protocol.precision, device))


def job_specs(config: RunConfig) -> list[JobSpec]:
    return [JobSpec(run=config.name, dataset=config.protocol.dataset, strategy=s, seed=seed,
                    protocol=config.protocol, params=config.strategy_params.get(s, {}),
                    config_hash=config.job_hash(s), weights=str(config.weights) if config.weights else None,
                    weights_sha256=config.model_fingerprint.get("weights", ""))
            for seed in config.seeds for s in config.strategies]


def epoch_proportions(config: RunConfig) -> dict[str, Any]:
    """The protocol's epoch settings (milestones, strategies' epoch parameters) as fractions of the epochs."""
    p = config.protocol
    points: dict[str, Any] = {"milestones": list(p.milestones)}
    for name in config.strategies:
        points.update({f"{name}.{key}": config.strategy_params[name][key]
                       for key in sorted(STRATEGIES.get(name).epoch_params)})
    return proportions(p.epochs, points)


def config_payload(config: RunConfig, data: ImageData | VectorData, devices: list[str],
                   command: tuple[str, ...]) -> dict:
    return {
        "name": config.name, "preset": config.preset,
        "job_hashes": {s: config.job_hash(s) for s in config.strategies},
        "strategy_code": {s: config.strategy_code[s] for s in sorted(config.strategy_code)},
        **config.result_defining(),
        "strategies": list(config.strategies), "seeds": list(config.seeds),
        "epoch_proportions": epoch_proportions(config),
        **({"frozen": linear_probe.frozen_payload(config)} if config.protocol.train_mode == "frozen" else {}),
        "model": {"name": config.protocol.model, "image_size": config.protocol.image_size,
                  "weights": None if config.weights is None else {
                      "path": str(Path(config.weights).resolve()), "sha256": config.model_fingerprint["weights"]},
                  "model_files": [str(Path(f).resolve()) for f in config.model_files]},
        "dataset": {"spec": config.protocol.dataset, "n_train": int(data.x_train.shape[0]),
                    "n_test": int(data.x_test.shape[0]), "shape": list(data.x_train.shape[1:]),
                    "classes": data.classes,
                    **({"kind": "vectors", "standardise": STANDARDISE} if isinstance(data, VectorData)
                       else {"mean": data.mean, "std": data.std})},
        "devices": {d: provenance.device_name(d) for d in devices},
        "versions": provenance.versions(), "git_commit": provenance.git_commit(PROJECT_ROOT),
        "command": list(command), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
