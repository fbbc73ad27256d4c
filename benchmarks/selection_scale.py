"""Wall time and peak memory of the diversity strategies' selection at pool scale, on this machine's CPU.

    .venv/bin/python -m benchmarks.selection_scale            # 10k and 50k pools: minutes on 2 shared cores
    .venv/bin/python benchmarks/selection_scale.py --pools 50000 --methods core-set badge --threads 1
    # the same against the last commit's code, in the same table:
    git archive HEAD | tar -x -C /tmp/head && .venv/bin/python -m benchmarks.selection_scale --source /tmp/head

Cases: core-set (k-center greedy, 10,000 labeled centres), BADGE (10 classes) and BALD (10 classes, T = 20)
on 512-d post-ReLU embeddings, picking 1,000. Every measurement runs in a fresh process, which first runs the
selection once on a tiny pool (one-off library set-up: thread pools, BLAS buffers), then builds the inputs.
`extra_mib`, the one memory figure, is VmHWM (the process's peak RSS, /proc/self/status) after the selection
minus VmHWM once the inputs exist: the selection's own peak beyond its inputs.

Each row prints the load average (/proc/loadavg) before and after it: on a CPU shared with other busy
processes the times are only comparable between rows measured under similar load. With one thread
(`--threads 1`) the times are the steadier figure there: multi-threaded element-wise kernels over 50k rows
stall on descheduled threads. Writes results/perf/selection.json (results/ is git-ignored) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DIM, CLASSES, PICKS, LABELED = 512, 10, 1000, 10_000
LIMIT_MIB = 1024


def make_inputs(method: str, n: int, n_labeled: int = LABELED, seed: int = 0):
    """The strategy's PoolInputs over n random candidates (512-d post-ReLU embeddings, 10 classes)."""
    from strategies import PoolInputs

    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, DIM, generator=g).relu_()  # [n, d]
    inputs = PoolInputs(n=n, rng=np.random.default_rng(seed), model=None, device=torch.device("cpu"),
                        embeddings=emb)
    if method == "core-set":
        inputs.labeled_embeddings = torch.randn(n_labeled, DIM, generator=g).relu_()  # [L, d]
    elif method == "badge":
        inputs.probs = torch.softmax(3.0 * torch.randn(n, CLASSES, generator=g), dim=1)  # [n, C]
    elif method == "bald":
        torch.manual_seed(seed)  # only this subprocess's global state: the head's initial weights
        head = SimpleNamespace(classifier=torch.nn.Linear(DIM, CLASSES).eval())
        inputs.model = inputs.aux_head = head  # older BALD samples the model's classifier, newer its own head
    return inputs


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def child(method: str, n: int, threads: int, source: Path | None) -> dict:
    """In a fresh process: build the inputs, select; the selection's time and peak memory beyond its inputs."""
    if source is not None:  # that checkout's strategies (and bench), ahead of this one's
        sys.path.insert(0, str(source))
    from strategies import create_strategy

    if threads > 0:
        torch.set_num_threads(threads)
    strategy = create_strategy(method)
    strategy.select(make_inputs(method, 200, n_labeled=50, seed=1), 10)  # warm-up: one-off library set-up
    inputs = make_inputs(method, n)
    input_bytes = sum(t.numel() * t.element_size() for t in (inputs.embeddings, inputs.labeled_embeddings,
                                                              inputs.probs) if t is not None)
    hwm_inputs = _status_kib("VmHWM")
    t0 = time.perf_counter()
    picks = strategy.select(inputs, PICKS)
    seconds = time.perf_counter() - t0
    return {"input_mib": input_bytes / 2**20, "seconds": seconds,
            "extra_mib": (_status_kib("VmHWM") - hwm_inputs) / 1024, "distinct_picks": int(np.unique(picks).size)}


def run_child(method: str, n: int, threads: int, source: Path | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.selection_scale", "--threads", str(threads),
           "--child", method, str(n), *(["--source", str(source)] if source else [])]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(method: str, n: int, repeat: int, threads: int, source: Path | None) -> dict:
    load_before = load_average()
    runs = [run_child(method, n, threads, source) for _ in range(repeat)]
    return {
        "method": method, "pool": n, "labeled": LABELED if method == "core-set" else 0, "dim": DIM,
        "classes": CLASSES if method != "core-set" else None, "picks": PICKS, "repeats": repeat,
        "code": str(source) if source else "working tree",  # which checkout's strategies
        "seconds": min(r["seconds"] for r in runs),  # least disturbed by other processes on the machine
        "all_seconds": [r["seconds"] for r in runs],
        "input_mib": runs[0]["input_mib"],
        "extra_mib": max(r["extra_mib"] for r in runs),
        "distinct_picks": min(r["distinct_picks"] for r in runs),
        "load_before": load_before, "load_after": load_average(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 50_000], help="candidate pool sizes")
    parser.add_argument("--methods", nargs="+", default=["core-set", "badge", "bald"])
    parser.add_argument("--repeat", type=int, default=1, help="measuring processes per case (fastest time kept)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                        help="torch threads in each process, one table block per value (0: torch's default)")
    parser.add_argument("--source", type=Path, nargs="+", default=[],
                        help="other checkouts to measure too, e.g. an unpacked `git archive HEAD`")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf" / "selection.json")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "POOL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        source = args.source[0] if args.source else None
        print(json.dumps(child(args.child[0], int(args.child[1]), args.threads[0], source)))
        return

    rows = []
    print(f"{'threads':>7} {'method':9} {'pool':>7} {'code':14} {'inputs MiB':>10} {'seconds':>8} "
          f"{'extra MiB':>9}  ok  load average before -> after")
    sources = [None, *(path.resolve() for path in args.source)]
    for threads, n, method, source in itertools.product(args.threads, args.pools, args.methods, sources):
        row = measure(method, n, args.repeat, threads, source)
        row["threads"] = threads or torch.get_num_threads()
        row["under_limit"] = row["extra_mib"] < LIMIT_MIB
        rows.append(row)
        print(f"{row['threads']:>7} {method:9} {n:>7} {(source.name if source else 'working tree'):14} "
              f"{row['input_mib']:>10.1f} {row['seconds']:>8.2f} {row['extra_mib']:>9.1f}  "
              f"{'yes' if row['under_limit'] else 'NO':3} {row['load_before']} -> {row['load_after']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "selection of 1,000 picks; extra_mib = VmHWM after the selection minus VmHWM once the inputs exist",
        "limit_mib": LIMIT_MIB, "torch": torch.__version__, "default_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(), "rows": rows,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(ROOT))
    main()
