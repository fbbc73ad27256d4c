"""Running a benchmark as a plain Python function: `run_benchmark(build_config(...), RunOptions())`.

Resolves a configuration (preset, overrides, strategy parameters with their epochs resolved), opens the
results folder under its lock (resuming, refusing another configuration, or moving old results aside),
schedules what is left, and writes the report. The command line (bench/cli.py) only parses arguments into
these calls and maps errors to exit codes; tests and notebooks call them directly.
"""

from __future__ import annotations

import contextlib
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
    ALL_PAIRS,
    CONTEXT,
    MARGIN,
    PRESETS,
    PRIMARY,
    Protocol,
    RunConfig,
    families,
    preset_protocol,
    proportions,
    resolve_epoch,
)
from bench.core.errors import UserError
from bench.core.registry import IMPORTED_CODE, code_digest, unknown_name
from bench.core.seeding import use_deterministic
from bench.data.images import DATASETS, ImageData, check_dataset, dataset_fingerprint, load_dataset
from bench.models.build import check_deterministic, check_model, check_setup, load_model_file, model_fingerprint
from bench.results.design import check_design, fixed_analysis
from bench.results.identity import covered, folder_line, open_store, pending_work, preview
from bench.results.store import CYCLES, FAILURES, FolderLock, RunStore, check_place, check_writable
from bench.runner.devices import jobs_per_device, resolve_devices
from bench.runner.progress import Progress
from bench.runner.report_process import ReportAhead, ReportProcess
from bench.runner.scheduler import DataSource, Driver, InlinePool, Outcome, make_pool
from bench.training import linear_probe
from bench.training.jobs import JobSpec
from bench.training.trainer import compile_works, precision_name
from strategies import STRATEGIES, check_importable, create_strategy, load_strategy_file

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
    strategy_files: tuple[Path, ...] = ()  # user strategy files, imported by the workers too
    baseline: str = "random"  # strategy the report compares against
    margin: float = MARGIN  # the equivalence margin of the verdicts (AULC fraction: 0.01 = 1 point)
    max_seeds: int | None = None  # --seeds auto: seeds in rounds up to this many; None: the config's fixed seeds
    on_existing: str = "resume"  # resume | force (move old results aside) | fresh (delete them)
    command: tuple[str, ...] = ()  # the command line, recorded in config.json

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


def _whole(value: object, low: int) -> bool:
    """Whether value is an int (not a bool) of at least low."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class RunResult:
    folder: Path  # the results folder
    failed: tuple[str, ...]  # keys of the jobs that failed (details in failures.json)
    report: Path | None  # report.md


# ---------------------------------------------------------------------------------------------- resolution


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


def parse_strategy_params(items: list[str]) -> dict[str, dict[str, str]]:
    """['learning-loss.margin=0.5', ...] -> {'learning-loss': {'margin': '0.5'}} (values parsed by the strategy)."""
    params: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        name, dot, key = head.rpartition(".")
        if not sep or not dot or not name or not key:
            raise UserError(f"--strategy-param {item!r} must read STRATEGY.KEY=VALUE, e.g. learning-loss.margin=0.5.")
        params.setdefault(name, {})[key] = value
    return params


def resolve_baseline(name: str) -> str:
    """The report's baseline as a registered strategy name (a typo would otherwise surface after the run)."""
    try:
        return STRATEGIES.canonical(name)
    except UserError as err:
        raise UserError(f"--baseline: {err}") from None


def check_options(options: RunOptions) -> None:
    """RunOptions.validate (kept for callers of this name)."""
    options.validate()


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


# ---------------------------------------------------------------------------------------------- description


def epoch_proportions(config: RunConfig) -> dict[str, Any]:
    """The protocol's epoch settings (milestones, strategies' epoch parameters) as fractions of the epochs."""
    p = config.protocol
    points: dict[str, Any] = {"milestones": list(p.milestones)}
    for name in config.strategies:
        points.update({f"{name}.{key}": config.strategy_params[name][key]
                       for key in sorted(STRATEGIES.get(name).epoch_params)})
    return proportions(p.epochs, points)


