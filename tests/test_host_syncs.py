"""Host syncs in the diversity strategies' selection loops, counted on the CPU.

Indexing with a 0-d tensor (`x[pick]`, `x[pick] = v`) and `.item()` both lower to aten._local_scalar_dense,
which on CUDA waits for the device queue to drain. A dispatch mode counts those calls during select(): a
selection may make a constant number of them, never one or more per pick. (torch.cuda.set_sync_debug_mode
would report the same on a GPU; on the CPU there is no queue to wait for, so the op itself is counted.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.models import create_model
from strategies import PoolInputs, create_strategy


class SyncCounter(TorchDispatchMode):
    """Counts aten._local_scalar_dense: the op behind .item(), float(t) and indexing with a 0-d tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def pool_inputs(n: int, n_labeled: int) -> PoolInputs:
    g = torch.Generator().manual_seed(0)
    model = create_model("cnn", 1, 10, generator_seed=0).eval()
    emb = torch.randn(n, model.embedding_dim, generator=g).relu()  # [n, d]
    logits = torch.randn(n, 10, generator=g) * 3
    return PoolInputs(n=n, rng=np.random.default_rng(0), model=model, device=torch.device("cpu"),
                      probs=torch.softmax(logits.double(), 1), logits=logits, embeddings=emb,
                      labeled_embeddings=torch.randn(n_labeled, model.embedding_dim, generator=g).relu())


def syncs_of_select(name: str, k: int, n_labeled: int = 5) -> int:
    inputs = pool_inputs(200, n_labeled)
    strategy = create_strategy(name)
    with SyncCounter() as counter:
        picks = strategy.select(inputs, k)
    assert len(np.unique(picks)) == k
    return counter.syncs


@pytest.mark.parametrize(("name", "n_labeled"), [("core-set", 5), ("core-set", 0), ("badge", 5)])
def test_a_selection_makes_a_constant_number_of_host_syncs(name, n_labeled):
    few, many = syncs_of_select(name, 10, n_labeled), syncs_of_select(name, 50, n_labeled)
    assert few == many  # nothing per pick
    assert many <= 2
