"""bench.core.seeding: every stream derives from (seed, purpose) alone; seeded_globals seeds the global generators
for a block and gives them back as they were."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch

from bench.core import seeding


def test_derive_seed_is_the_documented_hash_of_seed_and_purpose():
    # the first 8 bytes of sha256("3/select/2"), little-endian, shifted to 63 bits: the same in every process,
    # whatever PYTHONHASHSEED (no hash()) and whatever ran before (no state)
    digest = hashlib.sha256(b"3/select/2").digest()
    assert seeding.derive_seed(3, "select", 2) == int.from_bytes(digest[:8], "little") >> 1
    assert seeding.derive_seed(3, "select", 2) == seeding.derive_seed(3, "select", "2")  # words, as text
    assert 0 <= seeding.derive_seed(0) < 2**63


def test_distinct_purposes_and_seeds_give_distinct_streams():
    keys = [(seed, *purpose) for seed in range(5) for purpose in (("init-weights",), ("select", 0), ("select", 1),
                                                                  ("subset", 0), ("train", 0))]
    seeds = {seeding.derive_seed(*key) for key in keys}
    assert len(seeds) == len(keys)
    a, b = seeding.numpy_rng(0, "select", 0).random(8), seeding.numpy_rng(0, "select", 1).random(8)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, np.random.default_rng(seeding.derive_seed(0, "select", 0)).random(8))
    x = torch.rand(8, generator=seeding.torch_generator(0, "train", 0))
    assert torch.equal(x, torch.rand(8, generator=torch.Generator().manual_seed(seeding.derive_seed(0, "train", 0))))


def _draw() -> tuple[float, float, float, float]:
    return float(torch.rand(1)), float(np.random.rand()), random.random(), float(torch.randn(1))


def test_seeded_globals_draw_alike_whatever_ran_before_and_restore_the_global_state():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    with seeding.seeded_globals(7, "dropout", 2):
        first = _draw()
    after = _draw()
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    assert _draw() == after  # the block left every global generator where it found it
    _draw()  # other state before the block: the same draws inside it
    with seeding.seeded_globals(7, "dropout", 2):
        assert _draw() == first
    with seeding.seeded_globals(7, "dropout", 3):
        assert _draw() != first


def test_seeded_globals_give_the_state_back_when_the_block_raises():
    before = torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    with pytest.raises(KeyError), seeding.seeded_globals(0, "x"):
        _draw()
        raise KeyError
    assert torch.equal(torch.random.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