def _as_fraction(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def describe_run(config: RunConfig, data: ImageData | str, devices: list[str], model_note: str = "") -> str:
    """The resolved run in words (data: the loaded dataset, or why it is not loaded; model_note: check_setup's)."""
    p = config.protocol
    if isinstance(data, str):
        dataset = f"dataset   {p.dataset}: {data}"
    else:
        shape = "x".join(map(str, data.x_train.shape[1:]))
        dataset = (f"dataset   {p.dataset}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images, "
                   f"{shape}, {data.n_classes} classes (augmentation: crop pad {data.pad if p.augment else 0}, "
                   f"flip {data.flip and p.augment})")
    lines = [
        dataset,
        f"model     {p.model}" + (f", images resized to {p.image_size}x{p.image_size}" if p.image_size else "")
        + (f": {model_note}" if model_note else ""),
        f"protocol  preset {config.preset}: initial {p.initial}, budget {p.budget}, cycles {p.cycles} "
        f"(labels {p.initial}..{p.labels_needed()}), subset {'whole pool' if p.subset is None else p.subset}",
        f"training  {p.epochs} epochs, batch {p.batch_size}, SGD lr {p.lr} momentum {p.momentum} "
        f"weight decay {p.weight_decay}, milestones {list(p.milestones) or 'none'} (x{p.gamma}), "
        f"{'warm' if p.warm_start else 'cold'} start, {p.convention} convention, precision {p.precision} -> "
        f"{config.numerics()['precision']}" + ("" if p.deterministic else ", nondeterministic"),
    ]
    for name, params in sorted(config.strategy_params.items()):
        lines.append(f"params    {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    lines.append("schedule  " + ", ".join(f"{k} at {_as_fraction(v)} of {p.epochs} epochs"
                                          for k, v in epoch_proportions(config).items()))
    if p.train_mode == "frozen":
        lines.append(f"frozen    {linear_probe.describe(p.model, config.weights, getattr(data, 'n_classes', None))}")
    lines += [
        f"jobs      {len(config.strategies)} strategies x {len(config.seeds)} seeds = "
        f"{len(config.strategies) * len(config.seeds)}: {', '.join(config.strategies)}; seeds "
        f"{', '.join(map(str, config.seeds))}",
        f"devices   {', '.join(devices)}",
        f"output    {config.out}",
    ]
    return "\n".join(lines)


def config_payload(config: RunConfig, data: ImageData, devices: list[str], command: tuple[str, ...]) -> dict:
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
                    "classes": data.classes, "mean": data.mean, "std": data.std},
        "devices": {d: provenance.device_name(d) for d in devices},
        "versions": provenance.versions(), "git_commit": provenance.git_commit(PROJECT_ROOT),
        "command": list(command), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def accuracy_table(store: RunStore) -> None:
    from rich.console import Console
    from rich.table import Table

    df = store.cycles()
    if df.empty:
        return
    grouped = df.groupby(["strategy", "n_labeled"])["test_acc"].agg(["mean", "std", "count"]).reset_index()
    labels = sorted(grouped["n_labeled"].unique())
    table = Table(title="Test accuracy (%), mean ± std over seeds", title_justify="left")
    table.add_column("strategy")
    for n in labels:
        table.add_column(f"{n} labels", justify="right")
    for strategy, rows in grouped.groupby("strategy"):
        cells = {int(r.n_labeled): f"{100 * r['mean']:.1f} ± {100 * (0 if r['count'] < 2 else r['std']):.1f}"
                 for _, r in rows.iterrows()}
        table.add_row(strategy, *[cells.get(int(n), "") for n in labels])
    Console(width=max(100, 14 * (len(labels) + 2))).print(table)


# ---------------------------------------------------------------------------------------------- running


def run_benchmark(config: RunConfig, options: RunOptions = RunOptions()) -> RunResult:
    """Run every pending (strategy, seed) job of `config` into config.out, then write the report."""
    options.validate()
    if options.max_seeds is not None:  # the rounds are seeds_auto's (which calls this module): not silently fixed
        raise UserError(f"RunOptions(max_seeds={options.max_seeds}) asks for seeds in rounds (--seeds auto), which "
                        "run_benchmark does not run: call bench.runner.seeds_auto.run_in_rounds(config, options), or leave "
                        "max_seeds None for the config's fixed seeds.")
    # one hold of the folder's lock from the first write to the report's last: no report or run in between
    with ReportAhead() as ahead, contextlib.ExitStack() as held:
        failures = run_jobs(config, options, ahead=ahead, held=held)
        return finish(config.out, failures, options, ahead)


