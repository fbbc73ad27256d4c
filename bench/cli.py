"""Command line: `run_bench.py [options]` runs a benchmark; `run_bench.py report DIR` re-writes its report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import torch

from bench import provenance
from bench.config import (
    CONVENTIONS,
    PRECISIONS,
    PRESETS,
    EpochPoint,
    Protocol,
    RunConfig,
    parse_epoch_point,
    preset_protocol,
    proportions,
    resolve_epoch,
)
from bench.data import ImageData, check_dataset, list_datasets, load_dataset
from bench.errors import UserError
from bench.loop import JobSpec, JobState, start_state
from bench.models import check_model
from bench.progress import Progress
from bench.registry import unknown_name
from bench.scheduler import DataSource, Driver, Outcome, make_pool
from bench.store import CHECKPOINTS, CONFIG, CYCLES, FAILURES, SELECTIONS, FolderLock, RunStore
from bench.trainer import resolve_precision

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("loky", "dask")  # this machine's processes; a dask.distributed cluster


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
    add("--model", help="model name (resnet18, cnn)")
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


# ---------------------------------------------------------------------------------------------- resolution


def _strategies_module():
    import strategies

    return strategies


def parse_strategy_params(items: list[str], known: list[str]) -> dict[str, dict[str, str]]:
    strategies = _strategies_module()
    params: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        name, dot, key = head.rpartition(".")
        if not sep or not dot or not name or not key:
            raise UserError(f"--strategy-param {item!r} must read STRATEGY.KEY=VALUE, e.g. learning-loss.margin=0.5.")
        params.setdefault(strategies.canonical_name(name), {})[key] = value
    return params


def resolve_devices(text: str) -> list[str]:
    if text == "auto":
        return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        if d == "cpu":
            continue
        if d == "cuda":
            d = "cuda:0"
        if not d.startswith("cuda:") or not d[5:].isdigit():
            raise unknown_name("device", d, ["auto", "cpu", "cuda:N[,cuda:M...]"])
        if not torch.cuda.is_available() or int(d[5:]) >= torch.cuda.device_count():
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise UserError(f"Device {d} is not available ({have} CUDA devices here): use --devices cpu or auto.")
    return [("cuda:0" if d == "cuda" else d) for d in devices]


def resolve_config(args: argparse.Namespace) -> RunConfig:
    strategies = _strategies_module()
    for path in args.strategy_file:
        strategies.load_strategy_file(path)
    fields = {f.name for f in dataclasses.fields(Protocol)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and k != "milestones"}
    if args.milestones is not None:
        overrides["milestones"] = tuple(args.milestones)
    protocol = preset_protocol(args.preset, **overrides)
    if args.subset == 0:
        protocol = dataclasses.replace(protocol, subset=None)
    protocol.validate()
    check_model(protocol.model)
    check_dataset(protocol.dataset)
    names = [strategies.canonical_name(n) for n in args.strategies] if args.strategies else \
        sorted(strategies.base.registered())
    names = list(dict.fromkeys(names))  # keep order, drop repeats (an alias and its name)
    params = {k: dict(v) for k, v in PRESETS[args.preset]["strategy_params"].items() if k in names}
    for name, given in parse_strategy_params(args.strategy_param, names).items():
        params.setdefault(name, {}).update(given)
    for name in names:
        strategy = strategies.create_strategy(name, **params.get(name, {}))  # unknown or ill-typed parameters fail
        if protocol.batch_size < strategy.min_batch_size:
            raise UserError(f"Strategy {name!r} needs a batch size of at least {strategy.min_batch_size}. Got "
                            f"--batch-size {protocol.batch_size} instead: raise --batch-size.")
        if strategy.params:  # record every parameter, defaults too: a changed default changes the config
            params[name] = {key: getattr(strategy, key) for key in strategy.params}
            for key in strategy.epoch_params:  # fractions of the epochs, resolved: the config holds epochs
                params[name][key] = resolve_epoch(params[name][key], protocol.epochs, f"{name}.{key}")
    dataset_tag = protocol.dataset.split(":", 1)[-1].replace("/", "_").removesuffix(".npz")
    name = args.name or f"{args.preset}-{Path(dataset_tag).name}"
    return RunConfig(protocol=protocol, strategies=tuple(names), seeds=tuple(range(args.seeds)), name=name,
                     out=args.out or Path("results") / name, preset=args.preset, devices=args.devices,
                     data_root=args.data_root, download=not args.no_download, strategy_params=params)


def resolve_baseline(name: str) -> str:
    """The report's baseline as a registered strategy name (a typo would otherwise surface after the run)."""
    try:
        return _strategies_module().canonical_name(name)
    except UserError as err:
        raise UserError(f"--baseline: {err}") from None


