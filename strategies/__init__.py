"""Acquisition strategies: one file each, registered by subclassing `Strategy`.

Importing this package imports every module in it, and any package that exposes the entry-point
group `al_bench.strategies`.
"""

import importlib
import pkgutil
from importlib.metadata import entry_points

from strategies.base import (
    STRATEGIES,
    PoolInputs,
    Strategy,
    create_strategy,
    list_strategies,
    load_strategy_file,
    top_k,
)

__all__ = ["STRATEGIES", "PoolInputs", "Strategy", "create_strategy", "list_strategies", "load_strategy_file", "top_k"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

for _entry in entry_points(group="al_bench.strategies"):
    _entry.load()
