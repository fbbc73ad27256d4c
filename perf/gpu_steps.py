"""The steps of perf/gpu_check.sh, one per call: `python -m perf.gpu_steps STEP --device D --size S
--out DIR --work DIR [--cifar PATH]`, and `summary --out DIR` for the closing table and gpu_check.json.

a-env (here): nvidia-smi, torch and its CUDA build, the GPUs. b-repeat and c-devices: perf.gpu_runs.
d-selection: perf.gpu_selection. e to h: perf.gpu_training. Each step imports only its own module:
every step is a fresh interpreter, and the packing step's workers import what the step imports. A step that does
not apply here exits with status 10 (check_log.SKIPPED) after saying why.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.core import provenance
from perf.check_log import SIZES, Setting, StepLog, device_of

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- a. environment


def step_env(log: StepLog, s: Setting) -> None:
    log.line(f"python {sys.version.split()[0]}, torch {torch.__version__}, torch.version.cuda {torch.version.cuda}, "
             f"cuDNN {torch.backends.cudnn.version()}, git {provenance.git_commit(ROOT)}",
             torch=torch.__version__, cuda=torch.version.cuda, cpu=provenance.cpu_name(), cores=os.cpu_count())
    if s.device.type != "cuda":
        log.line("nvidia-smi: skipped (DEVICE=cpu)")
        log.headline(f"torch {torch.__version__} on {provenance.cpu_name()}")
        return
    if not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={s.device} but torch sees no CUDA device (torch.version.cuda "
                           f"{torch.version.cuda}): a CPU build of torch, or no driver")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    for i, name in enumerate(names):
        props = torch.cuda.get_device_properties(i)
        log.line(f"cuda:{i}: {name}, compute capability {props.major}.{props.minor}, "
                 f"{props.total_memory / 2**30:.0f} GiB")
    log.record["data"]["gpus"] = names
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        log.line(smi.stdout.rstrip() or smi.stderr.rstrip())
    except (OSError, subprocess.SubprocessError) as err:
        log.not_available("nvidia-smi", f"{type(err).__name__}: {err}")
    log.headline(f"{len(names)} x {names[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")


# ---------------------------------------------------------------------------------------------- summary


def summary(out: Path) -> int:
    """The steps' table from OUT/steps.tsv (the driver's status lines) and their JSON; OUT/gpu_check.json."""
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, seconds, budget = line.split("\t")
        path = out / "steps" / f"{name}.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        steps.append({"step": name, "status": status, "seconds": int(seconds), "budget_s": int(budget), **record})
    width = max(len(r["step"]) for r in steps)
    print(f"{'step':<{width}}  {'status':<24} {'s':>4} {'budget':>6}  result")
    for r in steps:
        print(f"{r['step']:<{width}}  {r['status']:<24} {r['seconds']:>4} {r['budget_s']:>6}  {r.get('headline', '')}")
    bad = [r["step"] for r in steps if r["status"].startswith(("FAILED", "TIMED OUT"))]
    total = sum(r["seconds"] for r in steps)
    (out / "gpu_check.json").write_text(json.dumps({"wall_seconds": total, "failed": bad, "steps": steps},
                                                   indent=2, default=str))
    print(f"{len(steps)} steps in {total} s, {len(bad)} failed or timed out; wrote {out / 'gpu_check.json'}")
    return 1 if bad else 0


STEPS = {  # name -> (module, function): a step's module is imported only when it runs
    "a-env": ("perf.gpu_steps", "step_env"),
    "b-repeat": ("perf.gpu_runs", "step_repeat"),
    "c-devices": ("perf.gpu_runs", "step_devices"),
    "d-selection": ("perf.gpu_selection", "step_selection"),
    "e-determinism": ("perf.gpu_training", "step_determinism"),
    "f-packing": ("perf.gpu_training", "step_packing_eager"),
    "f-packing-compiled": ("perf.gpu_training", "step_packing_compiled"),
    "g-grid": ("perf.gpu_training", "step_grid"),
    "h-launches": ("perf.gpu_training", "step_launches"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gpu_steps", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=[*STEPS, "summary"])
    parser.add_argument("--device", default="cuda", help="cpu, cuda (its first GPU) or cuda:N")
    parser.add_argument("--size", choices=list(SIZES), help="gpu (default on CUDA) or tiny (default on a CPU)")
    parser.add_argument("--out", type=Path, required=True, help="the check's output folder")
    parser.add_argument("--work", type=Path, help="scratch folder (default: OUT/work)")
    parser.add_argument("--cifar", type=Path, help="an npz CIFAR slice (default: random images of its shape)")
    args = parser.parse_args(argv)
    if args.step == "summary":
        return summary(args.out)
    # cuBLAS reads it when CUDA starts; deterministic algorithms refuse to run without it
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = device_of(args.device)
    size = args.size or ("gpu" if device.type == "cuda" else "tiny")
    work = args.work or args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    setting = Setting(device, SIZES[size], args.cifar, args.out / "steps", work)
    module, function = STEPS[args.step]
    return getattr(importlib.import_module(module), function)(StepLog(args.step, setting.out), setting) or 0


if __name__ == "__main__":
    sys.exit(main())
