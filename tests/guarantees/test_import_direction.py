"""Imports point down the package tree: every import in bench/ and strategies/ (function-level ones too) is held
to the layers docs/architecture.md states, and a planted wrong-way import is caught."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from launch import ROOT

# The layers, bottom first: a module may import its own group and the groups below it, less what FORBIDDEN takes.
LAYERS = ("core", "data", "models", "strategies", "training", "results", "analysis", "report", "runner", "cli")
# Groups a layer must not use although they lie below it.
FORBIDDEN = {
    "strategies": {"data"},  # a strategy sees PoolInputs, never a dataset
    "results": {"data", "models", "strategies"},  # a folder's files, not what computed them
    "analysis": {"data", "models", "strategies", "training"},  # numbers from cycles.parquet alone
    "report": {"data", "models", "strategies", "training"},
}
# Of the training group, what the store may carry: plain data, no model and no loop.
RESULTS_MAY_USE = {"bench.training.jobs"}
# What --help and a bad flag load: bench/cli.py's module-level imports.
CLI_TOP_LEVEL = ("bench.core",)


def group_of(module: str) -> str | None:
    """The layer of a dotted module name of this project (None: a library, or the public bench/__init__)."""
    parts = module.split(".")
    if parts[0] == "strategies":
        return "strategies"
    if parts[0] != "bench" or len(parts) == 1:
        return None
    return "cli" if parts[1] == "cli" else parts[1]


def imports(path: Path, root: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, at module level) for every import of this project in the file."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from bench.analysis import curves` imports the module bench.analysis.curves
            names = [f"{node.module}.{a.name}" if (root / node.module.replace(".", "/") / f"{a.name}.py").exists()
                     else node.module for a in node.names]
        else:
            continue
        found += [(name, node.lineno, id(node) in top) for name in names
                  if name.split(".")[0] in ("bench", "strategies")]
    return found


def violations(root: Path) -> list[str]:
    """Every import under root/bench and root/strategies that points up or across to a group it must not use."""
    wrong = []
    for path in sorted([*(root / "bench").rglob("*.py"), *(root / "strategies").rglob("*.py")]):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        here = group_of(module)
        where = f"{path.relative_to(root)}"
        for name, line, top_level in imports(path, root):
            there = group_of(name)
            if here is None:  # bench/__init__.py: the public surface re-exports from anywhere
                continue
            if there is None:
                wrong.append(f"{where}:{line} imports {name}: the public surface is for users, not for bench itself")
            elif LAYERS.index(there) > LAYERS.index(here):
                wrong.append(f"{where}:{line} imports {name}: {here} is below {there}")
            elif there in FORBIDDEN.get(here, set()):
                wrong.append(f"{where}:{line} imports {name}: {here} must not use {there}")
            elif here == "results" and there == "training" and name not in RESULTS_MAY_USE:
                wrong.append(f"{where}:{line} imports {name}: results may carry only {sorted(RESULTS_MAY_USE)}")
            elif here == "cli" and top_level and not name.startswith(CLI_TOP_LEVEL):
                wrong.append(f"{where}:{line} imports {name} at module level: --help may load bench.core only")
    return wrong


def test_every_import_points_down_the_tree():
    assert violations(ROOT) == []


def test_every_module_lies_in_a_layer():
    groups = {p.name for p in (ROOT / "bench").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert groups == set(LAYERS) - {"strategies", "cli"}


@pytest.mark.parametrize(("module", "line", "found"), [
    ("bench/core/config.py", "from bench.runner.resolve import RunOptions", "core is below runner"),
    ("bench/results/store.py", "import strategies.base", "results must not use strategies"),
    ("bench/results/identity.py", "from bench.training.loop import start_state", "results may carry only"),
    ("bench/analysis/curves.py", "    from bench.training import trainer", "analysis must not use training"),
    ("bench/report/layout.py", "from bench import run_benchmark", "the public surface is for users"),
    ("bench/cli.py", "from bench.runner.benchmark import dry_run", "--help may load bench.core only"),
])
def test_a_wrong_way_import_is_caught(tmp_path, module, line, found):
    """A copy of the tree with one import planted (at module level, or inside a function when indented)."""
    for package in ("bench", "strategies"):
        for path in (ROOT / package).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    assert violations(tmp_path) == []
    planted = tmp_path / module
    code = f"\n\ndef _planted():\n{line}\n" if line.startswith(" ") else f"\n{line}\n"
    planted.write_text(planted.read_text() + code)
    assert any(found in v for v in violations(tmp_path)), violations(tmp_path)
