"""Command line: `run_bench.py [options]` runs a benchmark; `run_bench.py report DIR` re-writes its report.

This module only parses arguments into bench.run's calls and maps errors to exit statuses: 0 done, 1 some
jobs failed (failures.json), 2 bad input or environment (one line, no traceback), 128 + the signal's number
when interrupted (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from bench.config import CONVENTIONS, PRECISIONS, PRESETS, EpochPoint, Protocol, parse_epoch_point
from bench.data import list_datasets
from bench.errors import UserError
from bench.models import list_models
from bench.run import (
    RunOptions,
    build_config,
    check_options,
    describe_run,
    job_specs,
    load_strategy_files,
    resolve_baseline,
    resolve_devices,
    run_benchmark,
    write_report_or_explain,
)
from bench.store import RunStore, read_cycles
from strategies import list_strategies


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


def _subset(text: str) -> int:
    return 0 if text.lower() in ("all", "none", "0") else _positive(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_bench.py", description="Compare active-learning acquisition strategies over "
                     "paired seeds: every (strategy, seed) job, per-cycle accuracies to parquet, a report.")
    add = parser.add_argument
    add("--strategies", nargs="+", metavar="NAME", help="strategy names or aliases (default: every registered one)")
    add("--seeds", type=_positive, default=3, metavar="N", help="run seeds 0..N-1 (default 3)")
    add("--preset", default="quick", help=f"protocol preset: {', '.join(PRESETS)} (default quick)")
    add("--dataset", help=f"dataset: {', '.join(list_datasets())}")
    add("--data-root", type=Path, default=Path("data"), help="folder of torchvision datasets (default ./data)")
    add("--no-download", action="store_true", help="never try to download a missing dataset")
    add("--model", help=f"model: {', '.join(list_models())}")
    add("--initial", type=int, help="labeled examples before the first cycle")
    add("--budget", type=int, help="labels acquired per cycle")
    add("--cycles", type=int, help="train + evaluate rounds (the last acquires nothing)")
    add("--subset", type=_subset, help="candidates scored per cycle ('all' for the whole pool)")
    add("--epochs", type=int, help="training epochs per cycle")
    add("--batch-size", type=int, help="training batch size")
    add("--lr", type=float, help="SGD learning rate")
    add("--momentum", type=float, help="SGD momentum")
    add("--weight-decay", type=float, help="SGD weight decay")
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
    add("--precision", choices=PRECISIONS, help="auto (bf16 where native), fp32, bf16 or fp16")
    add("--strategy-file", type=Path, action="append", default=[], metavar="PATH",
        help="a .py file defining more strategies (repeatable)")
    add("--strategy-param", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
        help="a strategy parameter, e.g. learning-loss.margin=0.5 (repeatable)")
    add("--devices", default="auto", help="auto, cpu or cuda:N[,cuda:M...] (default auto)")
    add("--jobs", type=_positive, default=1, metavar="N",
        help="CPU worker processes, the cores split between them (default 1; with --backend dask: local workers)")
    add("--jobs-per-device", type=_positive, default=1, metavar="K", help="jobs sharing each CUDA device (default 1)")
    add("--backend", default="loky", help="loky (this machine, default) or dask (a dask.distributed cluster)")
    add("--scheduler-address", metavar="tcp://HOST:PORT", help="dask scheduler (default: start a local cluster)")
    add("--force", action="store_true", help="the folder holds another configuration: move its results into "
        "previous-<time>/ inside it and start afresh")
    add("--fresh", action="store_true", help="discard the folder's results (asks on a terminal)")
    add("--name", help="run name (default: PRESET-DATASET)")
    add("--out", type=Path, help="results folder (default results/NAME)")
    add("--baseline", default="random", help="strategy the report compares against (default random)")
    add("--list-strategies", action="store_true", help="list the registered strategies and exit")
    add("--dry-run", action="store_true", help="print the resolved protocol and the jobs; run nothing")
    return parser


# ---------------------------------------------------------------------------------------------- commands


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


def confirm_fresh(folder: Path) -> None:
    """--fresh deletes results: only after a yes on a terminal."""
    present = RunStore.results_present(folder)
    if not present:
        return
    if not sys.stdin.isatty():
        raise UserError(f"--fresh asks before deleting the results in {folder}, and this is not a terminal: "
                        "delete them yourself, or use --force to move them aside.")
    answer = input(f"Delete the results in {folder} ({', '.join(present)})? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError("Nothing deleted: run without --fresh to resume, or with --name to write elsewhere.")


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    load_strategy_files(args.strategy_file)
    if args.list_strategies:
        print("\n".join(list_strategies()))
        return 0
    given = {name: getattr(args, name, None) for name in Protocol.__dataclass_fields__}  # None: not given
    protocol = {name: tuple(v) if isinstance(v, list) else v for name, v in given.items() if v is not None}
    config = build_config(args.preset, args.strategies, args.seeds, protocol,
                          parse_strategy_params(args.strategy_param), args.name, args.out, args.devices,
                          args.data_root, not args.no_download)
    options = RunOptions(backend=args.backend, jobs=args.jobs, jobs_per_device=args.jobs_per_device,
                         scheduler_address=args.scheduler_address, strategy_files=tuple(args.strategy_file),
                         baseline=resolve_baseline(args.baseline),
                         on_existing="force" if args.force else "fresh" if args.fresh else "resume",
                         command=tuple(argv))
    check_options(options)
    devices = resolve_devices(config.devices)
    if args.dry_run:
        print(describe_run(config, None, devices))
        for spec in job_specs(config):
            print(f"job       {spec.key}")
        return 0
    if args.fresh and not args.force:
        confirm_fresh(config.out)
    return 1 if run_benchmark(config, options).failed else 0


def report(argv: list[str]) -> int:
    parser = _Parser(prog="run_bench.py report", description="Re-write DIR/report/ from DIR/cycles.parquet.")
    parser.add_argument("folder", type=Path, help="a results folder (holding cycles.parquet)")
    parser.add_argument("--baseline", default="random", help="strategy to compare against (default random)")
    args = parser.parse_args(argv)
    print(f"report    {write_report_or_explain(args.folder, report_baseline(args.folder, args.baseline))}")
    return 0


def report_baseline(folder: Path, name: str) -> str:
    """The baseline of `report`: a strategy of the folder's results (a user's own too, whose file this command
    does not load) or a registered name or alias. A typo is one line, before anything is written."""
    if name in set(read_cycles(folder)["strategy"]):
        return name
    return resolve_baseline(name)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that the run stops the
    same way: the workers stopped, finished cycles kept, no half-written file, the folder unlocked."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _stop_on_signals() -> dict[int, object]:
    """Signal handlers for a run; returns the ones they replace."""
    replaced = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),  # even if started ignored
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}  # kill, a batch system's time limit
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # the terminal closed; nohup's ignore stays
        replaced[signal.SIGHUP] = signal.signal(signal.SIGHUP, _interrupt)
    return replaced


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Ctrl-C, SIGTERM and SIGHUP stop a run the same clean way (signal handlers live in the main thread only).
    replaced = _stop_on_signals() if threading.current_thread() is threading.main_thread() else {}
    try:
        return report(argv[1:]) if argv[:1] == ["report"] else run(argv)
    except UserError as err:
        print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)  # one line, whatever a file held
        return 2
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone: the status still says it
            print(f"interrupted{by}: finished cycles are kept in the results folder; run the same command again "
                  "to resume", file=sys.stderr)
        return 128 + signum
    finally:
        for signum, handler in replaced.items():  # a caller in this process (a test, a notebook) gets its own back
            if handler is not None:
                signal.signal(signum, handler)
