"""The performance suite (`python -m perf.perf`) and the GPU check (gpu_check.sh): beside the product,
not in the wheel (pyproject packages bench and strategies only)."""
