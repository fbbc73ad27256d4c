"""Running a benchmark as a plain Python function: `run_benchmark(build_config(...), RunOptions())`.

Resolves a configuration (preset, overrides, strategy parameters with their epochs resolved), opens the
results folder under its lock (resuming, refusing another configuration, or moving old results aside),
schedules what is left, and writes the report. The command line (bench/cli.py) only parses arguments into
these calls and maps errors to exit codes; tests and notebooks call them directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.analysis.design import check_design, fixed_analysis
from bench.core.config import RunConfig
from bench.core.errors import UserError
from bench.core.registry import code_digest
from bench.core.seeding import use_deterministic
from bench.data.datasets import DATASETS, load_dataset
from bench.data.images import ImageData, dataset_fingerprint
from bench.data.imbalance import pool_size
from bench.data.vectors import VectorData
from bench.models.build import check_image_model, check_model_params, check_setup, check_vector_setup
from bench.results.identity import covered, finished, folder_line, open_store, preview
from bench.results.lock import FolderLock, check_writable
from bench.results.store import CYCLES, FAILURES, RunStore
from bench.runner import clusters
from bench.runner.console import accuracy_table, comparison_line, describe_run
from bench.runner.devices import resolve_devices
from bench.runner.progress import Progress
from bench.runner.resolve import (
    RunOptions,
    RunResult,
    config_payload,
    execution,
    job_specs,
    resolve_baseline,
    resolve_numerics,
    settle_for_data,
    user_files,
)
from bench.runner.scheduler import DataSource, Driver, InlinePool, Outcome, make_pool
from bench.runner.tracking import Tracker, open_tracker
from bench.training import linear_probe
from bench.training.jobs import JobSpec, JobState
from bench.training.loop import start_state
from strategies import STRATEGIES, check_importable

# ---------------------------------------------------------------------------------------------- resolution


# ---------------------------------------------------------------------------------------------- description


# ---------------------------------------------------------------------------------------------- running


def run_benchmark(config: RunConfig, options: RunOptions | None = None) -> RunResult:
    """Run every pending (strategy, seed) job of `config` into config.out, then write the report."""
    options = options or RunOptions()
    options.validate()
    if options.max_seeds is not None:  # the rounds are seeds_auto's (which calls this module): not silently fixed
        raise UserError(f"RunOptions(max_seeds={options.max_seeds}) asks for seeds in rounds (--seeds auto), which "
                        "run_benchmark does not run: call bench.benchmark_in_rounds(config, options), or leave "
                        "max_seeds None for the config's fixed seeds.")
    # one hold of the folder's lock from the first write to the report's last: no report or run in between
    tracker = open_tracker(options.track, options.tracking_uri)  # --track: a mirror of the folder, never in the way
    with contextlib.ExitStack() as held:
        failures = benchmark_round(config, options, held=held, tracker=tracker)
        return finish(config.out, failures, options, tracker)


def benchmark_round(config: RunConfig, options: RunOptions, analysis: dict[str, Any] | None = None,
                    quiet: bool = False, held: contextlib.ExitStack | None = None,
                    tracker: Tracker | None = None) -> list[str]:
    """Run the pending jobs of config's strategies and seeds, and those only: a folder that holds other strategies
    or seeds keeps them, and config.json records the union. analysis: what config.json records of the verdicts'
    design (default: the fixed design with options' baseline and margin). quiet: no description (a later round
    of --seeds auto). held: where the folder's lock goes, to be held beyond this call (by run_benchmark and
    seeds_auto, until their report is written); None: released on return. tracker: where --track mirrors the rows
    (None: a tracker of this round alone). Returns the keys of the failed jobs."""
    options.validate()
    baseline = resolve_baseline(options.baseline)
    devices = resolve_devices(config.devices)
    cluster = clusters.for_run(options, devices)  # SLURM, PBS or LSF jobs and their device, checked before any work
    data = load_dataset(config.protocol.dataset, config.data_root, config.download)
    config, model_note = run_config(config, data, devices)
    # before anything starts CUDA here or in a worker (they inherit the environment): CUBLAS_WORKSPACE_CONFIG
    use_deterministic(config.protocol.deterministic and config.device_type == "cuda")
    folder = config.out
    check_writable(folder)
    own = contextlib.ExitStack()
    # before the plan is shown: a folder in use is refused first
    (own if held is None else held).enter_context(FolderLock(folder).holding())
    with own:
        if not quiet:
            print(describe_run(config, data, devices, model_note), flush=True)
        asked = config
        store, config, resumed = open_store(config, options.on_existing, STRATEGIES.names())
        store.remove_stale_temp_files()
        specs = job_specs(dataclasses.replace(config, strategies=asked.strategies, seeds=asked.seeds))
        ready, done = pending_work(specs, store, int(data.x_train.shape[0]), data.y_train)
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
        # a second worker for one job would only cost its start; a cluster's jobs: one per job that can run
        workers = len(ready) if cluster else min(options.jobs, len(ready))
        pool, threads = (make_pool(options.backend, devices, workers, run_as["jobs_per_device"],
                                   options.scheduler_address, isolate=bool(options.strategy_files or
                                                                           config.model_files), cluster=cluster)
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
            tracker = tracker or open_tracker(options.track, options.tracking_uri)
            tracker.start(config, specs, store.cycles(), resumed)
            failures = schedule(config, options, store, specs, ready, done, pool, threads,
                                run_as.get("compile", False), embeddings, tracker)
        finally:
            if pool is not None:
                pool.close()
    return failures


def run_config(config: RunConfig, data: ImageData | VectorData, devices: list[str]) -> tuple[RunConfig, str]:
    """config as its jobs run it (settled for its data, its numerics resolved on devices, the dataset fingerprinted),
    after a run's checks of its pool and model (on the CPU); and the model's note. A --vary grid checks each setting
    through this, so that what it checks is what the setting's run will be."""
    config = resolve_numerics(settle_for_data(config, data), devices)
    config.protocol.validate_pool(pool_size(data.y_train, config.protocol.imbalance))
    model_note = check_model_setup(config, data)
    return dataclasses.replace(config, dataset_fingerprint=dataset_fingerprint(data)), model_note


