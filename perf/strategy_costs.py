"""Every strategy's selection at pool scale: seconds and peak memory, beside its reference implementation.

    python -m perf.strategy_costs                                   # every strategy at 10k and 50k candidates
    python -m perf.strategy_costs --sizes 10000 --strategies kmeans typiclust
    python -m perf.strategy_costs --reference-dir DIR --reference-python /path/to/python   # with the references

The pool (perf/strategy_refs.py): N candidates and a labeled set of 1000 with 512-d embeddings in 10 classes x 100
sub-clusters, logits from a fixed linear head, budget k = 1000. Each strategy gets the PoolInputs fields it declares
in `needs`, built by hand (an MC-dropout strategy gets its dropout head with the pool head's weights and samples
it inside select(); learning loss gets random module outputs; VAAL gets images of --vaal-image), and runs `select`
once in a fresh process per (strategy, N): its peak memory is VmHWM after the selection minus VmHWM once its inputs
exist, so that no other row's peak and none of the inputs are counted. A run past --timeout is stopped and its row
says so. With --reference-dir, the strategies that have a reference runnable on plain arrays (strategy_refs.
REFERENCES) run it next, in a fresh process of --reference-python, on the same arrays: the row's ratio is our
seconds over theirs (aim: at most 1x). Strategies run one at a time; the load average (/proc/loadavg) is recorded
beside every row, since the figures are comparable only under similar load.

Afterwards, growth from the smallest to the largest N: a strategy whose peak memory grows with N^2 (25x from 10k to
50k) builds an N x N matrix somewhere. Writes --out (JSON: the machine, the command, every row) and prints tables.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.models.backbones import create_model
from perf.perf import ROOT, machine
from perf.strategy_refs import REFERENCE_LIMITS, REFERENCES, pool
from perf.timing import load_average, vm_hwm_mib
from strategies import STRATEGIES, PoolInputs, create_strategy

# Parameters that differ from a strategy's defaults here, and why. ProbCover's delta: its default (0.75) on this
# pool's normalised features joins most of the pool in one ball, an edge count near N^2 (a setting nobody runs);
# 0.4 is what earlier rows of docs/strategies.md measured. Overridden by --param.
BENCH_PARAMS: dict[str, dict[str, str]] = {"probcover": {"delta": "0.4"}}
# Budgets other than --k: BatchBALD's cost grows with every pick (a pick scores every candidate's joint with the
# batch so far), about 100x from k = 10 to k = 1000. Overridden by --k-for.
BENCH_K: dict[str, int] = {"batchbald": 10}


@dataclass
class Side:
    """One implementation's run on one pool."""

    status: str  # ok, timeout, failed, not run
    seconds: float | None = None
    peak_mib: float | None = None  # VmHWM above the inputs'
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CostRow:
    strategy: str
    n: int  # candidates
    k: int  # budget
    params: dict[str, str]
    ours: Side
    reference_name: str  # "" where the strategy has no reference adapter
    reference: Side
    load_before: list[float]
    load_after: list[float]

    @property
    def ratio(self) -> float | None:
        """Our seconds over the reference's (aim: at most 1)."""
        if self.ours.status == "ok" and self.reference.status == "ok" and self.reference.seconds:
            return self.ours.seconds / self.reference.seconds
        return None


# ---------------------------------------------------------------------------------------------- our side


