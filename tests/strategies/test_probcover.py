"""ProbCover against the authors' code (a golden fixture, tests/fixtures/README.md) and against a dense brute
force written from the paper's definitions; its switches on both sides; its parameter checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_geometry import random_inputs

import strategies.probcover as probcover
from bench.core.errors import UserError
from strategies import create_strategy
from strategies.base import StrategyOutputError
from strategies.probcover import DELTA_GRID, delta_graph, greedy_cover, pure_delta
from strategies.typiclust import normalised

FIXTURE = Path(__file__).parents[1] / "fixtures" / "probcover_reference.npz"


def brute_cover(x: np.ndarray, n_labeled: int, k: int, delta: float, closed: bool, when_covered: str) -> list[int]:
    """Dense: the full [N, N] distance matrix from explicit differences, recounted for every pick."""
    x = x / np.sqrt((x * x).sum(1, keepdims=True))
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    edge = dist <= delta if closed else dist < delta
    covered = edge[:n_labeled].any(0)
    picks: list[int] = []
    for _ in range(k):
        degree = (edge & ~covered[None]).sum(1)
        cur = int(np.argmax(degree))
        if degree[cur] == 0 and when_covered == "next":
            cur = next(i for i in range(n_labeled, len(x)) if i not in picks)
        picks.append(cur)
        covered |= edge[cur]
    return picks


def fixture_case(case: str) -> tuple[torch.Tensor, int, int, float, np.ndarray, int]:
    f = np.load(FIXTURE, allow_pickle=False)
    return (normalised(torch.from_numpy(f[f"{case}_features"])), int(f[f"{case}_n_labeled"]),
            int(f[f"{case}_budget"]), float(f[f"{case}_delta"]), f[f"{case}_picks"], int(f[f"{case}_n_edges"]))


@pytest.mark.parametrize("case", ["a", "b"])
def test_graph_and_picks_equal_the_authors_probcover(case):
    """The authors' ProbCover (construct_graph, select_samples) built this many edges and picked these rows;
    case b covers everything before its budget, where the authors re-pick row 0 (when_covered=reference)."""
    x, n_labeled, k, delta, want, n_edges = fixture_case(case)
    xs, ys = delta_graph(x, delta)
    assert len(xs) == n_edges
    np.testing.assert_array_equal(greedy_cover(xs, ys, len(x), n_labeled, k, "reference"), want)


def test_next_differs_from_the_authors_only_once_all_is_covered():
    x, n_labeled, k, delta, want, _ = fixture_case("b")
    picks = greedy_cover(*delta_graph(x, delta), len(x), n_labeled, k, "next")
    first_repick = int(np.flatnonzero(want == 0)[0])
    np.testing.assert_array_equal(picks[:first_repick], want[:first_repick])
    rest = [i for i in range(n_labeled, len(x)) if i not in set(want[:first_repick].tolist())]
    assert picks[first_repick:].tolist() == rest[:k - first_repick]  # the lowest rows not yet picked


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("when_covered", ["next", "reference"])
def test_picks_equal_a_dense_brute_force(closed, when_covered, monkeypatch):
    monkeypatch.setattr(probcover, "BLOCK_ELEMENTS", 7 * 60)  # 7-row blocks: the chunked path, not one block
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    xs, ys = delta_graph(normalised(torch.from_numpy(x)), 0.5, closed)
    picks = greedy_cover(xs, ys, 60, 5, 30, when_covered)
    assert picks.tolist() == brute_cover(x, 5, 30, 0.5, closed, when_covered)


def test_closed_switch_takes_points_exactly_delta_apart():
    x = normalised(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # exactly 2 apart
    assert len(delta_graph(x, 2.0, closed=False)[0]) == 2  # each covers only itself: the authors' <
    assert len(delta_graph(x, 2.0, closed=True)[0]) == 4


def test_pure_delta_is_the_largest_grid_value_with_95_percent_pure_balls():
    rng = np.random.default_rng(2)
    x = normalised(torch.from_numpy(rng.normal(size=(200, 4))))
    labels = (x[:, 0] > 0).numpy().astype(np.int64)
    dist = torch.cdist(x, x).numpy()
    other = np.where(labels[:, None] != labels[None], dist, np.inf).min(1)  # nearest point of another label
    purity = [(other >= g).mean() for g in DELTA_GRID]
    want = max(g for g, p in zip(DELTA_GRID, purity, strict=True) if p >= 0.95)
    assert pure_delta(x, labels) == pytest.approx(want)
    assert pure_delta(x, labels) < DELTA_GRID[-1]  # the rule is binding here, not the grid's end


@pytest.mark.parametrize("delta", ["0.3", "auto"])
def test_strategy_picks_distinct_candidates(delta):
    picks = create_strategy("probcover", delta=delta).select(random_inputs(200, 10, 0), 40)
    assert len(set(picks.tolist())) == 40 and picks.min() >= 0 and picks.max() < 200


def test_reference_repick_fails_in_one_line_next_goes_on():
    big = random_inputs(50, 5, 0)
    with pytest.raises(StrategyOutputError, match="when_covered=next"):
        create_strategy("probcover", delta=1.5, when_covered="reference").select(big, 20)
    assert len(set(create_strategy("probcover", delta=1.5).select(big, 20).tolist())) == 20


@pytest.mark.parametrize("delta", [0, -0.5, "0", "abc", "nan", "inf", True])
def test_bad_delta_is_one_line(delta):
    with pytest.raises(UserError, match="'probcover.delta' parameter must be a positive number or 'auto'"):
        create_strategy("probcover", delta=delta)


def test_bad_delta_on_the_command_line_exits_2(cli, tmp_path):
    status, _, err = cli("--strategies", "probcover", "--strategy-param", "probcover.delta=0", "--epochs", "1",
                         "--out", tmp_path / "out")
    assert status == 2 and err.count("\n") == 1 and "'probcover.delta' parameter" in err, err
    assert not (tmp_path / "out").exists()


def test_bad_when_covered_is_one_line():
    with pytest.raises(UserError, match="'probcover.when_covered' parameter must be one of next, reference"):
        create_strategy("probcover", when_covered="row0")


def test_edges_are_decided_in_float64_beside_delta():
    """Two points at delta * (1 -+ 1e-9) from a third: float32 cannot tell the distances apart, float64 can."""
    delta = 0.5
    angles = [0.0, 2 * np.arcsin(delta * (1 - 1e-9) / 2), -2 * np.arcsin(delta * (1 + 1e-9) / 2)]
    x = torch.tensor([[np.cos(a), np.sin(a)] for a in angles], dtype=torch.float64)
    xs, ys = delta_graph(x, delta)
    assert ys[xs == 0].tolist() == [0, 1]
