"""bench/__init__.py: the public surface resolves to the objects its modules define, importing bench costs
nothing until a name is used, and docs/clusters.md's Python example uses it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from launch import ROOT

import bench


@pytest.mark.parametrize("name", bench.__all__)
def test_each_public_name_is_the_object_its_module_defines(name):
    module = importlib.import_module(bench._SURFACE[name])
    assert getattr(bench, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'run_jobs'"):
        bench.run_jobs  # noqa: B018


def test_importing_bench_and_its_core_loads_no_torch_and_no_pandas():
    code = ("import sys, bench, bench.core.config; import bench.cli; "
            "print(sorted(m for m in ('torch', 'pandas', 'scipy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_the_python_example_imports_from_the_surface():
    example = (ROOT / "docs" / "clusters.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    imported = [line for line in example.splitlines() if line.startswith(("from ", "import "))]
    assert imported == ["from bench import RunOptions, build_config, run_benchmark"]
    assert {"RunOptions", "build_config", "run_benchmark"} <= set(bench.__all__)
