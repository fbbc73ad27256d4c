"""tests/ mirrors the tree: every bench/<group>/<module>.py has tests/<group>/test_<module>.py, and every
strategies/<name>.py has tests/strategies/test_<name>.py, and that file imports the module it is named for (a
strategy created by its registered name does not count: a reader looks for the import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

# Modules about to be deleted, and so given no test file of their own. Remove a line when its module goes.
EXEMPT: set[str] = set()


def imported_modules(source: str) -> set[str]:
    """Every module a Python source imports, by its dotted name: `import a.b` gives a.b, `from a import b` gives a
    and a.b (b may be a module), `from a.b import c` gives a.b and a.b.c."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def product_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> the test file that must hold its tests, for every module of bench/<group>/ and
    strategies/ (packages' __init__ and strategies/base.py, which tests/strategies/test_base.py and
    test_contract.py hold, aside)."""
    wanted = {}
    for path in sorted((root / "bench").glob("*/*.py")):
        if path.name != "__init__.py":
            wanted[f"bench.{path.parent.name}.{path.stem}"] = root / "tests" / path.parent.name / f"test_{path.name}"
    for path in sorted((root / "strategies").glob("*.py")):
        if path.name not in ("__init__.py", "base.py"):
            wanted[f"strategies.{path.stem}"] = root / "tests" / "strategies" / f"test_{path.name}"
    return wanted


def missing(root: Path, exempt: set[str]) -> list[str]:
    """What the tree lacks, one line per module: no test file, or a test file that does not import it."""
    found = []
    for module, test_file in product_modules(root).items():
        if module in exempt:
            continue
        if not test_file.is_file():
            found.append(f"{module}: no {test_file.relative_to(root)}")
        elif module not in imported_modules(test_file.read_text()):
            found.append(f"{module}: {test_file.relative_to(root)} does not import it")
    return found


def test_every_product_module_has_a_test_file_that_imports_it():
    assert not missing(ROOT, EXEMPT), "\n".join(missing(ROOT, EXEMPT))


def test_the_exemptions_name_modules_that_still_exist():
    # an exemption outlives its module only by mistake: once the module is deleted, the line goes too
    assert EXEMPT <= set(product_modules(ROOT)), EXEMPT - set(product_modules(ROOT))


@pytest.mark.parametrize(("source", "module", "imports"), [
    ("import bench.report.tables", "bench.report.tables", True),
    ("from bench.report import tables", "bench.report.tables", True),
    ("from bench.report.tables import write_table", "bench.report.tables", True),
    ("import bench.report", "bench.report.tables", False),
    ("from bench.report.text import count", "bench.report.tables", False),
    ("from . import tables", "bench.report.tables", False),
    ("import strategies.entropy as e", "strategies.entropy", True),
    ("STRATEGIES.create('entropy')", "strategies.entropy", False),
    ("x = 'import strategies.entropy'", "strategies.entropy", False),
])
def test_the_check_reads_each_form_of_import(source, module, imports):
    assert (module in imported_modules(source)) is imports


def test_the_check_names_a_missing_file_and_a_file_that_does_not_import(tmp_path):
    for path, text in {"bench/report/__init__.py": "", "bench/report/tables.py": "", "bench/report/text.py": "",
                       "strategies/__init__.py": "", "strategies/base.py": "", "strategies/entropy.py": "",
                       "tests/report/test_tables.py": "from bench.report import tables\n",
                       "tests/strategies/test_entropy.py": "STRATEGIES.create('entropy')\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert missing(tmp_path, set()) == ["bench.report.text: no tests/report/test_text.py",
                                        "strategies.entropy: tests/strategies/test_entropy.py does not import it"]
    assert missing(tmp_path, {"bench.report.text", "strategies.entropy"}) == []
