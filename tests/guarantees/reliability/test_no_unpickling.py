"""Nothing is unpickled: the package source never calls a loader that can run pickled code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from launch import ROOT

PICKLE_LOADERS = ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "dill.loads", "cloudpickle.load",
                  "cloudpickle.loads", "pd.read_pickle", "pandas.read_pickle", "torch.serialization.load")
GUARDED = {"np.load": ("allow_pickle", False), "numpy.load": ("allow_pickle", False),
           "torch.load": ("weights_only", True)}
RISKY_IMPORTS = {"pickle": {"load", "loads", "Unpickler"}, "joblib": {"load"}, "dill": {"load", "loads"},
                 "cloudpickle": {"load", "loads"}, "numpy": {"load"}, "torch": {"load"}}


def _dotted(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value: bool) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unpickling_calls(source: str, filename: str = "<source>") -> list[str]:
    """Every place in `source` that could unpickle, as 'file:line: what'."""
    hits = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in PICKLE_LOADERS or name.endswith(".Unpickler") or name == "Unpickler":
                hits.append(f"{filename}:{node.lineno}: {name}(...)")
            elif name in GUARDED and not _keyword_is(node, *GUARDED[name]):
                key, value = GUARDED[name]
                hits.append(f"{filename}:{node.lineno}: {name}(...) without {key}={value}")
            if _keyword_is(node, "allow_pickle", True):
                hits.append(f"{filename}:{node.lineno}: allow_pickle=True")
        elif isinstance(node, ast.ImportFrom) and node.module in RISKY_IMPORTS:
            for alias in node.names:
                if alias.name in RISKY_IMPORTS[node.module]:  # a bare load() would escape the checks above
                    hits.append(f"{filename}:{node.lineno}: from {node.module} import {alias.name}")
    return hits


def package_sources() -> list[Path]:
    files = [ROOT / "run_bench.py", *sorted((ROOT / "bench").rglob("*.py")),
             *sorted((ROOT / "strategies").rglob("*.py"))]
    assert len(files) > 10 and all(f.is_file() for f in files)
    return files


def test_the_package_source_never_unpickles():
    hits = [hit for path in package_sources()
            for hit in unpickling_calls(path.read_text(), str(path.relative_to(ROOT)))]
    assert hits == []


def test_the_package_does_load_files_safely():
    """The scan looks at the loaders the package really uses (so it is not vacuous)."""
    text = "\n".join(p.read_text() for p in package_sources())
    assert "np.load(path, allow_pickle=False)" in text and "weights_only=True" in text


@pytest.mark.parametrize("source", [
    "import pickle\npickle.load(open('x', 'rb'))",
    "import pickle\nobj = pickle.loads(data)",
    "import joblib\njoblib.load('model.joblib')",
    "import numpy as np\nnp.load('a.npz')",
    "import numpy as np\nnp.load('a.npz', allow_pickle=True)",
    "import numpy\nnumpy.load(\n    'a.npy',\n    mmap_mode='r',\n)",
    "import torch\ntorch.load('ckpt.pt')",
    "import torch\ntorch.load('ckpt.pt', weights_only=False)",
    "import pandas as pd\npd.read_pickle('t.pkl')",
    "from pickle import loads\nloads(b'')",
    "from torch import load\nload('x.pt', weights_only=True)",
    "import pickle\npickle.Unpickler(f).load()",
    "np.savez('a.npz', x=x, allow_pickle=True)",
])
def test_the_scan_finds_each_way_to_unpickle(source):
    assert unpickling_calls(source)


@pytest.mark.parametrize("source", [
    "import numpy as np\nnp.load(path, allow_pickle=False)",
    "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
    "import pickle\npickle.dumps(obj)",
    "import json\njson.loads(text)",
])
def test_the_scan_passes_safe_loading(source):
    assert unpickling_calls(source) == []
