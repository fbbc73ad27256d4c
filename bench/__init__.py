"""A benchmark harness for deep active-learning strategies: paired seeds, four-word verdicts, seeds in rounds.

The public surface, for a notebook or a script:

    from bench import RunOptions, build_config, run_benchmark
    result = run_benchmark(build_config("quick", ["entropy", "random"], seeds=3), RunOptions(jobs=2))

Each name is imported from its module on first use, so that `import bench.core.config` (what `--help` loads)
stays free of torch and pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_SURFACE = {
    "build_config": "bench.runner.resolve",  # a checked RunConfig from a preset, strategies, seeds and overrides
    "RunOptions": "bench.runner.resolve",  # how a run executes and reports (nothing in it changes its numbers)
    "run_benchmark": "bench.runner.benchmark",  # every pending job into the results folder, then the report
    "benchmark_in_rounds": "bench.runner.seeds_auto",  # --seeds auto: rounds of seeds until the verdicts are sure
    "dry_run": "bench.runner.benchmark",  # what a run would do, after the checks it makes before any work
    "write_report": "bench.report.layout",  # report/ of a results folder, from its cycles.parquet
    "Strategy": "strategies.base",  # subclass it to add a strategy (registered by its name)
    "PoolInputs": "strategies.base",  # what a strategy is given: the candidates as the model sees them
    "STRATEGIES": "strategies",  # the strategy registry (every shipped strategy registered)
    "MODELS": "bench.models.backbones",  # the model registry; @register_model adds one
    "register_model": "bench.models.backbones",
    "DATASETS": "bench.data.datasets",  # the dataset registry (every shipped dataset registered)
    "register_dataset": "bench.data.images",
}
__all__ = sorted(_SURFACE)


def __getattr__(name: str) -> Any:
    if name not in _SURFACE:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    return getattr(importlib.import_module(_SURFACE[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
