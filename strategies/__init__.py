"""Acquisition strategies: one file each, registered by subclassing `Strategy`.

Importing this package imports every module in it, and any package that exposes the entry-point
group `al_bench.strategies`.
"""

import importlib
import pkgutil
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from os import PathLike
from pathlib import Path

from bench.core.errors import UserError
from strategies.base import (
    STRATEGIES,
    PoolInputs,
    Strategy,
    create_strategy,
    list_strategies,
    load_strategy_file,
    top_k,
)

__all__ = ["STRATEGIES", "PoolInputs", "Strategy", "check_importable", "create_strategy", "list_strategies",
           "load_strategy_file", "top_k"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

for _entry in entry_points(group="al_bench.strategies"):
    _entry.load()

# What a fresh worker process registers before it imports the run's strategy files: this package and the
# entry points.
BUILT_IN = frozenset(STRATEGIES.names())


def check_importable(names: Iterable[str], files: Iterable[str | PathLike[str]]) -> None:
    """Refuse, in one line, a strategy that worker processes could not find: one registered in this process (by a
    notebook, a script, an imported module) whose file is not among the strategy files the workers import."""
    given = {str(Path(f).resolve()) for f in files}
    for name in names:
        if name in BUILT_IN:
            continue
        cls = STRATEGIES.get(name)
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if file is None or str(Path(file).resolve()) not in given:
            where = f"in {file}" if file else f"in {cls.__module__}, which has no file"
            raise UserError(f"Strategy {name!r} is defined {where}, and the worker processes import only the "
                            "strategy files they are given: pass its file in RunOptions.strategy_files "
                            "(--strategy-file), or run with one worker (jobs=1).")
