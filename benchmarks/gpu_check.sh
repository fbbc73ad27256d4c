#!/usr/bin/env bash
# One check of the harness on a lent GPU, from the repository root, in under 10 minutes:
#   1. the trainer runs on CUDA in bf16 autocast with channels_last inputs (fails otherwise);
#   2. training images/s of ResNet-18 (32x32, batch 128): Trainer.fit against bare steps, and one AL cycle of
#      the harness against the reference-style loop (fp32, PIL DataLoader), from benchmarks.perf;
#   2b. ResNet-18 with 1, 2 and 4 jobs per device, compiled or not, and --jobs-per-device auto's choice;
#   3. one short learning-loss run through run_bench.py;
#   4. the projected wall time of the paper preset grid (5 strategies x 5 seeds) at the measured throughput.
#
#   bash benchmarks/gpu_check.sh                        # on the GPU machine
#   CIFAR=path/to/cifar10-jpeg-10k.npz bash benchmarks/gpu_check.sh   # real CIFAR images (default: random ones)
#   DEVICE=cpu SIZE=tiny bash benchmarks/gpu_check.sh   # dry run of the same steps on a CPU, tiny sizes
#
# Uses .venv/bin/python when it imports the package, else python3 if it does, else makes .venv (with the
# system's site packages, so a preinstalled CUDA torch is reused) and runs `pip install -e .` into it.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-}  # empty: benchmarks.perf's default for the device (gpu on cuda, full on cpu)
CIFAR=${CIFAR:-}  # an npz CIFAR slice; empty: random images of CIFAR's shape (the timings depend on the shape only)
OUT=${OUT:-results/perf}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -x .venv/bin/python ] && .venv/bin/python -c "import bench, torch" 2>/dev/null; then
    PY=.venv/bin/python
elif python3 -c "import bench, torch" 2>/dev/null; then
    PY=python3
else
    echo "== installing the package into .venv (pip install -e .)"
    python3 -m venv --system-site-packages .venv
    .venv/bin/python -m pip install --quiet -e .
    PY=.venv/bin/python
fi
PERF_FLAGS=()
[ -n "$SIZE" ] && PERF_FLAGS=(--size "$SIZE")
[ -n "$CIFAR" ] && PERF_FLAGS+=(--cifar "$CIFAR")
echo "== python $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"

# 1. Precision and memory format, seen by a hook on the first convolution during Trainer.fit.
echo "== 1. setup check on $DEVICE"
timeout 90 "$PY" -m benchmarks.perf --device "$DEVICE" --only setup --out "$OUT/gpu_setup.json" ${PERF_FLAGS[@]+"${PERF_FLAGS[@]}"}
"$PY" - "$OUT/gpu_setup.json" "$DEVICE" <<'EOF'
import json, sys
row = json.load(open(sys.argv[1]))["rows"][0]
want_bf16 = sys.argv[2].startswith("cuda")
ok = row.get("passed") is True and (row["details"].get("output_dtype") == "bfloat16" or not want_bf16)
print(f"setup: {row['harness']} (expected {row['baseline']}) -> {'OK' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
EOF

# 2. Training throughput: harness against bare steps, and one cycle against the reference loop.
echo "== 2. throughput on $DEVICE"
timeout 210 "$PY" -m benchmarks.perf --device "$DEVICE" --only trainer cycle --out "$OUT/gpu.json" ${PERF_FLAGS[@]+"${PERF_FLAGS[@]}"}

# 2b. Jobs per device: ResNet-18 at the paper's batch with 1, 2 and 4 jobs sharing the device, compiled or not
# (aggregate and per-job images/s, peak memory per job), and what --jobs-per-device auto picks here.
echo "== 2b. packing on $DEVICE"
timeout 240 "$PY" -m benchmarks.perf --device "$DEVICE" --only packing --out "$OUT/gpu_packing.json" ${PERF_FLAGS[@]+"${PERF_FLAGS[@]}"}
if [ "$DEVICE" != cpu ]; then
    timeout 60 "$PY" - "$DEVICE" <<'EOF'
import sys
from bench.models import create_model
from bench.packing import auto_packing
device = "cuda:0" if sys.argv[1] == "cuda" else sys.argv[1]
found = auto_packing(device, create_model("resnet18", 3, 10, 0), (128, 3, 32, 32), 10, 10000 * 3 * 40 * 40 / 2**20, 1)
print(f"--jobs-per-device auto: {found.jobs_per_device} (bound by {found.limit}; one job {found.job_mib:,.0f} MiB, "
      f"free {found.free_mib:,.0f} MiB)")
EOF
fi

# 3. One short learning-loss run (the CIFAR slice when given, else random images of its shape).
echo "== 3. learning-loss run"
NPZ=$CIFAR
if [ -z "$NPZ" ]; then
    NPZ="$WORK/synthetic.npz"
    "$PY" - "$NPZ" <<'EOF'
import sys
import numpy as np
rng = np.random.default_rng(0)
np.savez(sys.argv[1], x_train=rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8),
         y_train=np.arange(10000) % 10, x_test=rng.integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8),
         y_test=np.arange(2000) % 10)
EOF
fi
if [ "$DEVICE" = cpu ]; then
    DEVICES=cpu; LL_EPOCHS=1; LL_SIZE=(--initial 100 --budget 100 --subset 300)
else
    DEVICES=$DEVICE; [ "$DEVICES" = cuda ] && DEVICES=cuda:0
    LL_EPOCHS=2; LL_SIZE=(--initial 1000 --budget 1000 --subset 5000)
fi
start=$(date +%s)
timeout 150 "$PY" run_bench.py --strategies ll --devices "$DEVICES" --dataset "npz:$NPZ" --model resnet18 \
    --cycles 2 --epochs "$LL_EPOCHS" "${LL_SIZE[@]}" --seeds 1 --out "$WORK/ll" | tail -n 12
echo "learning-loss run: $(( $(date +%s) - start )) s wall"

# 4. The paper grid at the measured throughputs: the entropy cycle's (benchmarks.perf), and learning loss's
# training rate (aux head included) from the run's last cycle (the first one pays the warm-up).
echo "== 4. projection"
"$PY" - "$OUT/gpu.json" "$WORK/ll/cycles.parquet" "$LL_EPOCHS" <<'EOF'
import json, sys
import pandas as pd
from benchmarks.perf import project_paper_grid

perf = json.load(open(sys.argv[1]))
cycle = next(r for r in perf["rows"] if r["name"] == "cycle" and "rates" in r["details"])
rates = cycle["details"]["rates"]["harness"]
last = pd.read_parquet(sys.argv[2]).sort_values("cycle").iloc[-1]
ll_train = int(last["n_labeled"]) * int(sys.argv[3]) / float(last["train_seconds"])
for what, train in (("entropy cycle", rates["train_img_s"]), ("learning-loss run", ll_train)):
    grid = project_paper_grid(train, rates["score_img_s"])
    print(f"paper grid (25 jobs, one at a time) at {what} training {train:,.0f} img/s, scoring "
          f"{rates['score_img_s']:,.0f} img/s: {grid['hours_total']:.1f} h ({grid['hours_per_job']:.2f} h per job)")
EOF