def strategy_inputs(name: str, n: int, labeled: int, dim: int, classes: int, image: tuple[int, int, int],
                    strategy: Any) -> PoolInputs:
    """PoolInputs with exactly the fields the strategy needs, on the pool both sides share. The model is a stand-in
    whose classifier is the pool's linear head on `dim`-d embeddings (what ALFA-Mix mixes through, and what an
    MC-dropout head is shaped on)."""
    a = pool(n, labeled, dim, classes, seed=0)
    model = create_model("resnet18", 3, classes, generator_seed=0).eval()
    model.embedding_dim, model.classifier = dim, nn.Linear(dim, classes)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(a["head_w"]))
        model.classifier.bias.copy_(torch.from_numpy(a["head_b"]))
    g = torch.Generator().manual_seed(1)
    fields: dict[str, Any] = {
        "probs": lambda: torch.from_numpy(a["probs"]),
        "logits": lambda: torch.from_numpy(a["logits"]),
        "embeddings": lambda: torch.from_numpy(a["embeddings"]),
        "labeled_embeddings": lambda: torch.from_numpy(a["labeled_embeddings"]),
        "labeled_labels": lambda: torch.from_numpy(a["labeled_labels"]).long(),
        "stage_features": lambda: [torch.rand(n, c, generator=g) for c in model.stage_channels],
        "aux_output": lambda: torch.rand(n, generator=g),
        "images": lambda: torch.randn(n, *image, generator=g),
        "labeled_images": lambda: torch.randn(labeled, *image, generator=g),
    }
    inputs = PoolInputs(n=n, rng=np.random.default_rng(0), model=model, device=torch.device("cpu"),
                        **{key: fields[key]() for key in strategy.needs})
    head = strategy.aux_head(model, Protocol())
    if head is not None:
        if hasattr(head, "classifier"):  # an MC-dropout head: the pool's head, as if trained to it
            head.classifier.load_state_dict(model.classifier.state_dict())
        inputs.aux_head = head.eval()
    return inputs


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """The child: one strategy's select() on the pool, its seconds and peak memory above the inputs'."""
    image = parse_image(args.vaal_image)
    # A warm-up on a small pool first: whatever a strategy imports or compiles on its first call (scikit-learn,
    # scipy.stats) is then neither in its seconds nor in its peak, as the references' imports are not in theirs.
    warm = create_strategy(args.child, **json.loads(args.params))
    if "images" in warm.needs:
        warm.check_images(*image)
    warm.select(strategy_inputs(args.child, min(args.n, 200), min(args.labeled, 50), args.dim, args.classes, image,
                                warm), min(args.k, 20))
    strategy = create_strategy(args.child, **json.loads(args.params))
    inputs = strategy_inputs(args.child, args.n, args.labeled, args.dim, args.classes, image, strategy)
    before = vm_hwm_mib()
    start = time.perf_counter()
    picks = np.asarray(strategy.select(inputs, args.k))  # as the loop calls it
    out = {"seconds": time.perf_counter() - start, "peak_mib": vm_hwm_mib() - before, "picks": int(picks.size),
           "distinct": int(np.unique(picks).size), "torch_threads": torch.get_num_threads()}
    if "images" in strategy.needs:  # VAAL: its training iterations, to scale the figure to other sizes
        out["iterations"] = max(1, int((args.labeled + args.n) * strategy.vae_epochs) // strategy.batch_size)
    return out


# ---------------------------------------------------------------------------------------------- the runs


def measured(command: list[str], timeout: float) -> Side:
    """A child's JSON line, or why there is none."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Side("timeout", note=f"did not finish in {timeout:g} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Side("failed", note=last[:200], details={"stderr_tail": done.stderr[-3000:]})
    result = json.loads(lines[-1])
    return Side("ok", result.pop("seconds"), result.pop("peak_mib"), details=result)


def measure(name: str, n: int, args: argparse.Namespace) -> CostRow:
    params = {**BENCH_PARAMS.get(name, {}), **args.param.get(name, {})}
    k = args.k_for.get(name, BENCH_K.get(name, args.k))
    shape = ["--n", str(n), "--k", str(k), "--labeled", str(args.labeled), "--dim", str(args.dim),
             "--classes", str(args.classes)]
    load_before = load_average()
    ours = measured([sys.executable, "-m", "perf.strategy_costs", "--child", name, *shape, "--params",
                     json.dumps(params), "--vaal-image", args.vaal_image], args.timeout)
    ref_name, ref = REFERENCES.get(name, ("", None))[0], Side("not run")
    if not ref_name:
        ref.note = "no reference adapter"
    elif args.reference_dir is None:
        ref.note = "no --reference-dir"
    elif n > REFERENCE_LIMITS.get(name, (math.inf, ""))[0]:
        ref.note = REFERENCE_LIMITS[name][1]
    else:
        defaults = {**STRATEGIES.get(name).params, **params}
        ref = measured([args.reference_python, str(ROOT / "perf" / "strategy_refs.py"), "--dir",
                        str(args.reference_dir), "--strategy", name, *shape, "--params",
                        json.dumps(defaults, default=str)], args.reference_timeout or args.timeout)
    return CostRow(name, n, k, params, ours, ref_name, ref, load_before, load_average())


def growth(rows: list[CostRow]) -> list[dict[str, Any]]:
    """Per strategy, from its smallest to its largest measured N: the factor on seconds and on peak memory."""
    out = []
    for name in dict.fromkeys(r.strategy for r in rows):
        ok = sorted((r for r in rows if r.strategy == name and r.ours.status == "ok"), key=lambda r: r.n)
        if len(ok) < 2:
            continue
        small, large = ok[0], ok[-1]
        memory = large.ours.peak_mib / small.ours.peak_mib if small.ours.peak_mib > 1 else None
        out.append({"strategy": name, "from_n": small.n, "to_n": large.n, "n_factor": large.n / small.n,
                    "seconds_factor": large.ours.seconds / small.ours.seconds, "memory_factor": memory,
                    "peak_mib": [small.ours.peak_mib, large.ours.peak_mib],
                    # quadratic memory is (n_factor)^2; linear is n_factor: halfway between, on a log scale
                    "quadratic": memory is not None and memory > (large.n / small.n) ** 1.5})
    return out


# ---------------------------------------------------------------------------------------------- output


def figure(side: Side) -> tuple[str, str]:
    if side.status != "ok":
        return side.status, "-"
    return f"{side.seconds:.3g} s", f"{side.peak_mib:,.0f}"


def print_tables(rows: list[CostRow], grown: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("strategy", "N", "k", "ours", "MiB", "reference", "theirs", "MiB ", "ours/theirs", "load 1-min",
                   "note"):
        table.add_column(column)
    for r in rows:
        note = "; ".join(x for x in (r.ours.note, r.reference.note if r.reference_name else "") if x)
        table.add_row(r.strategy, f"{r.n:,}", str(r.k), *figure(r.ours), r.reference_name or "-",
                      *figure(r.reference), "-" if r.ratio is None else f"{r.ratio:.2f}x",
                      f"{r.load_before[0]:.1f} -> {r.load_after[0]:.1f}", note)
    console = Console(width=240)
    console.print(table)
    table = Table(title="growth from the smallest to the largest N (N^2 memory: a matrix of all pairs)",
                  title_justify="left")
    for column in ("strategy", "N", "seconds x", "peak MiB", "memory x", "quadratic"):
        table.add_column(column)
    for g in grown:
        memory = "-" if g["memory_factor"] is None else f"{g['memory_factor']:.1f}"
        table.add_row(g["strategy"], f"{g['from_n']:,} -> {g['to_n']:,}", f"{g['seconds_factor']:.1f}",
                      f"{g['peak_mib'][0]:,.0f} -> {g['peak_mib'][1]:,.0f}", memory, "YES" if g["quadratic"] else "no")
    console.print(table)


def markdown(rows: list[CostRow], grown: list[dict[str, Any]]) -> str:
    """The rows as docs/strategies.md shows them: one line per strategy, each N side by side."""
    sizes = sorted({r.n for r in rows})
    by = {(r.strategy, r.n): r for r in rows}
    cell = lambda s: s.note or s.status if s.status != "ok" else f"{s.seconds:.3g} s, {s.peak_mib:,.0f} MiB"  # noqa: E731
    head = " | ".join(f"ours at {n:,} | reference at {n:,} | ratio at {n:,}" for n in sizes)
    lines = [f"| strategy | k | {head} | memory x | load 1-min |", "| --- " * (4 + 3 * len(sizes)) + "|"]
    memory = {g["strategy"]: g for g in grown}
    for name in dict.fromkeys(r.strategy for r in rows):
        here = [by[(name, n)] for n in sizes if (name, n) in by]
        cells = []
        for n in sizes:
            r = by.get((name, n))
            cells += ["not run"] * 3 if r is None else [
                cell(r.ours), (f"{r.reference_name}: {cell(r.reference)}" if r.reference_name else "none"),
                "-" if r.ratio is None else f"{r.ratio:.2f}"]
        g = memory.get(name)
        grew = "-" if g is None or g["memory_factor"] is None else f"{g['memory_factor']:.1f}"
        load = ", ".join(f"{r.load_before[0]:.0f}" for r in here)
        lines.append(f"| `{name}` | {here[0].k} | " + " | ".join(cells) + f" | {grew} | {load} |")
    return "\n".join(lines) + "\n"


def avx512_bf16() -> int:
    """`grep -c avx512_bf16 /proc/cpuinfo`: how many logical CPUs report native bf16."""
    return sum("avx512_bf16" in line for line in Path("/proc/cpuinfo").read_text().splitlines())


# ---------------------------------------------------------------------------------------------- arguments


def parse_image(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--vaal-image must be CxHxW, e.g. 1x8x8. Got {text!r} instead.") from None
    return c, h, w


def parse_assignments(values: list[str], flag: str, typed: type) -> dict[str, Any]:
    """NAME.KEY=VALUE (--param) or NAME=VALUE (--k-for), each NAME a registered strategy."""
    out: dict[str, Any] = {}
    for item in values:
        head, eq, value = item.partition("=")
        name, _, key = head.partition(".")
        if not eq or (typed is str) != bool(key):
            form = "NAME.KEY=VALUE" if typed is str else "NAME=INTEGER"
            raise UserError(f"{flag} takes {form}. Got {item!r} instead.")
        STRATEGIES.get(name)  # an unknown name: one line with the known ones
        try:
            parsed = typed(value)
        except ValueError:
            raise UserError(f"{flag} {item!r}: {value!r} is not an integer.") from None
        if typed is str:
            out.setdefault(name, {})[key] = parsed
        else:
            out[name] = parsed
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf.strategy_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000], help="candidates N (10k, 50k)")
    parser.add_argument("--strategies", nargs="+", metavar="NAME", help="default: every registered strategy")
    parser.add_argument("--k", type=int, default=1000, help="budget (default 1000)")
    parser.add_argument("--k-for", nargs="*", default=[], metavar="NAME=K",
                        help=f"another budget for a strategy (default {BENCH_K})")
    parser.add_argument("--param", nargs="*", default=[], metavar="NAME.KEY=VALUE",
                        help=f"a strategy parameter (defaults here: {BENCH_PARAMS})")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labeled", type=int, default=1000, help="labeled set size (default 1000)")
    parser.add_argument("--vaal-image", default="1x8x8", help="VAAL's image shape CxHxW (default 1x8x8: digits)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per (strategy, N) (default 600)")
    parser.add_argument("--reference-dir", type=Path, help="the fetched reference repositories (strategy_refs.py)")
    parser.add_argument("--reference-python", default=sys.executable, help="interpreter for the references")
    parser.add_argument("--reference-timeout", type=float, help="seconds per reference run (default --timeout)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf" / "strategy_costs.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one strategy's run, in its own process
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_ours(args)))
        return 0
    try:
        args.param = parse_assignments(args.param, "--param", str)
        args.k_for = parse_assignments(args.k_for, "--k-for", int)
        names = args.strategies or STRATEGIES.names()
        for name in names:
            STRATEGIES.get(name)
        parse_image(args.vaal_image)
        if args.reference_dir is not None and not args.reference_dir.is_dir():
            raise UserError(f"--reference-dir {args.reference_dir} is not a folder.")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start, info = time.perf_counter(), {**machine(torch.device("cpu")), "avx512_bf16_cpus": avx512_bf16()}
    rows = []
    for n in args.sizes:
        for name in names:
            rows.append(measure(name, n, args))
            r = rows[-1]
            print(f"{name} N={n}: ours {figure(r.ours)[0]}, reference {figure(r.reference)[0]}, load "
                  f"{r.load_before[0]:.1f}", file=sys.stderr, flush=True)
    grown = growth(rows)
    wall = time.perf_counter() - start
    print_tables(rows, grown, f"perf.strategy_costs on {info['cpu']} ({info['cores']} cores, avx512_bf16 on "
                 f"{info['avx512_bf16_cpus']}), d = {args.dim}, C = {args.classes}, L = {args.labeled}, {wall:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": info, "command": " ".join(["python -m perf.strategy_costs", *(argv or sys.argv[1:])]),
        "sizes": args.sizes, "k": args.k, "dim": args.dim, "classes": args.classes, "labeled": args.labeled,
        "vaal_image": args.vaal_image, "timeout": args.timeout, "reference_dir": str(args.reference_dir),
        "wall_seconds": wall, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows], "growth": grown}, indent=2, default=str))
    args.out.with_suffix(".md").write_text(markdown(rows, grown))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
