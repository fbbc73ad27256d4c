#!/usr/bin/env bash
# One check of the harness on a lent GPU, from the repository root, in under 8 minutes on one H100. Each step runs
# under its own time budget (GNU timeout, its child processes included); a step that fails or runs out of time is
# reported ("step NAME: FAILED (exit N)" / "step NAME: TIMED OUT after N s") and the next one runs. The Python of
# every step is in perf/gpu_steps.py and perf/gpu_training.py.
#   a-env               nvidia-smi, torch and torch.version.cuda, the GPUs' names
#   b-repeat            one entropy job run twice through run_bench.py: test_acc, test_loss and picks equal or not
#   c-devices           a run on --devices cuda:1 with nvidia-smi's compute processes sampled: which GPU it used
#                       (skipped with fewer than 2 GPUs)
#   d-selection         core-set, BADGE and BALD on the device, 1,000 of 10,000 x 512-d: seconds and host syncs
#                       (torch.cuda.set_sync_debug_mode warnings on CUDA; aten._local_scalar_dense on any device)
#   e-determinism       Trainer.fit images/s (ResNet-18, batch 128, 32x32) with deterministic mode on and off
#   f-packing           1, 2 and 4 jobs per device, eager: images/s in all and per job, peak memory per job
#   f-packing-compiled  the same compiled: one cold compilation, then the other jobs from its inductor cache; the
#                       timed epochs hold whole batches only and each round counts its recompiles (0 expected)
#   g-grid              the paper grid (25 jobs) projected from images/s measured at the paper's batch of 128
#   h-launches          CUDA kernels per training step (torch.profiler), and images/s with augmentation drawn once
#                       per epoch and with torch.optim.SGD(fused=True): which lever pays
# It ends with a table of the steps and writes $OUT/gpu_check.json (every step's lines and figures; each step's
# own JSON, kept as it goes, in $OUT/steps/). Exit status 1 when a step failed or timed out.
#
#   bash perf/gpu_check.sh                                      # on the GPU machine
#   CIFAR=path/to/cifar10-jpeg-10k.npz bash perf/gpu_check.sh   # real CIFAR images (default: random ones)
#   DEVICE=cpu SIZE=tiny bash perf/gpu_check.sh                 # the same steps on a CPU, tiny sizes
#   OUT=folder BUDGET_f_packing_compiled=300 bash perf/gpu_check.sh   # another output folder, a longer budget
#
# Uses $PY when set, else .venv/bin/python when it finds the package and torch, else python3 if it does, else makes
# .venv (with the system's site packages, so a preinstalled CUDA torch is reused) and runs `pip install -e .` into it.
set -uo pipefail  # no -e: a failed step is reported, and the rest still run
OUT=${OUT:+$(realpath -m "$OUT")}  # paths given relative to the caller's folder, before the cd
CIFAR=${CIFAR:+$(realpath -m "$CIFAR")}
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-}  # empty: gpu on cuda, tiny on cpu
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT/steps"
: > "$OUT/steps.tsv"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PY=${PY:-}
FINDS="import importlib.util as u, sys; sys.exit(not (u.find_spec('bench') and u.find_spec('torch')))"  # no import
if [ -n "$PY" ]; then
    :
elif [ -x .venv/bin/python ] && .venv/bin/python -c "$FINDS" 2>/dev/null; then
    PY=.venv/bin/python
elif python3 -c "$FINDS" 2>/dev/null; then
    PY=python3
else
    echo "== installing the package into .venv (pip install -e .)"
    python3 -m venv --system-site-packages .venv
    .venv/bin/python -m pip install --quiet -e .
    PY=.venv/bin/python
fi
ARGS=(--device "$DEVICE" --out "$OUT" --work "$WORK")
[ -n "$SIZE" ] && ARGS+=(--size "$SIZE")
[ -n "$CIFAR" ] && ARGS+=(--cifar "$CIFAR")

# step NAME BUDGET_S: run `perf.gpu_steps NAME` under a budget of BUDGET_S seconds (BUDGET_<NAME> overrides
# it, dashes as underscores: BUDGET_b_repeat=120) and say how it ended.
step() {
    local name=$1 override="BUDGET_${1//-/_}" start=$SECONDS rc=0 status
    local budget=${!override:-$2}
    echo "== $name (budget $budget s)"
    timeout --kill-after=10 "$budget" "$PY" -m perf.gpu_steps "$name" "${ARGS[@]}" || rc=$?
    case $rc in
        0) status="ok" ;;
        10) status="skipped" ;;  # perf.check_log.SKIPPED: it said why
        124|137) status="TIMED OUT after $budget s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    echo "step $name: $status ($(( SECONDS - start )) s)"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( SECONDS - start ))" "$budget" >> "$OUT/steps.tsv"
}

# Budgets: their sum on one GPU (c-devices skipped) is 455 s.
step a-env 15
step b-repeat 80
step c-devices 45
step d-selection 50
step e-determinism 40
step f-packing 60
step f-packing-compiled 130
step g-grid 35
step h-launches 45
"$PY" -m perf.gpu_steps summary --out "$OUT"
