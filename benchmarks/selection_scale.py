"""Wall time and peak memory of the diversity strategies' selection at pool scale, on this machine's CPU.

    .venv/bin/python -m benchmarks.selection_scale            # 10k and 50k pools: minutes on 2 shared cores
    .venv/bin/python benchmarks/selection_scale.py --pools 50000 --repeat 3

Cases: core-set (k-center greedy, 10,000 labeled centres), BADGE (10 classes) and BALD (10 classes, T = 20)
on 512-d embeddings, picking 1,000. Every measurement runs in a fresh subprocess; memory is reported two ways:

- `extra_mib` (the headline): peak RSS (getrusage ru_maxrss) of a process that builds the inputs and runs the
  selection, minus the peak RSS of a baseline process that only builds the same inputs. Both processes first
  run the selection once on a tiny pool, so one-off library set-up (thread pools, BLAS buffers) is in both.
- `extra_hwm_mib` (a cross-check): in the measuring process, the peak RSS is reset through
  /proc/self/clear_refs just before the call, and VmHWM after it minus VmRSS before it is the call's peak.

Each case runs with torch's default thread count and with one thread: on a CPU shared with other busy
processes, multi-threaded element-wise kernels over 50k rows stall on descheduled threads, so the one-thread
time is the steadier figure there. Writes results/perf/selection.json (results/ is git-ignored) and prints a
table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
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
        inputs.model = SimpleNamespace(classifier=torch.nn.Linear(DIM, CLASSES).eval())
    return inputs


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def child(method: str, n: int, mode: str, threads: int) -> dict:
    """Run in a fresh process: build the inputs and (mode 'measure') select; report peak RSS and time."""
    from strategies import create_strategy

    if threads > 0:
        torch.set_num_threads(threads)

    strategy = create_strategy(method)
    strategy.select(make_inputs(method, 200, n_labeled=50, seed=1), 10)  # warm-up, in both modes
    inputs = make_inputs(method, n)
    input_bytes = sum(t.numel() * t.element_size() for t in (inputs.embeddings, inputs.labeled_embeddings,
                                                              inputs.probs) if t is not None)
    result = {"input_mib": input_bytes / 2**20}
    if mode == "measure":
        rss_before = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            hwm_ok = True
        except OSError:
            hwm_ok = False
        t0 = time.perf_counter()
        picks = strategy.select(inputs, PICKS)
        result["seconds"] = time.perf_counter() - t0
        result["extra_hwm_mib"] = (_status_kib("VmHWM") - rss_before) / 1024 if hwm_ok else None
        result["distinct_picks"] = int(np.unique(picks).size)
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return result


def run_child(method: str, n: int, mode: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.selection_scale", "--threads", str(threads),
           "--child", method, str(n), mode]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(method: str, n: int, repeat: int, threads: int) -> dict:
    baseline = run_child(method, n, "baseline", threads)
    runs = [run_child(method, n, "measure", threads) for _ in range(repeat)]
    hwm = [r["extra_hwm_mib"] for r in runs if r["extra_hwm_mib"] is not None]
    return {
        "method": method, "pool": n, "labeled": LABELED if method == "core-set" else 0, "dim": DIM,
        "classes": CLASSES if method != "core-set" else None, "picks": PICKS, "repeats": repeat,
        "seconds": min(r["seconds"] for r in runs),  # least disturbed by other processes on the machine
        "input_mib": baseline["input_mib"],
        "baseline_maxrss_mib": baseline["maxrss_mib"],
        "extra_mib": max(r["maxrss_mib"] for r in runs) - baseline["maxrss_mib"],
        "extra_hwm_mib": max(hwm) if hwm else None,
        "distinct_picks": min(r["distinct_picks"] for r in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 50_000], help="candidate pool sizes")
    parser.add_argument("--methods", nargs="+", default=["core-set", "badge", "bald"])
    parser.add_argument("--repeat", type=int, default=1, help="measuring processes per case (fastest time kept)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                        help="torch threads in each process, one table block per value (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf" / "selection.json")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "POOL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2], args.threads[0])))
        return

    rows = []
    print(f"{'threads':>7} {'method':9} {'pool':>7} {'inputs MiB':>10} {'seconds':>8} {'extra MiB':>9} "
          f"{'extra HWM MiB':>13}  ok")
    for threads, n, method in itertools.product(args.threads, args.pools, args.methods):
        row = measure(method, n, args.repeat, threads)
        row["threads"] = threads or torch.get_num_threads()
        row["under_limit"] = row["extra_mib"] < LIMIT_MIB and (row["extra_hwm_mib"] or 0) < LIMIT_MIB
        rows.append(row)
        hwm = "n/a" if row["extra_hwm_mib"] is None else f"{row['extra_hwm_mib']:.1f}"
        print(f"{row['threads']:>7} {method:9} {n:>7} {row['input_mib']:>10.1f} {row['seconds']:>8.2f} "
              f"{row['extra_mib']:>9.1f} {hwm:>13}  {'yes' if row['under_limit'] else 'NO'}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "selection of 1,000 picks; extra_mib = peak RSS minus that of a process that only builds the inputs",
        "limit_mib": LIMIT_MIB, "torch": torch.__version__, "default_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(), "rows": rows,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(ROOT))
    main()