def job_specs(config: RunConfig) -> list[JobSpec]:
    return [JobSpec(run=config.name, dataset=config.protocol.dataset, strategy=s, seed=seed,
                    protocol=config.protocol, params=config.strategy_params.get(s, {}),
                    config_hash=config.config_hash())
            for seed in config.seeds for s in config.strategies]


# ---------------------------------------------------------------------------------------------- output


def describe(config: RunConfig, data: ImageData | None, devices: list[str]) -> str:
    """The resolved run in words (data=None: the dataset is not loaded, as in a dry run)."""
    p = config.protocol
    if data is None:
        dataset = f"dataset   {p.dataset} (not loaded in a dry run)"
    else:
        shape = "x".join(map(str, data.x_train.shape[1:]))
        dataset = (f"dataset   {p.dataset}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images, "
                   f"{shape}, {data.n_classes} classes (augmentation: crop pad {data.pad if p.augment else 0}, "
                   f"flip {data.flip and p.augment})")
    lines = [
        dataset,
        f"model     {p.model}",
        f"protocol  preset {config.preset}: initial {p.initial}, budget {p.budget}, cycles {p.cycles} "
        f"(labels {p.initial}..{p.labels_needed()}), subset {p.subset or 'whole pool'}",
        f"training  {p.epochs} epochs, batch {p.batch_size}, SGD lr {p.lr} momentum {p.momentum} "
        f"weight decay {p.weight_decay}, milestones {list(p.milestones) or 'none'} (x{p.gamma}), "
        f"{'warm' if p.warm_start else 'cold'} start, {p.convention} convention, precision {p.precision} -> "
        f"{str(resolve_precision(p.precision, torch.device(devices[0]))).removeprefix('torch.')}",
    ]
    for name, params in sorted(config.strategy_params.items()):
        lines.append(f"params    {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    lines.append("schedule  " + ", ".join(f"{k} at {_as_fraction(v)} of {p.epochs} epochs"
                                          for k, v in epoch_proportions(config).items()))
    lines += [
        f"jobs      {len(config.strategies)} strategies x {len(config.seeds)} seeds = "
        f"{len(config.strategies) * len(config.seeds)}: {', '.join(config.strategies)}; seeds "
        f"{', '.join(map(str, config.seeds))}",
        f"devices   {', '.join(devices)}",
        f"output    {config.out}",
    ]
    return "\n".join(lines)


def epoch_proportions(config: RunConfig) -> dict[str, Any]:
    """The protocol's epoch settings (milestones, strategies' epoch parameters) as fractions of the epochs."""
    p = config.protocol
    points: dict[str, Any] = {"milestones": list(p.milestones)}
    for name in config.strategies:
        cls = _strategies_module().base.registered()[name]
        points.update({f"{name}.{key}": config.strategy_params[name][key] for key in sorted(cls.epoch_params)})
    return proportions(p.epochs, points)