def run_jobs(config: RunConfig, options: RunOptions, analysis: dict[str, Any] | None = None,
             quiet: bool = False, ahead: ReportAhead | None = None,
             held: contextlib.ExitStack | None = None) -> list[str]:
    """Run the pending jobs of config's strategies and seeds, and those only: a folder that holds other strategies
    or seeds keeps them, and config.json records the union. analysis: what config.json records of the verdicts'
    design (default: the fixed design with options' baseline and margin). quiet: no description (a later round
    of --seeds auto). ahead: the report's process, started here once nothing can refuse the run and the jobs are
    about to start. held: where the folder's lock goes, to be held beyond this call (by run_benchmark and
    seeds_auto, until their report is written); None: released on return. Returns the keys of the failed jobs."""
    options.validate()
    baseline = resolve_baseline(options.baseline)
    devices = resolve_devices(config.devices)
    config = resolve_numerics(config, devices)
    # before anything starts CUDA here or in a worker (they inherit the environment): CUBLAS_WORKSPACE_CONFIG
    use_deterministic(config.protocol.deterministic and config.device_type == "cuda")
    data = load_dataset(config.protocol.dataset, config.data_root, config.download)
    config.protocol.validate_pool(int(data.x_train.shape[0]))
    model_note = check_model_setup(config, data)
    config = dataclasses.replace(config, dataset_fingerprint=dataset_fingerprint(data))
    folder = config.out
    check_writable(folder)
    own = contextlib.ExitStack()
    # before the plan is shown: a folder in use is refused first
    (own if held is None else held).enter_context(FolderLock(folder).holding())
    with own:
        if not quiet:
            print(describe_run(config, data, devices, model_note), flush=True)
        asked = config
        store, config, resumed = open_store(config, options.on_existing)
        store.remove_stale_temp_files()
        specs = job_specs(dataclasses.replace(config, strategies=asked.strategies, seeds=asked.seeds))
        ready, done = pending_work(specs, store, int(data.x_train.shape[0]))
        if resumed:
            print(folder_line(store, asked, specs, ready), flush=True)
        prior = (store.read_config() or {}).get("analysis")
        analysis = analysis or fixed_analysis(asked.strategies, prior, baseline, options.margin)
        check_design(prior, analysis, folder)  # a design that has looked at data is not replaced
        if not quiet:  # what the report compares
            print(comparison_line(analysis["strategies"], covered(asked, config), baseline, options), flush=True)
        embeddings = linear_probe.prepare_embeddings(config, data, devices[0]) if ready else None  # frozen mode only
        # the pool before config.json: an unreachable cluster leaves the folder as it was
        run_as = execution(options, config, data, devices) if ready else {}
        workers = min(options.jobs, len(ready))  # a second worker for one job would only cost its start
        if ready and ahead is not None:  # past every refusal, before the pool's threads
            ahead.start()
        pool, threads = (make_pool(options.backend, devices, workers, run_as["jobs_per_device"],
                                   options.scheduler_address, isolate=bool(options.strategy_files or
                                                                           config.model_files))
                         if ready else (None, None))
        if ready:
            run_as["threads_per_worker"] = threads  # fixed on CPU: numbers that do not depend on --jobs
        try:
            if pool is not None and not isinstance(pool, InlinePool):  # a fresh process finds only what it imports
                check_importable(config.strategies, options.strategy_files)
            payload = config_payload(config, data, devices, options.command)
            if embeddings:  # frozen mode: the digest of the embeddings the workers read and check
                payload["frozen"]["embeddings_sha256"] = embeddings[1]
            store.write_config({**payload, "execution": run_as, "analysis": analysis})
            store.clear_failures()
            failures = schedule(config, options, store, specs, ready, done, pool, threads,
                                run_as.get("compile", False), embeddings)
        finally:
            if pool is not None:
                pool.close()
    return failures


