"""bench.results.picks.pick_problem: what a run writes to selections.parquet passes (picks one cycle ahead of their
rows included: a kill between the two renames), and each thing no run writes is named."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.results.picks import pick_problem

# one job, random/seed0: 3 labels at cycle 0, 2 more at cycle 1
ROWS = pd.DataFrame({"dataset": "digits", "strategy": "random", "seed": 0, "cycle": [0, 1], "n_labeled": [3, 5]})
PICKS = [(0, 0, 7), (0, 1, 2), (0, 2, 5), (1, 0, 1), (1, 1, 0)]  # (cycle, rank, index)


def picks(rows: list[tuple] = PICKS, strategy: str = "random", seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cycle", "rank", "index"]).assign(strategy=strategy, seed=seed)


def test_the_picks_a_run_writes_pass():
    assert pick_problem(picks(), ROWS, n_pool=10) == ""
    assert pick_problem(picks(), ROWS, n_pool=None) == ""
    ahead = picks([*PICKS, (2, 0, 9), (2, 1, 8)])  # cycle 2's picks renamed, its row not yet
    assert pick_problem(ahead, ROWS, n_pool=10) == ""
    first = picks(PICKS[:3])  # a job's cycle 0 picks before its first row
    assert pick_problem(pd.concat([picks(), first.assign(strategy="entropy")]), ROWS, n_pool=10) == ""


@pytest.mark.parametrize(("given", "problem"), [
    (picks([*PICKS, (3, 0, 9)]), "random/seed0 cycle 3 has picks but no row in cycles.parquet"),
    (picks([(0, 0, 7), (0, 1, 2), (1, 0, 1), (1, 1, 0)]), "random/seed0 cycle 0 has 2 picks where its row adds 3"),
    (picks([*PICKS[:3], (1, 0, 1), (1, 1, 0), (1, 2, 4)]), "random/seed0 cycle 1 has 3 picks where its row adds 2"),
    (picks([*PICKS[:4], (1, 1, 10)]), "index 10 outside the training pool (0..9)"),
    (picks([*PICKS[:4], (1, 1, -1)]), "index -1 outside the training pool (0..9)"),
    (picks([*PICKS[:3], (1, 0, 1), (1, 2, 0)]), "random/seed0 cycle 1 has ranks that are not 0..k-1 once each"),
    (picks([*PICKS[:3], (1, 0, 1), (1, 1, 7)]), "pool index 7 picked twice by random/seed0"),
])
def test_what_no_run_writes_is_named(given, problem):
    assert pick_problem(given, ROWS, n_pool=10) == problem


def test_a_number_that_is_not_whole_is_named_first():
    given = picks([*PICKS[:4], (1, 0.5, 0)])
    assert pick_problem(given, ROWS, n_pool=10).endswith(", where a whole number belongs")
    assert pick_problem(given, ROWS, n_pool=10).startswith("rank ")
    assert pick_problem(picks([*PICKS[:4], (1, 1, 10**6)]), ROWS, n_pool=None) == ""  # no pool size: no upper bound
    assert pick_problem(picks([*PICKS[:4], (1, 1, -1)]), ROWS, n_pool=None) == (
        "index -1 outside the training pool (from 0)")


def test_counts_are_not_checked_across_datasets():
    # picks carry no dataset column: with two datasets in one folder, a row's count cannot be matched to its picks
    two = pd.concat([ROWS, ROWS.assign(dataset="mnist", n_labeled=[4, 6])], ignore_index=True)
    assert pick_problem(picks(), two, n_pool=10) == ""
    assert pick_problem(picks(), ROWS.assign(n_labeled=[4, 6]), n_pool=10) == (
        "random/seed0 cycle 0 has 3 picks where its row adds 4")
