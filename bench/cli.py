"""Command line: `run_bench.py [options]` runs a benchmark; `run_bench.py report DIR` re-writes its report."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import torch

from bench import provenance
from bench.config import PRECISIONS, PRESETS, Protocol, RunConfig, preset_protocol
from bench.data import ImageData, list_datasets, load_dataset
from bench.errors import UserError
from bench.loop import CycleResult, JobSpec
from bench.models import check_model
from bench.report import write_report
from bench.scheduler import run_sequential
from bench.store import CYCLES, RunStore
from bench.trainer import resolve_precision

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    add("--milestones", type=int, nargs="*", help="epochs after which the learning rate is multiplied by 0.1")
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
            close = difflib.get_close_matches(d, ["cpu", "cuda:0", "auto"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"Unknown device {d!r}{hint}: use auto, cpu or cuda:N[,cuda:M...].")
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
    names = [strategies.canonical_name(n) for n in args.strategies] if args.strategies else \
        sorted(strategies.base.registered())
    names = list(dict.fromkeys(names))  # keep order, drop repeats (an alias and its name)
    params = {k: dict(v) for k, v in PRESETS[args.preset]["strategy_params"].items() if k in names}
    for name, given in parse_strategy_params(args.strategy_param, names).items():
        params.setdefault(name, {}).update(given)
    for name in names:
        strategies.create_strategy(name, **params.get(name, {}))  # unknown or ill-typed parameters fail here
    dataset_tag = protocol.dataset.split(":", 1)[-1].replace("/", "_").removesuffix(".npz")
    name = args.name or f"{args.preset}-{Path(dataset_tag).name}"
    return RunConfig(protocol=protocol, strategies=tuple(names), seeds=tuple(range(args.seeds)), name=name,
                     out=args.out or Path("results") / name, preset=args.preset, devices=args.devices,
                     data_root=args.data_root, download=not args.no_download, strategy_params=params)


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
        f"{'warm' if p.warm_start else 'cold'} start, precision {p.precision} -> "
        f"{str(resolve_precision(p.precision, torch.device(devices[0]))).removeprefix('torch.')}",
    ]
    for name, params in sorted(config.strategy_params.items()):
        lines.append(f"params    {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    lines += [
        f"jobs      {len(config.strategies)} strategies x {len(config.seeds)} seeds = "
        f"{len(config.strategies) * len(config.seeds)}: {', '.join(config.strategies)}; seeds "
        f"{', '.join(map(str, config.seeds))}",
        f"devices   {', '.join(devices)}",
        f"output    {config.out}",
    ]
    return "\n".join(lines)


def config_payload(config: RunConfig, data: ImageData, devices: list[str], argv: list[str]) -> dict[str, Any]:
    return {
        "name": config.name, "preset": config.preset, "config_hash": config.config_hash(),
        **config.result_defining(),
        "strategies": list(config.strategies), "seeds": list(config.seeds),
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


def progress_line(spec: JobSpec, result: CycleResult) -> None:
    r = result.record
    print(f"[{spec.key}] cycle {r['cycle'] + 1}/{spec.protocol.cycles}  labels {r['n_labeled']:>6}  "
          f"acc {100 * r['test_acc']:5.1f}%  train {r['train_seconds']:.1f}s  select {r['select_seconds']:.2f}s",
          flush=True)


# ---------------------------------------------------------------------------------------------- commands


def prepare_output(folder: Path) -> None:
    """Refuse to write into a folder that already holds results; create it when it can be written."""
    if (folder / CYCLES).exists():
        raise UserError(f"{folder} already holds results: choose another --name or --out.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"Cannot write to the output folder {folder} ({err.strerror}): choose another --out.") from None


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_strategies:
        for path in args.strategy_file:
            _strategies_module().load_strategy_file(path)
        print("\n".join(_strategies_module().list_strategies()))
        return 0
    config = resolve_config(args)
    devices = resolve_devices(config.devices)
    if args.dry_run:
        print(describe(config, None, devices))
        for spec in job_specs(config):
            print(f"job       {spec.key}")
        return 0
    data = load_dataset(config.protocol.dataset, config.data_root, config.download)
    config.protocol.validate_pool(int(data.x_train.shape[0]))
    print(describe(config, data, devices), flush=True)
    prepare_output(config.out)
    store = RunStore(config.out)
    store.write_config(config_payload(config, data, devices, argv))

    def on_cycle(spec: JobSpec, result: CycleResult) -> None:
        store.add_cycle(result.record, result.added)
        progress_line(spec, result)

    run_sequential(job_specs(config), data, torch.device(devices[0]), on_cycle)
    accuracy_table(store)
    print(f"results   {config.out / CYCLES}")
    print(f"report    {write_report(config.out, args.baseline)}")
    return 0


def report(argv: list[str]) -> int:
    parser = _Parser(prog="run_bench.py report", description="Re-write DIR/report/ from DIR/cycles.parquet.")
    parser.add_argument("folder", type=Path, help="a results folder (holding cycles.parquet)")
    parser.add_argument("--baseline", default="random", help="strategy to compare against (default random)")
    args = parser.parse_args(argv)
    print(f"report    {write_report(args.folder, args.baseline)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return report(argv[1:]) if argv[:1] == ["report"] else run(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cycles are kept in the results folder", file=sys.stderr)
        return 130
