"""bench.analysis.design: the record of a run's verdict design in config.json, and the rule that a --seeds auto
design which has looked at data is kept (worked by hand on small records)."""

from __future__ import annotations

import pytest

from bench.analysis import design
from bench.core.errors import UserError


def _auto(max_seeds: int, history: list[dict], margin: float = 0.01, stopped: str = "in progress") -> dict:
    """A --seeds auto record as a run writes it, cut down to what the rule reads."""
    return {"baseline": "random", "margin": margin, "design": "sequential", "strategies": ["entropy", "random"],
            "sequential": {"looks": [5, max_seeds], "max_seeds": max_seeds, "history": history, "stopped": stopped}}


def test_a_fixed_record_keeps_the_question_typed_or_the_folders():
    assert design.fixed_analysis(["ll", "entropy", "ll"], None, "random", 0.02) == {
        "baseline": "random", "margin": 0.02, "design": "fixed", "strategies": ["ll", "entropy"]}
    # one strategy named asks nothing of its own: the recorded question stands (non-names in it are dropped)
    prior = {"strategies": ["margin", 3, "random"]}
    assert design.fixed_analysis(["entropy"], prior, "random", 0.01)["strategies"] == ["margin", "random"]
    assert design.fixed_analysis(["entropy"], {"strategies": "margin"}, "random", 0.01)["strategies"] == []


def test_looked_at_reads_the_seeds_of_each_look_and_nothing_else():
    history = [{"seeds": 5}, {"seeds": "7"}, "junk", {"seeds": 8}]
    assert design.looked_at(_auto(10, history)) == [5, 8]
    assert design.looked_at({**_auto(10, history), "design": "fixed"}) == []
    assert design.looked_at({"design": "sequential", "sequential": {"history": "5"}}) == []
    assert design.looked_at(None) == []


def test_describe_by_hand():
    assert design.describe(_auto(12, [], margin=0.005)) == "at most 12 seeds, ±0.5 AULC points, entropy vs random"
    three = {**_auto(6, []), "strategies": ["a", "b", "c"]}
    assert design.describe(three) == "at most 6 seeds, ±1 AULC point, strategies a, b, c"


def test_a_design_that_looked_is_kept_whatever_its_record_gained_since(tmp_path):
    looked = _auto(10, [{"seeds": 5}, {"seeds": 7}], stopped="in progress")
    # the same plan written before any look (no history, another stop reason) is the same design: it resumes
    design.check_design(looked, _auto(10, [], stopped="undecided"), tmp_path)
    for other in (_auto(12, []), _auto(10, [], margin=0.02), {**_auto(10, []), "strategies": ["ll", "random"]},
                  {"baseline": "random", "margin": 0.01, "design": "fixed", "strategies": ["entropy", "random"]}):
        with pytest.raises(UserError) as caught:
            design.check_design(looked, other, tmp_path)
        line = str(caught.value)
        assert "\n" not in line and line.startswith(f"{tmp_path}'s --seeds auto design (at most 10 seeds")
        assert "has looked at 5, 7 seeds" in line
    # nothing looked at, or a fixed folder: any design may follow
    design.check_design(_auto(10, []), _auto(30, []), tmp_path)
    design.check_design({"design": "fixed", "margin": 0.01}, _auto(30, []), tmp_path)
