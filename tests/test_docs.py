"""What the docs state stays true: counts are generated, examples run."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def test_the_guarantees_page_holds_the_suites_counts_as_pytest_collects_them():
    spec = importlib.util.spec_from_file_location("suite_counts", ROOT / "docs" / "suite_counts.py")
    counts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counts)
    found = counts.counts()
    assert all(n > 0 for n in found.values()), found
    assert counts.PAGE.read_text() == counts.page_with(found), "run `python docs/suite_counts.py`"


def test_the_readmes_strategy_example_works_as_shown(tmp_path):
    # the README's one-file strategy, copied as a newcomer would, through --strategy-file's loader
    import numpy as np
    import torch

    from strategies import create_strategy, load_strategy_file
    from strategies.base import PoolInputs

    section = (ROOT / "README.md").read_text().split("## Adding a strategy", 1)[1]
    path = tmp_path / "my_variation_ratio.py"
    path.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    assert load_strategy_file(path) == ["my-variation-ratio"]
    strategy = create_strategy("my-vr")
    assert strategy.needs == {"probs"}
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]], dtype=torch.float64)
    inputs = PoolInputs(n=3, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"), probs=probs)
    assert strategy.select(inputs, 2).tolist() == [2, 0]  # one minus the top probability: 0.66, 0.5, 0.1
