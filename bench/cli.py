"""Command line: `run_bench.py [options]` runs a benchmark; `run_bench.py report DIR` re-writes its report.

This module only parses arguments into bench.runner.benchmark's calls and maps errors to exit statuses: 0 done, 1 some
jobs failed (failures.json), 2 bad input or environment (one line, no traceback), 128 + the signal's number
when interrupted (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from bench.core.config import (
    CONVENTIONS,
    FIRST_LOOK,
    HELP_DATASETS,
    HELP_MODELS,
    MARGIN,
    MAX_SEEDS_AUTO,
    PRECISIONS,
    PRESETS,
    TRAIN_MODES,
    EpochPoint,
    Protocol,
    parse_epoch_point,
)
from bench.core.errors import UserError
from bench.core.signals import explain_interruption, stop_on_signals
from bench.core.vary import parse_vary, vary_fields

# Parsing, --help and the refusals of bad flags import this module and bench.core.config only; the harness (torch,
# pandas, scipy) is imported by the command that runs, when it runs: `--help` answers in a fraction of a second.


def machine_cores() -> int:
    """The cores this process may run on: the default number of CPU workers."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (UserError) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see --help)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _epoch_point(text: str) -> EpochPoint:
    try:
        return parse_epoch_point(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an epoch or a fraction of the epochs, got {text!r}") from None


def _per_device(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _seeds(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of AULC points, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of AULC points, got {text!r}")
    return value


def _percent(text: str) -> float:
    """--target-accuracy: a test accuracy in percent, above 0 and at most 100; returned as a fraction."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a test accuracy in percent (0 to 100), got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 100):
        raise argparse.ArgumentTypeError(f"expected a test accuracy in percent (0 to 100), got {text!r}")
    return value / 100


def _folder(text: str) -> Path:
    if not text.strip():  # Path("") is ".": the current folder, which nobody means by an empty --out
        raise UserError(f"--out {text!r} names no folder: give the results folder's path (or leave --out out for "
                        "results/NAME).")
    return Path(text)


def _subset(text: str) -> int | None:
    return None if text.lower() in ("all", "none", "0") else _positive(text)  # None: the whole pool


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a ratio of at least 1, got {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a ratio of at least 1, got {text!r}")
    return value


TARGET_HELP = ("also count the labels each strategy saves against the baseline to reach this test accuracy, e.g. 95 "
               "(percent; the report always counts them to the baseline's final accuracy)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_bench.py", description="Compare active-learning acquisition strategies over "
                     "paired seeds: every (strategy, seed) job, per-cycle accuracies to parquet, a report whose "
                     "verdicts read better, worse, equivalent or undecided.",
                     epilog="Re-write a run's report: run_bench.py report DIR [--baseline NAME] [--margin POINTS]; "
                     "compare runs across datasets: run_bench.py report DIR DIR ... --out SUITE (see run_bench.py "
                     "report --help).")
    add = parser.add_argument
    add("--strategies", nargs="+", metavar="NAME", help="strategy names or aliases (default: every registered one)")
    add("--seeds", type=_seeds, default=3, metavar="N|auto", help="run seeds 0..N-1 (default 3), or auto: seeds in "
        "rounds (5, 10, 15, 20, 30, ...) until every comparison is decided, at most --max-seeds")
    add("--max-seeds", type=_positive, metavar="N",
        help=f"with --seeds auto: the most seeds a strategy runs (default {MAX_SEEDS_AUTO})")
    add("--margin", type=_points, default=100 * MARGIN, metavar="POINTS",
        help="equivalence margin of the verdicts in AULC points: a difference within +-POINTS is 'equivalent' "
             f"(default {100 * MARGIN:g})")
    add("--preset", default="quick", help=f"protocol preset: {', '.join(PRESETS)} (default quick)")
    add("--dataset", help=f"dataset: {', '.join(HELP_DATASETS)}")
    add("--data-root", type=Path, default=Path("data"), help="folder of torchvision datasets (default ./data)")
    add("--no-download", action="store_true", help="never try to download a missing dataset")
    add("--model", help=f"model: {', '.join(HELP_MODELS)}")
    add("--model-param", action="append", default=[], metavar="KEY=VALUE",
        help="a parameter of the model's factory (repeatable), e.g. --model mlp --model-param hidden=256,256")
    add("--model-file", type=Path, action="append", default=[], metavar="PATH",
        help="a .py file registering models with @bench.models.backbones.register_model('NAME'), then --model NAME "
             "(repeatable); torchvision's classification models: --model torchvision:NAME")
    add("--weights", type=Path, metavar="PATH", help="a state dict (torch.save(model.state_dict(), PATH)) loaded "
        "after each seed's initialisation; a classifier of another class count keeps its initialisation")
    add("--image-size", type=_positive, metavar="N", help="resize images to N x N on the device (bilinear, "
        "antialiased when shrinking)")
    add("--train-mode", choices=TRAIN_MODES, help="finetune (default): train the whole network each cycle; frozen: "
        "embed the images once with a fixed backbone (--weights) and train a linear head on the embeddings")
    add("--initial", type=int, help="labeled examples before the first cycle")
    add("--budget", type=int, help="labels acquired per cycle")
    add("--cycles", type=int, help="train + evaluate rounds (the last acquires nothing)")
    add("--subset", type=_subset, help="candidates scored per cycle ('all' for the whole pool)")
    add("--epochs", type=int, help="training epochs per cycle")
    add("--batch-size", type=int, help="training batch size")
    add("--optimizer", help="sgd (default, as the presets are published), adamw, or any torch.optim optimizer by "
        "name (rmsprop, nadam, ...); its other settings stay torch's defaults")
    add("--lr", type=float, help="learning rate")
    add("--momentum", type=float, help="SGD momentum (only for optimizers that take one)")
    add("--weight-decay", type=float, help="weight decay (adamw: decoupled, as torch.optim.AdamW)")
    add("--milestones", type=_epoch_point, nargs="*", metavar="EPOCH",
        help="epochs after which the learning rate is multiplied by 0.1: whole epochs (160) or fractions of the "
             "epochs (0.8)")
    add("--convention", choices=CONVENTIONS, help="corrected (default) or reference: the reference code's "
        "schedule order (stepped before each epoch) and learning loss's `epoch > detach_after`")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--warm-start", dest="warm_start", action="store_true", default=None,
                       help="keep weights across cycles (the presets' default)")
    start.add_argument("--cold-start", dest="warm_start", action="store_false",
                       help="restart every cycle from the seed's initial weights")
    add("--no-augment", dest="augment", action="store_false", default=None, help="train without augmentation")
    add("--precision", choices=PRECISIONS, help="auto (bf16 where native), fp32, tf32 (fp32 with TF32 matmuls and "
        "convolutions on CUDA), bf16 or fp16")
    add("--nondeterministic", dest="deterministic", action="store_false", help="turn CUDA's deterministic mode off "
        "(faster kernels; seeds then pair statistically, not bit for bit)")
    add("--strategy-file", type=Path, action="append", default=[], metavar="PATH",
        help="a .py file defining more strategies (repeatable)")
    add("--strategy-param", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
        help="a strategy parameter, e.g. learning-loss.margin=0.5 (repeatable)")
    add("--devices", default="auto", help="auto, cpu or cuda:N[,cuda:M...] (default auto)")
    add("--jobs", type=_positive, default=machine_cores(), metavar="N",
        help=f"CPU worker processes, one core each (default: this machine's {machine_cores()}, at most one per job "
             "to run; with --backend dask: local workers); the numbers do not depend on it")
    add("--jobs-per-device", type=_per_device, default=1, metavar="K",
        help="jobs sharing each CUDA device, or auto: as many as memory, cores and throughput justify (default 1)")
    add("--compile", action="store_true", help="torch.compile the model (runs uncompiled, with a warning, where "
        "the compiler is missing)")
    add("--backend", default="loky", help="loky (this machine, default) or dask (a dask.distributed cluster)")
    add("--scheduler-address", metavar="tcp://HOST:PORT", help="dask scheduler (default: start a local cluster)")
    add("--cluster", metavar="slurm|pbs|lsf", help="with --backend dask: run the jobs as SLURM, PBS or LSF jobs "
        "through dask-jobqueue, one GPU worker per job (docs/clusters.md)")
    add("--cluster-option", action="append", default=[], metavar="KEY=VALUE", help="a keyword argument of "
        "dask-jobqueue's cluster class (queue, account, walltime, cores, memory, job_script_prologue, ...), or "
        "gpus=1 or max_jobs=N; a list: repeat the key (repeatable)")
    add("--track", default="none", metavar="none|mlflow", help="mirror each job's params and per-cycle metrics "
        "into MLflow (pip install -e '.[mlflow]'); the results folder stays the source of truth (docs/tracking.md)")
    add("--tracking-uri", metavar="URI", help="with --track mlflow: the store, a folder, sqlite:///PATH/mlflow.db or "
        "http://HOST:PORT (default: MLflow's own, MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    add("--force", action="store_true", help="the folder holds another configuration: move its results into "
        "previous-<time>/ inside it and start afresh")
    add("--fresh", action="store_true", help="discard the folder's results (asks on a terminal)")
    add("--name", help="run name: its folder under results/ (default: PRESET-DATASET)")
    add("--out", type=_folder, help="results folder (default results/NAME)")
    add("--baseline", default="random", help="strategy the report compares against (default random)")
    add("--target-accuracy", type=_percent, metavar="PERCENT", help=TARGET_HELP)
    add("--list-strategies", action="store_true", help="list the registered strategies and exit")
    add("--list-datasets", action="store_true", help="list every dataset, one line each, and exit")
    add("--dry-run", action="store_true", help="print the resolved protocol and the jobs; run nothing")
    add("--imbalance", type=_ratio, metavar="R", help="class imbalance of the pool: largest over smallest class "
        "count, an exponential profile drawn per seed (default 1: the pool as it is)")
    add("--vary", nargs="+", metavar="FIELD=A,B", help="run the comparison in every setting of a grid, e.g. --vary "
        "initial=30,100 budget=10,30 start=warm,cold (a field by its flag's name), each setting a folder under "
        "results/NAME; the report says whether each verdict holds across the grid")
    for action in parser._actions:  # a protocol option not given stays absent from args: the preset's value holds
        if action.dest in Protocol.__dataclass_fields__:
            action.default = argparse.SUPPRESS
    return parser


# ---------------------------------------------------------------------------------------------- commands


def confirm_fresh(folder: Path) -> None:
    """--fresh deletes results: only after a yes on a terminal."""
    from bench.results.store import RunStore
    present = RunStore.results_present(folder)
    if not present:
        return
    if not sys.stdin.isatty():
        raise UserError(f"--fresh asks before deleting the results in {folder}, and this is not a terminal: "
                        "delete them yourself, or use --force to move them aside.")
    answer = input(f"Delete the results in {folder} ({', '.join(present)})? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError("Nothing deleted: run without --fresh to resume, or with --name to write elsewhere.")


def benchmark_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    grid = parse_vary(args.vary, vary_fields(parser), given=vars(args)) if args.vary else None
    from bench.data.datasets import describe_datasets  # the harness, now that there is a run to make
    from bench.runner.benchmark import dry_run, run_benchmark
    from bench.runner.resolve import RunOptions, build_config, load_strategy_files, resolve_baseline
    from strategies import list_strategies

    load_strategy_files(args.strategy_file)
    if args.list_strategies:
        print("\n".join(list_strategies()))
        return 0
    if args.list_datasets:
        print(describe_datasets())
        return 0
    given = {name: getattr(args, name) for name in Protocol.__dataclass_fields__ if hasattr(args, name)}
    protocol = {name: tuple(v) if isinstance(v, list) else v for name, v in given.items()}
    if args.model_param:
        protocol["model_params"] = parse_model_params(args.model_param)
    auto = args.seeds == "auto"
    if args.max_seeds is not None and not auto:  # it would change nothing: said, not ignored
        raise UserError(f"--max-seeds {args.max_seeds} is for --seeds auto (seeds in rounds, at most N): add "
                        f"--seeds auto, or drop --max-seeds to run --seeds {args.seeds}.")
    if args.max_seeds is None:
        args.max_seeds = MAX_SEEDS_AUTO
    if auto and args.max_seeds < 3:
        raise UserError(f"--max-seeds must be at least 3 for --seeds auto (a paired interval needs 3 seeds to "
                        f"decide anything). Got {args.max_seeds} instead.")
    config = build_config(args.preset, args.strategies, min(FIRST_LOOK, args.max_seeds) if auto else args.seeds,
                          protocol,
                          parse_strategy_params(args.strategy_param), args.name, args.out, args.devices,
                          args.data_root, not args.no_download, args.weights, args.model_file)
    options = RunOptions(backend=args.backend, jobs=args.jobs, jobs_per_device=args.jobs_per_device,
                         compile=args.compile, scheduler_address=args.scheduler_address,
                         cluster=args.cluster, cluster_options=tuple(args.cluster_option),
                         strategy_files=tuple(args.strategy_file), baseline=resolve_baseline(args.baseline),
                         on_existing="force" if args.force else "fresh" if args.fresh else "resume",
                         command=tuple(argv), margin=args.margin / 100, max_seeds=args.max_seeds if auto else None,
                         target_accuracy=args.target_accuracy,
                         track=args.track, tracking_uri=args.tracking_uri)
    options.validate()
    if auto:
        from bench.runner import seeds_auto  # --seeds auto's design (scipy): only a run that asks for it loads it

        seeds_auto.check_rounds(config)
    if grid is not None:
        return grid_command(grid, args, protocol, options, auto)
    if args.dry_run:
        print(dry_run(config, options))
        return 0
    if args.fresh and not args.force:
        confirm_fresh(config.out)
    result = seeds_auto.benchmark_in_rounds(config, options) if auto else run_benchmark(config, options)
    return 1 if result.failed else 0


GRID_TARGET = ("--target-accuracy is for a run folder's report (labels saved to reach it); a --vary grid's report "
               "compares verdicts across settings and has no such table: drop it here; `run_bench.py report "
               "SETTING_FOLDER --out DIR --target-accuracy P` reports one setting alone (its verdicts corrected over "
               "that setting, not the grid).")


def grid_command(grid, args: argparse.Namespace, protocol: dict, options, auto: bool) -> int:
    """--vary: every setting of the grid as its own run under one parent (bench.runner.grid)."""
    from bench.runner.grid import grid_dry_run, resolve_grid, run_grid

    if options.target_accuracy is not None:  # said, not ignored
        raise UserError(GRID_TARGET)
    run = resolve_grid(grid, args.preset, args.strategies, min(FIRST_LOOK, args.max_seeds) if auto else args.seeds,
                       protocol, args.name, args.out, strategy_params=parse_strategy_params(args.strategy_param),
                       devices=args.devices, data_root=args.data_root, download=not args.no_download,
                       weights=args.weights, model_files=args.model_file)
    if args.dry_run:
        print(grid_dry_run(run, options))
        return 0
    if args.fresh and not args.force:
        for _, config in run.settings:
            confirm_fresh(config.out)
    report, failures = run_grid(run, options)
    return 1 if failures or report is None else 0


def report_command(argv: list[str]) -> int:
    parser = _Parser(prog="run_bench.py report", description="Re-write DIR/report/ from DIR/cycles.parquet, or "
                     "with several folders and --out, a suite report comparing the strategies across them.")
    parser.add_argument("folders", type=Path, nargs="+", metavar="DIR", help="results folders (with cycles.parquet)")
    parser.add_argument("--out", type=_folder, help="the suite report's folder (needed with several DIRs)")
    parser.add_argument("--baseline", help="strategy to compare against (default: the run's, else random)")
    parser.add_argument("--margin", type=_points, metavar="POINTS", help="equivalence margin in AULC points "
                        "(default: the run's, else 1)")
    parser.add_argument("--target-accuracy", type=_percent, metavar="PERCENT", help=TARGET_HELP)
    args = parser.parse_args(argv)
    from bench.report.layout import report_folder  # the report's stack, not the harness's (no torch)
    from bench.results.lock import FolderLock
    if len(args.folders) == 1 and (args.folders[0] / "grid.json").is_file():  # a --vary grid's parent
        return grid_report_command(args)
    if len(args.folders) == 1 and (args.folders[0].parent / "grid.json").is_file() and args.out is None:
        raise UserError(f"{args.folders[0]} is a setting of the --vary grid {args.folders[0].parent}, whose verdicts "
                        f"are corrected over the whole grid: run `run_bench.py report {args.folders[0].parent}`.")
    recorded = recorded_analysis(args.folders[0])
    baseline = report_baseline(args.folders[0], args.baseline or recorded.get("baseline") or "random")
    if args.out is None and len(args.folders) > 1:
        raise UserError("A report of several folders is a suite: give --out DIR for it (a new or empty folder).")
    if args.out is None:
        if recorded.get("baseline") and baseline != recorded["baseline"]:
            print(f"note      report/ is rewritten against {baseline}; the run's report compared against "
                  f"{recorded['baseline']} (run `report` without --baseline to restore it)")
        margin = args.margin / 100 if args.margin else None
        # a running run writes its own report when it ends: never beside it (and `report` has no --name to offer)
        lock = FolderLock(args.folders[0], advice="wait for it to finish (a run writes its own report as it ends), "
                          "then run report again")
        lock.acquire()
        try:
            path, lines = report_folder(args.folders[0], baseline, margin, args.target_accuracy)
            print("\n".join([*lines, f"report    {path}"]))
        finally:
            lock.release()
    else:
        from bench.report.suite import write_suite  # the report stack only when a report is written

        path, lines = write_suite(args.folders, baseline, args.out, args.margin / 100 if args.margin else None,
                                  args.target_accuracy)
        print("\n".join([*lines, f"report    {path}"]))
    return 0


def grid_report_command(args: argparse.Namespace) -> int:
    """`report PARENT` of a --vary grid: its report.md again, from its settings' folders."""
    from bench.report.grid_report import write_grid_report
    from bench.results.lock import FolderLock

    if args.baseline or args.margin or args.out:
        raise UserError(f"{args.folders[0]} is a --vary grid, reported with its own baseline and margin into its "
                        "folder: drop --baseline, --margin and --out.")
    if args.target_accuracy is not None:
        raise UserError(GRID_TARGET)
    with FolderLock(args.folders[0], advice="a --vary run is writing this grid; wait for it to finish").holding():
        written = write_grid_report(args.folders[0])
    if written is None:
        raise UserError(f"No setting of the grid {args.folders[0]} has a finished cycle yet: run its command first.")
    print("\n".join([*written[1], f"report    {written[0]}"]))
    return 0


def recorded_analysis(folder: Path) -> dict:
    """The analysis section of FOLDER/config.json ({} when there is none)."""
    from bench.results.store import RunStore
    stored = RunStore(folder).read_config() if (folder / "config.json").is_file() else None
    analysis = stored.get("analysis") if isinstance(stored, dict) else None
    return analysis if isinstance(analysis, dict) else {}


def report_baseline(folder: Path, name: str) -> str:
    """The baseline of `report`: a strategy of the folder's results (a user's own too, whose file this command
    does not load) or a registered name or alias. A typo is one line, before anything is written."""
    from bench.results.store import read_cycles
    if name in set(read_cycles(folder)["strategy"]):
        return name
    from bench.runner.resolve import resolve_baseline  # the strategies' registry (torch) only for a name not held

    return resolve_baseline(name)


def entry() -> None:
    """The command line (run_bench.py, the al-bench script): main's status as the exit status."""
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with stop_on_signals():
            return report_command(argv[1:]) if argv[:1] == ["report"] else benchmark_command(argv)
    except UserError as err:
        print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)  # one line, whatever a file held
        return 2
    except KeyboardInterrupt as stop:
        return explain_interruption(stop)


def parse_model_params(items: list[str]) -> tuple[tuple[str, str], ...]:
    """['hidden=256,256'] -> (('hidden', '256,256'),), sorted by key (values parsed by the model's factory)."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.strip().isidentifier():
            raise UserError(f"--model-param {item!r} must read KEY=VALUE, e.g. hidden=256,256.")
        if key.strip() in params:
            raise UserError(f"--model-param gives {key.strip()!r} twice: give each parameter once.")
        params[key.strip()] = value.strip()
    return tuple(sorted(params.items()))


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
