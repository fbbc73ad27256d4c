"""Steps b and c of perf/gpu_check.sh: run_bench.py as a user runs it. b-repeat: one entropy job run twice,
its rows and picks compared exactly. c-devices: a run on --devices cuda:1 with nvidia-smi's compute processes
sampled during it, to see which GPU its processes hold."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from perf.check_log import Setting, StepLog

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- b. repeatability


def synthetic_npz(path: Path, n_train: int, n_test: int) -> Path:
    """Random uint8 images of CIFAR-10's shape (NHWC) with balanced labels: the run's figures depend on the shape."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), y_train=np.arange(n_train) % 10,
             x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), y_test=np.arange(n_test) % 10)
    return path


def run_command(s: Setting, devices: str, out: Path) -> list[str]:
    """One entropy job of the check's protocol through run_bench.py, as a user runs it."""
    npz = s.cifar or s.work / "synthetic.npz"
    if s.cifar is None and not npz.exists():
        synthetic_npz(npz, s.sizes.npz_train, s.sizes.npz_test)
    return [sys.executable, str(ROOT / "run_bench.py"), "--strategies", "entropy", "--seeds", "1", "--devices",
            devices, "--jobs", "1", "--dataset", f"npz:{npz}", *s.sizes.run_args, "--out", str(out)]


def compare_rows(first: pd.DataFrame, second: pd.DataFrame, columns: tuple[str, ...],
                 keys: tuple[str, ...] = ("strategy", "seed", "cycle")) -> dict[str, tuple[float, int] | None]:
    """Per column: None where the two runs' rows are equal, else (largest absolute difference, rows that differ)."""
    a, b = (frame.sort_values(list(keys)).reset_index(drop=True) for frame in (first, second))
    if len(a) != len(b) or not (a[list(keys)] == b[list(keys)]).all().all():
        raise RuntimeError(f"the two runs hold different rows ({len(a)} and {len(b)})")
    differ = {c: a[c].to_numpy() != b[c].to_numpy() for c in columns}
    return {c: None if not d.any() else (float((a[c] - b[c]).abs().max()), int(d.sum())) for c, d in differ.items()}


def difference_text(column: str, difference: tuple[float, int] | None) -> str:
    return f"{column} equal" if difference is None else (f"{column} differ by up to {difference[0]:.3g} "
                                                         f"({difference[1]} rows)")


def step_repeat(log: StepLog, s: Setting) -> None:
    devices = "cpu" if s.device.type == "cpu" else str(s.device)
    folders = [s.work / f"repeat-{i}" for i in (1, 2)]
    start = time.perf_counter()
    # at once: their numbers must not depend on what else runs, and the check's minutes are few
    runs = [subprocess.Popen(run_command(s, devices, folder), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for folder in folders]
    outputs = [run.communicate()[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        if run.returncode != 0:
            raise RuntimeError(f"run_bench.py exited {run.returncode}:\n{output[-2000:]}")
    log.line(f"two runs of one entropy job on {devices}, side by side: {time.perf_counter() - start:.0f} s wall")
    differences = {**compare_rows(*(pd.read_parquet(f / "cycles.parquet") for f in folders), ("test_acc", "test_loss")),
                   **compare_rows(*(pd.read_parquet(f / "selections.parquet") for f in folders), ("index",),
                                  keys=("strategy", "seed", "cycle", "rank"))}
    log.record["data"]["differences"] = differences
    texts = [difference_text("picks" if c == "index" else c, d) for c, d in differences.items()]
    log.headline(("repeatable: " if all(d is None for d in differences.values()) else "NOT repeatable: ")
                 + ", ".join(texts))


# ---------------------------------------------------------------------------------------------- c. cuda:1


def gpu_indices(query_gpu: str) -> dict[str, int]:
    """uuid -> index, from `nvidia-smi --query-gpu=index,uuid --format=csv,noheader`."""
    rows = [line.split(",") for line in query_gpu.strip().splitlines() if line.strip()]
    return {uuid.strip(): int(index) for index, uuid in rows}


def compute_apps(query_apps: str, indices: dict[str, int]) -> list[tuple[int, int, str]]:
    """(pid, GPU index, used memory), from `nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory
    --format=csv,noheader`."""
    apps = []
    for line in query_apps.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            apps.append((int(parts[0]), indices.get(parts[1], -1), parts[2]))
    return apps


def process_tree(root: int) -> set[int]:
    """root and every process descended from it, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we read
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def smi(*args: str) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10).stdout


def step_devices(log: StepLog, s: Setting) -> int | None:
    if s.device.type != "cuda":
        return log.skip("--devices cuda:1 needs CUDA")
    if torch.cuda.device_count() < 2:
        return log.skip(f"--devices cuda:1 needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    indices = gpu_indices(smi("--query-gpu=index,uuid", "--format=csv,noheader"))
    run = subprocess.Popen(run_command(s, "cuda:1", s.work / "cuda1"), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    ours, seen = set(), {}
    while run.poll() is None:
        ours |= process_tree(run.pid)
        for pid, gpu, memory in compute_apps(smi("--query-compute-apps=pid,gpu_uuid,used_memory",
                                                 "--format=csv,noheader"), indices):
            if pid in ours:
                seen[(pid, gpu)] = memory
        time.sleep(0.5)
    for (pid, gpu), memory in sorted(seen.items()):
        log.line(f"pid {pid} of the run on GPU {gpu}: {memory}")
    gpus = sorted({gpu for _, gpu in seen})
    log.record["data"].update(gpus=gpus, exit_status=run.returncode)
    if run.returncode != 0:
        raise RuntimeError(f"run_bench.py --devices cuda:1 exited {run.returncode}")
    log.headline("--devices cuda:1 ran on GPU 1 only" if gpus == [1] else f"--devices cuda:1 ran on GPUs {gpus}")
    return None