def finish(folder: Path, failures: list[str], options: RunOptions,
           ahead: ReportAhead | ReportProcess | None = None) -> RunResult:
    """The accuracy table, the report and its verdicts on the console, and the failed jobs named. ahead: the
    report's process started as the jobs started (bench.runner.report_process), if any."""
    store = RunStore(folder)
    report = None
    if not store.cycles().empty:  # every job may have failed before its first row: then there is nothing to show
        accuracy_table(store)
        print(f"results   {folder / CYCLES}")
        report = write_report_or_explain(folder, resolve_baseline(options.baseline), options.margin, ahead)
        print(f"report    {report}")
    if failures:
        print(f"failed    {len(failures)} job(s): {', '.join(failures)}; details in {folder / FAILURES}",
              file=sys.stderr)
    return RunResult(folder, tuple(failures), report)


def comparison_line(asked: tuple[str, ...] | list[str], held: tuple[str, ...] | list[str], baseline: str,
                    options: RunOptions) -> str:
    """Which comparisons the report will make, said before any work: bench.core.config.families of the strategies
    the run asks about (its question) and those the folder holds, pairs in the report's order."""
    names = list(dict.fromkeys([*asked, *held]))
    found = families(asked, names, baseline)
    pairs = found[PRIMARY]
    margin = f"±{100 * options.margin:g} AULC point{'s' if options.margin != 0.01 else ''}"
    design = (f"seeds in rounds up to {options.max_seeds} (--seeds auto), stopping when every comparison is decided"
              if options.max_seeds else "fixed seeds, Holm over the comparisons")
    words = f"verdicts better, worse, equivalent within {margin} or undecided; {design}"
    if len(names) < 2:
        return f"compare   one strategy: nothing to compare (add {baseline} or another strategy)"
    count = f"{len(pairs)} comparison{'s' if len(pairs) > 1 else ''}"
    listed = f": {'; '.join(f'{a} vs {b}' for a, b in pairs)}" if len(pairs) <= 3 else ""
    asks = {s for pair in pairs for s in pair}
    if CONTEXT in found:
        others = ", ".join(s for s in names if s not in asks)
        against = f"each strategy against {baseline} " if baseline in asks else ""
        return (f"compare   this run asks {against}({count}{listed}), the primary family; the folder's other "
                f"strategies ({others}) are context, {len(found[CONTEXT])} comparisons in a family of their own; "
                f"{words}")
    if baseline not in names:
        return (f"compare   {baseline} is not in this run: the report compares the {len(names)} strategies with each "
                f"other ({count}{listed}); add {baseline} to compare against random sampling; {words}")
    every = f", and every pair ({len(found[ALL_PAIRS])}) as a family of its own" if ALL_PAIRS in found else ""
    return f"compare   each strategy against {baseline} ({count}){every}; {words}"


def dry_run(config: RunConfig, options: RunOptions = RunOptions()) -> str:
    """What a run would do, after the checks a run makes before any work: devices, the dataset loaded (never
    downloaded), the pool large enough for the protocol, the images large enough for the model."""
    options.validate()
    if config.out.is_dir():  # a folder in use is refused, as the run refuses it, before any plan is promised
        with FolderLock(config.out).holding():
            pass
    devices = resolve_devices(config.devices)
    config = resolve_numerics(config, devices)
    data: ImageData | str
    try:
        data = load_dataset(config.protocol.dataset, config.data_root, download=False)
    except UserError as err:
        if not (config.download and config.protocol.dataset in DATASETS):  # a file, or a set a run cannot fetch
            raise
        data = f"not loaded ({str(err).partition(':')[0]}); a run downloads it"
    model_note, widened, resume = "", config, None
    if not isinstance(data, str):
        config.protocol.validate_pool(int(data.x_train.shape[0]))
        model_note = check_model_setup(config, data)
        if options.on_existing == "resume":  # what the folder holds, as the run will find it
            fingerprinted = dataclasses.replace(config, dataset_fingerprint=dataset_fingerprint(data))
            widened, resume = preview(fingerprinted, job_specs)
        elif present := RunStore.results_present(config.out):
            fate = ("moved into previous-<time>/ inside it" if options.on_existing == "force"
                    else "deleted, once you confirm on a terminal")
            resume = f"{options.on_existing:<9} {', '.join(present)} in {config.out} would be {fate}"
    jobs = [f"job       {spec.key}" for spec in job_specs(config)]
    if options.max_seeds:
        jobs.append(f"rounds    --seeds auto: the jobs above first, then more seeds for the strategies still "
                    f"undecided, up to {options.max_seeds}")
    recorded = RunStore(config.out).read_config() if config.out.is_dir() and resume else None
    named = fixed_analysis(config.strategies, (recorded or {}).get("analysis"), "", 0)["strategies"]
    comparisons = comparison_line(named, covered(config, widened), resolve_baseline(options.baseline), options)
    return "\n".join([describe_run(config, data, devices, model_note), *([resume] if resume else []), comparisons,
                      *jobs])


