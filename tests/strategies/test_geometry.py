"""What core-set and BADGE share: the exact squared norms of strategies.geometry, and the select contract (k distinct
valid positions, the same for the same seed). Each one's own tests are in test_core_set.py and test_badge.py; BALD's
in test_bald.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.backbones import create_model
from strategies import PoolInputs, create_strategy
from strategies.geometry import sq_norms


def random_inputs(n: int, n_labeled: int, seed: int, model=None) -> PoolInputs:
    g = torch.Generator().manual_seed(seed)
    model = model or create_model("cnn", 1, 10, generator_seed=seed).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = model.classifier(emb).detach()
    return PoolInputs(n=n, rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits, 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())


# -------------------------------------------------------------------------------------------- shared geometry


def test_sq_norms_are_exact_sums_of_squares_in_blocks(monkeypatch):
    monkeypatch.setattr("strategies.geometry.BLOCK_ELEMENTS", 6)  # 3 rows per block: 4 blocks, the last short
    x = torch.tensor([[1.0, 1.0], [3.0, 4.0], [0.1, 0.2], [1.0, 2.0], [0.0, 0.0], [5.0, 5.0], [2.0, 1.0],
                      [7.0, 0.0], [1.0, 3.0], [1.0, 7.0]])  # [10, 2]
    for dtype in (torch.float64, torch.float32):
        expected = (x.to(dtype).numpy().astype(np.float64) ** 2).sum(1)  # squared exactly in float64
        got = sq_norms(x.to(dtype))
        assert got.dtype == torch.float64 and got.tolist() == expected.tolist()  # 2, not sqrt(2) ** 2
        assert got[3] == got[6] == 5.0 and got[5] == got[9] == 50.0  # ties stay ties


# -------------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize("name", ["core-set", "badge"])
def test_select_returns_k_distinct_valid_positions_deterministically(name):
    strategy = create_strategy(name)
    picks = strategy.select(random_inputs(300, 40, seed=4), 60)
    assert picks.shape == (60,) and np.unique(picks).size == 60
    assert picks.min() >= 0 and picks.max() < 300
    assert strategy.select(random_inputs(300, 40, seed=4), 60).tolist() == picks.tolist()  # same seed