def finish(folder: Path, failures: list[str], options: RunOptions, tracker: Tracker | None = None) -> RunResult:
    """The accuracy table, the report and its verdicts on the console, and the failed jobs named; the report and
    its verdicts to the tracker."""
    store = RunStore(folder)
    report = None
    if not store.cycles().empty:  # every job may have failed before its first row: then there is nothing to show
        accuracy_table(store)
        print(f"results   {folder / CYCLES}")
        report = write_report_or_explain(folder, resolve_baseline(options.baseline), options.margin,
                                         options.target_accuracy)
        print(f"report    {report}")
    if failures:
        print(f"failed    {len(failures)} job(s): {', '.join(failures)}; details in {folder / FAILURES}",
              file=sys.stderr)
    (tracker or Tracker()).finish(folder, report, bool(failures))
    return RunResult(folder, tuple(failures), report)


def dry_run(config: RunConfig, options: RunOptions | None = None) -> str:
    """What a run would do, after the checks a run makes before any work: devices, the dataset loaded (never
    downloaded), the pool large enough for the protocol, the images large enough for the model."""
    options = options or RunOptions()
    options.validate()
    if config.out.is_dir():  # a folder in use is refused, as the run refuses it, before any plan is promised
        with FolderLock(config.out).holding():
            pass
    devices = resolve_devices(config.devices)
    cluster = clusters.for_run(options, devices)
    data: ImageData | VectorData | str
    try:
        data = load_dataset(config.protocol.dataset, config.data_root, download=False)
    except UserError as err:
        if not (config.download and config.protocol.dataset in DATASETS):  # a file, or a set a run cannot fetch
            raise
        data = f"not loaded ({str(err).partition(':')[0]}); a run downloads it"
    config = resolve_numerics(config if isinstance(data, str) else settle_for_data(config, data), devices)
    model_note, widened, resume = "", config, None
    if not isinstance(data, str):
        config.protocol.validate_pool(pool_size(data.y_train, config.protocol.imbalance))
        model_note = check_model_setup(config, data)
        if options.on_existing == "resume":  # what the folder holds, as the run will find it
            fingerprinted = dataclasses.replace(config, dataset_fingerprint=dataset_fingerprint(data))
            widened, resume = preview(fingerprinted, job_specs, STRATEGIES.names())
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
    if cluster is not None:  # the script a run would submit, once per job it runs at once
        jobs.append(clusters.describe(cluster, devices, len(job_specs(config))))
    return "\n".join([describe_run(config, data, devices, model_note), *([resume] if resume else []), comparisons,
                      *jobs])


