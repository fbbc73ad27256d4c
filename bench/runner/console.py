"""What a run says on the console before and after its jobs: the resolved run in words, the comparisons its
report will make, and the accuracy table at its end."""

from __future__ import annotations

from typing import Any

from bench.analysis.design import margin_text
from bench.analysis.families import ALL_PAIRS, CONTEXT, PRIMARY, families
from bench.core.config import RunConfig
from bench.data.images import ImageData
from bench.data.vectors import VectorData
from bench.results.store import RunStore
from bench.runner.resolve import RunOptions, epoch_proportions
from bench.training import linear_probe, optim


def _as_fraction(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def describe_run(config: RunConfig, data: ImageData | VectorData | str, devices: list[str],
                 model_note: str = "") -> str:
    """The resolved run in words (data: the loaded dataset, or why it is not loaded; model_note: check_setup's)."""
    p = config.protocol
    if isinstance(data, str):
        dataset = f"dataset   {p.dataset}: {data}"
    elif isinstance(data, VectorData):
        dataset = (f"dataset   {p.dataset}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test vectors of "
                   f"{data.dim} features, {data.n_classes} classes (standardised by the pool's mean and std)")
    else:
        shape = "x".join(map(str, data.x_train.shape[1:]))
        dataset = (f"dataset   {p.dataset}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images, "
                   f"{shape}, {data.n_classes} classes (augmentation: crop pad {data.pad if p.augment else 0}, "
                   f"flip {data.flip and p.augment})")
    lines = [
        dataset,
        f"model     {p.model}" + "".join(f", {k}={v}" for k, v in p.model_params)
        + (f", images resized to {p.image_size}x{p.image_size}" if p.image_size else "")
        + (f": {model_note}" if model_note else ""),
        f"protocol  preset {config.preset}: initial {p.initial}, budget {p.budget}, cycles {p.cycles} "
        f"(labels {p.initial}..{p.labels_needed()}), subset {'whole pool' if p.subset is None else p.subset}"
        + (f", class imbalance {p.imbalance:g}" if p.imbalance != 1 else ""),
        f"training  {p.epochs} epochs, batch {p.batch_size}, {optim.describe(p)}, "
        f"milestones {list(p.milestones) or 'none'} (x{p.gamma}), "
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


def comparison_line(asked: tuple[str, ...] | list[str], held: tuple[str, ...] | list[str], baseline: str,
                    options: RunOptions) -> str:
    """Which comparisons the report will make, said before any work: bench.core.config.families of the strategies
    the run asks about (its question) and those the folder holds, pairs in the report's order."""
    names = list(dict.fromkeys([*asked, *held]))
    found = families(asked, names, baseline)
    pairs = found[PRIMARY]
    margin = f"±{margin_text(options.margin)}"  # the report's words for it
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
