"""bench.analysis.across: the mean AULC rank over settings, by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.analysis import across


def test_mean_rank_over_datasets():
    aulc_summary = pd.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2"],
        "strategy": ["A", "B", "C", "A", "B"],
        "mean": [0.8, 0.7, 0.6, 0.6, 0.7],
    })
    # d1 ranks A 1, B 2, C 3; d2 ranks B 1, A 2 (C not run there).
    table = across.mean_rank(aulc_summary)
    assert table["strategy"].tolist() == ["A", "B", "C"]
    assert table["mean_rank"].tolist() == pytest.approx([1.5, 1.5, 3.0])
    assert table["n_datasets"].tolist() == [2, 2, 1]