def check_model_setup(config: RunConfig, data: ImageData | VectorData) -> str:
    """The model's checks before any work (bench.models.build) at the size the model is fed; its note. On vectors, a
    strategy that reads the images is refused in one line."""
    p = config.protocol
    stage_users = [s for s in config.strategies if STRATEGIES.get(s).reads_stages()]
    if isinstance(data, VectorData):
        for name in config.strategies:
            if STRATEGIES.get(name).needs & {"images", "labeled_images"}:
                raise UserError(f"Strategy {name!r} reads images, and {p.dataset} is a dataset of vectors: drop "
                                f"{name!r}, or run it on the images.")
        return check_vector_setup(p.model, data.dim, data.n_classes, stage_users, dict(p.model_params),
                                  config.weights, config.model_fingerprint.get("weights"))
    check_image_model(p.model)
    check_model_params(p.model, dict(p.model_params))
    channels, height, width = (int(n) for n in data.x_train.shape[1:])
    height, width = (p.image_size, p.image_size) if p.image_size else (height, width)
    for name in config.strategies:  # a strategy that reads the images refuses a size it cannot take (VAAL's VAE)
        STRATEGIES.get(name)(**config.strategy_params.get(name, {})).check_images(channels, height, width)
    return check_setup(p.model, channels, height, width, data.n_classes, stage_users, config.weights,
                       config.model_fingerprint.get("weights"), frozen=p.train_mode == "frozen",
                       params=dict(p.model_params))


def write_report_or_explain(folder: Path, baseline: str, margin: float | None = None,
                            target: float | None = None) -> Path:
    """Write FOLDER/report/, print its primary verdicts, return report.md's path. margin: None takes the one
    config.json records."""
    # seaborn and scipy: imported when a report is written, not by every run_bench.py --help or dry run
    from bench.report.layout import report_folder

    path, lines = report_folder(folder, baseline, margin, target)
    print("\n".join(lines))
    return path


def schedule(config: RunConfig, options: RunOptions, store: RunStore, specs: list[JobSpec], ready: list,
             done: dict, pool: Any, threads: int | None, compiled: bool = False,
             embeddings: tuple[Path, str] | None = None, tracker: Tracker | None = None) -> list[str]:
    """Run what is left on the pool, writing each finished cycle at once; returns the keys of failed jobs.
    embeddings: frozen mode's cache file and the sha256 of its content, which the workers read and check.
    tracker: told of each cycle once it is in the folder."""
    tracker = tracker or Tracker()
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
            tracker.cycle(spec, result.record)  # after the folder's writes: the folder is the source of truth

        def on_failure(outcome: Outcome) -> None:
            failures.append(outcome.spec.key)
            store.add_failure({"job": outcome.spec.key, "strategy": outcome.spec.strategy, "seed": outcome.spec.seed,
                               "error": outcome.error, "traceback": outcome.traceback,
                               "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            progress.failed(outcome.spec, outcome.error)
            tracker.failed(outcome.spec)

        if ready:
            Driver(pool, source, threads, on_cycle, on_failure).run(ready)
    return failures


def pending_work(specs: list[JobSpec], store: RunStore, n_pool: int,
                 labels: Any = None) -> tuple[list[tuple[JobSpec, JobState]], dict]:
    """What is left to run: each unfinished job from its checkpoint (or its start), finished jobs skipped.
    A checkpoint of another configuration (or of none) restarts its job. labels: the training labels, from which
    an imbalanced protocol draws its pool."""
    ready, done = [], {}
    for spec in specs:
        cycles = store.done_cycles(spec.strategy, spec.seed)
        if finished(spec, cycles):
            store.remove_checkpoint(spec.strategy, spec.seed)
            done[spec.key] = spec.protocol.cycles
            continue
        state = store.load_checkpoint(spec.strategy, spec.seed)
        if (state is None or state.config_hash != spec.config_hash or not cycles >= set(range(state.cycle))
                or state.cycle >= spec.protocol.cycles):
            state = start_state(spec, n_pool, labels)
        store.drop_from(spec.strategy, spec.seed, state.cycle)  # rows written after the checkpoint are redone
        done[spec.key] = state.cycle
        ready.append((spec, state))
    return ready, done
