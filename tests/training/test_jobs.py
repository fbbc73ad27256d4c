"""bench.training.jobs: a JobSpec's key names its strategy and seed, and a JobState survives its checkpoint form,
torch.save and torch.load(weights_only=True), field for field."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from bench.core.config import Protocol
from bench.training.jobs import JobSpec, JobState


def test_a_job_is_keyed_by_strategy_and_seed_and_frozen():
    spec = JobSpec("r", "digits", "learning-loss", 12, Protocol())
    assert spec.key == "learning-loss/seed12"
    assert JobSpec("other", "mnist", "learning-loss", 12, Protocol(), {"margin": 2.0}).key == spec.key
    with pytest.raises(AttributeError):
        spec.seed = 3  # a job's identity does not change under it


def through_disk(payload: dict) -> dict:
    """torch.save, then the only load the store does: weights_only, so nothing is unpickled."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


def test_a_state_comes_back_from_its_checkpoint_form():
    state = JobState(3, np.array([9, 4, 0, 7, 2], dtype=np.int64), np.array([7, 2], dtype=np.int64),
                     model={"conv.weight": torch.randn(2, 3), "fc.bias": torch.zeros(4)},
                     aux={"head.weight": torch.ones(1, 2)}, config_hash="c0ffee")
    back = JobState.from_tensors(through_disk(state.to_tensors()))
    assert (back.cycle, back.config_hash) == (3, "c0ffee")
    assert back.labeled.dtype == back.added.dtype == np.int64
    assert back.labeled.tolist() == [9, 4, 0, 7, 2] and back.added.tolist() == [7, 2]  # labeling order kept
    assert back.model.keys() == state.model.keys() and back.aux.keys() == state.aux.keys()
    assert all(torch.equal(back.model[k], state.model[k]) for k in state.model)
    assert torch.equal(back.aux["head.weight"], state.aux["head.weight"])


def test_a_first_cycle_state_keeps_its_missing_weights_missing():
    state = JobState(0, np.array([5, 1], dtype=np.int64), np.array([5, 1], dtype=np.int64))
    form = state.to_tensors()
    assert form["model"] == {} and form["aux"] == {}  # tensors and plain values only: weights_only reads them
    back = JobState.from_tensors(through_disk(form))
    assert (back.cycle, back.model, back.aux, back.config_hash) == (0, None, None, "")
    assert JobState.from_tensors({k: v for k, v in form.items() if k != "config_hash"}).config_hash == ""