def _as_fraction(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def config_payload(config: RunConfig, data: ImageData, devices: list[str], argv: list[str]) -> dict[str, Any]:
    return {
        "name": config.name, "preset": config.preset, "config_hash": config.config_hash(),
        **config.result_defining(),
        "strategies": list(config.strategies), "seeds": list(config.seeds),
        "epoch_proportions": epoch_proportions(config),
        "dataset": {"spec": config.protocol.dataset, "n_train": int(data.x_train.shape[0]),
                    "n_test": int(data.x_test.shape[0]), "shape": list(data.x_train.shape[1:]),
                    "classes": data.classes, "mean": data.mean, "std": data.std},
        "devices": {d: provenance.device_name(d) for d in devices},
        "precision": str(resolve_precision(config.protocol.precision, torch.device(devices[0]))),
        "versions": provenance.versions(), "git_commit": provenance.git_commit(PROJECT_ROOT),
        "command": argv, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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


# ---------------------------------------------------------------------------------------------- commands


def check_writable(folder: Path) -> None:
    """Create the folder if needed and prove it can be written, or say how to fix it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"Cannot write to the output folder {folder} ({err.strerror}): choose another --out.") from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def config_differences(stored: dict[str, Any], config: RunConfig) -> list[str]:
    """Fields that decide the numbers and differ between a folder's config.json and this run."""
    now = json.loads(json.dumps(config.result_defining(), default=str))
    common = set(stored.get("strategy_params", {})) & set(now["strategy_params"])
    old = _flatten({"protocol": stored.get("protocol", {}),
                    "strategy_params": {k: v for k, v in stored.get("strategy_params", {}).items() if k in common}})
    new = _flatten({"protocol": now["protocol"],
                    "strategy_params": {k: v for k, v in now["strategy_params"].items() if k in common}})
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


RESULT_FILES = (CYCLES, SELECTIONS, CONFIG, FAILURES, CHECKPOINTS, "report")


def clear_folder(folder: Path, args: argparse.Namespace) -> None:
    """--force moves the old results aside; --fresh deletes them after asking on a terminal."""
    present = [folder / name for name in RESULT_FILES if (folder / name).exists()]
    if not present:
        return
    if args.force:
        aside = folder / f"previous-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
        print(f"moved     the previous results to {aside}")
        return
    if not sys.stdin.isatty():
        raise UserError(f"--fresh asks before deleting the results in {folder}, and this is not a terminal: "
                        "delete them yourself, or use --force to move them aside.")
    answer = input(f"Delete the results in {folder} ({', '.join(p.name for p in present)})? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError("Nothing deleted: run without --fresh to resume, or with --name to write elsewhere.")
    for path in present:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def pending_work(specs: list[JobSpec], store: RunStore, n_pool: int) -> tuple[list[tuple[JobSpec, JobState]], dict]:
    """What is left to run: each unfinished job from its checkpoint (or its start), finished jobs skipped."""
    ready, done = [], {}
    for spec in specs:
        cycles = store.done_cycles(spec.strategy, spec.seed)
        if cycles >= set(range(spec.protocol.cycles)):
            store.remove_checkpoint(spec.strategy, spec.seed)
            done[spec.key] = spec.protocol.cycles
            continue
        state = store.load_checkpoint(spec.strategy, spec.seed)
        if state is None or not cycles >= set(range(state.cycle)) or state.cycle >= spec.protocol.cycles:
            state = start_state(spec, n_pool)
        store.drop_from(spec.strategy, spec.seed, state.cycle)  # rows written after the checkpoint are redone
        done[spec.key] = state.cycle
        ready.append((spec, state))
    return ready, done


def open_store(config: RunConfig, args: argparse.Namespace) -> tuple[RunStore, RunConfig, bool]:
    """The folder's store (resuming what it holds) and the run's config widened to the stored jobs."""
    if args.force or args.fresh:
        clear_folder(config.out, args)
    store = RunStore(config.out)
    stored = store.read_config()
    if stored is None:
        return store, config, False
    differences = config_differences(stored, config)
    if differences:
        raise UserError(f"{config.out} holds results of another configuration ({'; '.join(differences)}): "
                        "use --name for a new folder, or --force to move the old results aside.")
    widened = dataclasses.replace(
        config, strategies=tuple(dict.fromkeys([*stored.get("strategies", []), *config.strategies])),
        seeds=tuple(sorted(set(stored.get("seeds", [])) | set(config.seeds))))
    unknown = [s for s in widened.strategies if s not in _strategies_module().base.registered()]
    if unknown:
        raise UserError(f"{config.out} holds results of strategy {unknown[0]!r}, which is not registered: pass the "
                        "--strategy-file that defines it again, or use --name for a new folder.")
    return store, widened, True


def execute_run(config: RunConfig, args: argparse.Namespace, data: ImageData, devices: list[str],
                argv: list[str]) -> int:
    folder = config.out
    check_writable(folder)
    lock = FolderLock(folder)
    lock.acquire()
    try:
        store, config, resumed = open_store(config, args)
        store.remove_stale_temp_files()
        specs = job_specs(config)
        ready, done = pending_work(specs, store, int(data.x_train.shape[0]))
        if resumed:
            print(f"resume    {len(specs) - len(ready)} of {len(specs)} jobs already finished in {folder}")
        store.write_config(config_payload(config, data, devices, argv))
        store.clear_failures()
        failures = schedule(config, args, devices, store, specs, ready, done)
    finally:
        lock.release()
    accuracy_table(store)
    print(f"results   {folder / CYCLES}")
    from bench.report import write_report  # seaborn and scipy: imported when a report is written, not before

    try:
        print(f"report    {write_report(folder, args.baseline)}")
    except OSError as err:  # a full disk: the results are complete, only the report is missing
        raise UserError(f"Cannot write the report in {folder / 'report'} ({err.strerror or err}); the results are "
                        f"complete: free disk space, then run `run_bench.py report {folder}`.") from None
    if failures:
        print(f"failed    {len(failures)} job(s): {', '.join(failures)}; details in {folder / FAILURES}",
              file=sys.stderr)
        return 1
    return 0


def schedule(config: RunConfig, args: argparse.Namespace, devices: list[str], store: RunStore,
             specs: list[JobSpec], ready: list, done: dict) -> list[str]:
    """Run what is left, writing each finished cycle at once; returns the keys of failed jobs."""
    failures: list[str] = []
    source = DataSource(config.protocol.dataset, str(config.data_root), config.download,
                        tuple(str(Path(f).resolve()) for f in args.strategy_file))
    with Progress(specs, done) as progress:
        def on_cycle(outcome: Outcome) -> None:
            spec, result = outcome.spec, outcome.result
            store.add_cycle(result.record, result.added)  # rows first: a checkpoint never runs ahead of them
            if outcome.state.cycle < spec.protocol.cycles:
                store.save_checkpoint(spec.strategy, spec.seed, outcome.state)
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
            pool, threads = make_pool(args.backend, devices, args.jobs, args.jobs_per_device, args.scheduler_address)
            try:
                Driver(pool, source, threads, on_cycle, on_failure).run(ready)
            finally:
                pool.close()
    return failures


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_strategies:
        for path in args.strategy_file:
            _strategies_module().load_strategy_file(path)
        print("\n".join(_strategies_module().list_strategies()))
        return 0
    config = resolve_config(args)
    args.baseline = resolve_baseline(args.baseline)
    devices = resolve_devices(config.devices)
    if args.backend not in BACKENDS:
        raise unknown_name("backend", args.backend, BACKENDS)
    if args.dry_run:
        print(describe(config, None, devices))
        for spec in job_specs(config):
            print(f"job       {spec.key}")
        return 0
    data = load_dataset(config.protocol.dataset, config.data_root, config.download)
    config.protocol.validate_pool(int(data.x_train.shape[0]))
    print(describe(config, data, devices), flush=True)
    return execute_run(config, args, data, devices, argv)


def report(argv: list[str]) -> int:
    parser = _Parser(prog="run_bench.py report", description="Re-write DIR/report/ from DIR/cycles.parquet.")
    parser.add_argument("folder", type=Path, help="a results folder (holding cycles.parquet)")
    parser.add_argument("--baseline", default="random", help="strategy to compare against (default random)")
    args = parser.parse_args(argv)
    from bench.report import write_report

    print(f"report    {write_report(args.folder, args.baseline)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C / SIGINT stops cleanly even when the shell started us with SIGINT ignored (a background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return report(argv[1:]) if argv[:1] == ["report"] else run(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cycles are kept in the results folder; run the same command again to resume",
              file=sys.stderr)
        return 130
