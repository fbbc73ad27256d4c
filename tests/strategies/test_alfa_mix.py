"""ALFA-Mix held to the authors' AlphaMixSampling.query (the same alpha draw and k-means random state on both sides,
tests/fixtures/alfa_mix.npz) and to hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import UserError
from conftest import ROOT
from strategies import PoolInputs, create_strategy
from strategies.alfa_mix import cluster_picks, flip_candidates
from strategies.geometry import kmeans

FIXTURE = ROOT / "tests" / "fixtures" / "alfa_mix.npz"


def _linear(weight: np.ndarray, bias: np.ndarray) -> torch.nn.Linear:
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head


# a: learned alpha (the authors' default), two caps; b: closed form; c: learned, the cap past 0.34 (where Adam's
# step sizes matter) and exactly the budget flipping by 0.4375, which is not more than it: one cap more
@pytest.mark.parametrize(("case", "closed_form"), [("a", False), ("b", True), ("c", False)])
def test_candidates_and_picks_equal_the_authors_alpha_mix_sampling(case, closed_form):
    ref = np.load(FIXTURE, allow_pickle=False)
    arr = {key[2:]: ref[key] for key in ref.files if key.startswith(case + "_")}
    emb, k = torch.from_numpy(arr["embeddings"]), int(arr["budget"])
    candidate = flip_candidates(_linear(arr["weight"], arr["bias"]), emb, torch.from_numpy(arr["labeled_embeddings"]),
                                torch.from_numpy(arr["labeled_labels"]), k,
                                torch.Generator().manual_seed(int(arr["torch_seed"])), float(arr["alpha_cap"]),
                                closed_form)
    pool = candidate.nonzero().flatten().numpy()
    assert pool.tolist() == arr["candidates"].tolist() and k < pool.size < emb.shape[0]  # the set, not the pool
    theirs = pool[cluster_picks(emb[candidate], k, int(arr["kmeans_seed"]), convention="reference")]
    assert theirs.tolist() == arr["picks"].tolist()
    # float64 distances (the default) may take the other member of a cluster of two, both at one distance from
    # their centre in real arithmetic, never a farther one (the clusters themselves are the same k-means fit)
    exact = pool[cluster_picks(emb[candidate], k, int(arr["kmeans_seed"]))]
    feats = torch.nn.functional.normalize(emb[candidate], dim=1).numpy()  # [m, d] as clustered
    km = kmeans(k, int(arr["kmeans_seed"]), 10).fit(feats)
    row = {int(p): i for i, p in enumerate(pool)}

    def dist(picks: np.ndarray) -> np.ndarray:  # [k] float64 squared distances to each pick's own centre
        rows = [row[int(p)] for p in picks]
        diff = feats[rows].astype(np.float64) - km.cluster_centers_[km.labels_[rows]].astype(np.float64)
        return (diff * diff).sum(axis=1)

    assert km.labels_[[row[int(p)] for p in exact]].tolist() == list(range(k))  # one pick per cluster, in order
    assert (dist(exact) <= dist(theirs)).all()


def _mixing_case(x0: list[float], x1: list[float], labeled: list[list[float]], labels: list[int], k: int, seed: int):
    """Two classes split by the sign of the first coordinate: logits (x0, -x0)."""
    emb = torch.tensor([x0, x1], dtype=torch.float32).T.contiguous()  # [n, 2]
    model = torch.nn.Module()
    model.head = _linear(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2))
    inputs = PoolInputs(n=len(x0), rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                        embeddings=emb, labeled_embeddings=torch.tensor(labeled),
                        labeled_labels=torch.tensor(labels))
    return inputs, create_strategy("alfa-mix").select(inputs, k)


def test_a_hand_worked_mix_flips_the_candidates_nearest_the_boundary():
    # Anchors (2, 0) and (-2, 0). A candidate at x0 > 0 mixed with (-2, 0) flips when (1 - a) x0 - 2 a < 0, i.e.
    # a > x0 / (x0 + 2); one Adam step (lr 0.1) takes a to the cap c, so it flips at the first c with
    # x0 < 2c / (1 - c): 0.0645 at c = 1/32 (the two at +-0.05: not more than k = 2, so the cap grows) and 0.133
    # at c = 1/16 (the six at +-0.05, +-0.08, +-0.11: stop). Mixing with its own class's anchor never flips.
    x0 = [0.05, -0.05, 0.08, -0.08, 0.11, -0.11, 0.5, -0.5, 3.0]
    x1 = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0]
    labeled, labels = [[2.0, 0.0], [-2.0, 0.0], [2.0, 0.0]], [0, 1, 0]
    inputs, picks = _mixing_case(x0, x1, labeled, labels, 2, seed=0)
    head, emb = inputs.model.head, inputs.embeddings
    candidate = flip_candidates(head, emb, inputs.labeled_embeddings, inputs.labeled_labels, 2,
                                torch.Generator().manual_seed(0))
    assert candidate.nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]
    # k-means on the unit circle: {+0.05, +0.08, +0.11} up, their mirror images down; each one's middle is nearest
    assert sorted(picks.tolist()) == [2, 3]
    # each run draws its alphas afresh, but the candidates and picks do not depend on the draw here
    assert sorted(_mixing_case(x0, x1, labeled, labels, 2, seed=1)[1].tolist()) == [2, 3]


def test_too_few_flips_are_filled_up_from_inputs_rng():
    # every labeled point is class 0, so every class's anchor is (2, 0): only the candidate predicted class 1 flips
    x0, x1 = [0.5, 1.0, 2.0, -0.5, 4.0], [1.0, 0.0, -1.0, 1.0, 2.0]
    inputs, picks = _mixing_case(x0, x1, [[2.0, 0.0], [2.0, 1.0]], [0, 0], 3, seed=7)
    rng = np.random.default_rng(7)
    rng.integers(2**63 - 1), rng.integers(2**31 - 1)  # the alpha generator's and k-means' seeds
    assert picks.tolist() == [3, *rng.permutation([0, 1, 2, 4])[:2].tolist()]
    assert len(set(picks.tolist())) == 3


def test_the_strategy_draws_from_inputs_rng_and_needs_the_labels():
    strategy = create_strategy("alfa-mix")
    assert strategy.needs == {"embeddings", "labeled_embeddings", "labeled_labels"}
    ref = np.load(FIXTURE, allow_pickle=False)
    model = torch.nn.Module()
    model.head = _linear(ref["a_weight"], ref["a_bias"])
    emb = torch.from_numpy(ref["a_embeddings"])

    def inputs(seed: int) -> PoolInputs:
        return PoolInputs(n=emb.shape[0], rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                          embeddings=emb, labeled_embeddings=torch.from_numpy(ref["a_labeled_embeddings"]),
                          labeled_labels=torch.from_numpy(ref["a_labeled_labels"]))

    rng = np.random.default_rng(3)
    generator, seed = torch.Generator().manual_seed(int(rng.integers(2**63 - 1))), int(rng.integers(2**31 - 1))
    candidate = flip_candidates(model.head, emb, inputs(3).labeled_embeddings, inputs(3).labeled_labels, 20, generator)
    expected = candidate.nonzero().flatten().numpy()[cluster_picks(emb[candidate], 20, seed)]
    picks = strategy.select(inputs(3), 20)
    assert picks.tolist() == expected.tolist() == strategy.select(inputs(3), 20).tolist()
    assert strategy.select(inputs(4), 20).tolist() != picks.tolist()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("alpha_cap", 0.0, "a number in \\(0, 1\\]. Got 0.0"), ("alpha_cap", 1.5, "a number in \\(0, 1\\]. Got 1.5"),
    ("iters", 0, "a positive integer. Got 0"), ("lr", -0.1, "a positive number"),
    ("l2_coef", -1.0, "a number >= 0. Got -1.0"),
    ("n_init", 0, "a positive integer"), ("convention", "float32", "'exact' or 'reference'. Got 'float32'")])
def test_bad_parameters_are_one_line(key, value, message):
    with pytest.raises(UserError, match=f"^The 'alfa-mix.{key}' parameter must be {message}") as err:
        create_strategy("alfa-mix", **{key: value})
    assert "\n" not in str(err.value)