def check_model_setup(config: RunConfig, data: ImageData) -> str:
    """The model's checks before any work (bench.models.build.check_setup) at the size the model is fed; its note."""
    p = config.protocol
    channels, height, width = (int(n) for n in data.x_train.shape[1:])
    height, width = (p.image_size, p.image_size) if p.image_size else (height, width)
    stage_users = [s for s in config.strategies if STRATEGIES.get(s).reads_stages()]
    for name in config.strategies:  # a strategy that reads the images refuses a size it cannot take (VAAL's VAE)
        STRATEGIES.get(name)(**config.strategy_params.get(name, {})).check_images(channels, height, width)
    return check_setup(p.model, channels, height, width, data.n_classes, stage_users, config.weights,
                       config.model_fingerprint.get("weights"), frozen=p.train_mode == "frozen")


def write_report_or_explain(folder: Path, baseline: str, margin: float | None = None,
                            ahead: ReportAhead | ReportProcess | None = None) -> Path:
    """Write FOLDER/report/ (in the report's process started ahead, if there is one and it can), print its
    primary verdicts, return report.md's path. margin: None takes the one config.json records."""
    written = ahead.write(folder, baseline, margin) if ahead else None
    if written is None:
        # seaborn and scipy: imported when a report is written, not by every run_bench.py --help or dry run
        from bench.report.layout import report_folder

        written = report_folder(folder, baseline, margin)
    path, lines = written
    print("\n".join(lines))
    return path


def schedule(config: RunConfig, options: RunOptions, store: RunStore, specs: list[JobSpec], ready: list,
             done: dict, pool: Any, threads: int | None, compiled: bool = False,
             embeddings: tuple[Path, str] | None = None) -> list[str]:
    """Run what is left on the pool, writing each finished cycle at once; returns the keys of failed jobs.
    embeddings: frozen mode's cache file and the sha256 of its content, which the workers read and check."""
    failures: list[str] = []
    source = DataSource(config.protocol.dataset, str(config.data_root), config.download,
                        tuple(str(Path(f).resolve()) for f in options.strategy_files), compile=compiled,
                        model_files=tuple(str(Path(f).resolve()) for f in config.model_files),
                        code=tuple((path, code_digest(path)) for path in user_files(options, config)),
                        embeddings=str(embeddings[0].resolve()) if embeddings else "",
                        embeddings_sha256=embeddings[1] if embeddings else "")
    with Progress(specs, done) as progress:
        def on_cycle(outcome: Outcome) -> None:
            spec, result = outcome.spec, outcome.result
            store.add_cycle(result.record, result.added)  # rows first: a checkpoint never runs ahead of them
            if outcome.state.cycle < spec.protocol.cycles:
                store.save_checkpoint(spec.strategy, spec.seed,
                                      dataclasses.replace(outcome.state, config_hash=spec.config_hash))
            else:
                store.remove_checkpoint(spec.strategy, spec.seed)
            progress.cycle_done(spec, result.record)

        def on_failure(outcome: Outcome) -> None:
            failures.append(outcome.spec.key)
            store.add_failure({"job": outcome.spec.key, "strategy": outcome.spec.strategy, "seed": outcome.spec.seed,
                               "error": outcome.error, "traceback": outcome.traceback,
                               "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            progress.failed(outcome.spec, outcome.error)

        if ready:
            Driver(pool, source, threads, on_cycle, on_failure).run(ready)
    return failures
