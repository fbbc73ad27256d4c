"""One question per command: the comparisons a command names are the primary family of its rounds, its console
and its report, in the order typed; the folder's other strategies are context; a sequential design keeps its
margin, its plan and its record; a suite keeps the folders' designs. Synthetic cycles.parquet frames (no
training), apart from the README's two commands in order, run tiny."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis import verdicts as v
from bench.analysis.families import ALL_PAIRS, CONTEXT, PRIMARY, families, question
from bench.analysis.record import stored_design
from bench.core.errors import UserError
from bench.report.layout import analyse_folder, report_folder
from bench.report.suite import write_suite
from bench.results.store import ResultsError
from conftest import TINY

LABELS = [20, 40, 60]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"


def _cycles(lead: dict[str, float], seeds: dict[str, int], acc: float = 0.6, noise: float = 0.004,
            seed: int = 0) -> pd.DataFrame:
    """Curves per strategy `lead` points (fractions) above a shared curve, on seeds 0..seeds[s]-1."""
    rng = np.random.default_rng(seed)
    shared = {n: acc + 0.05 * np.arange(len(LABELS)) + rng.normal(0, 0.01, len(LABELS)) for n in range(40)}
    rows = []
    for strategy, ahead in lead.items():
        for s in range(seeds[strategy]):
            accs = shared[s] + ahead + rng.normal(0, noise, len(LABELS))
            accs[0] = shared[s][0]  # cycle 0 is shared by design
            rows += [{"run": "r", "dataset": "digits", "model": "cnn", "strategy": strategy, "seed": s, "cycle": c,
                      "n_labeled": LABELS[c], "test_acc": float(a), "test_loss": 1.0, "train_seconds": 1.0,
                      "select_seconds": 0.1, "config_hash": "abc", "finished_at": "2025-01-01T00:00:00"}
                     for c, a in enumerate(accs)]
    return pd.DataFrame(rows)


def _folder(path: Path, cycles: pd.DataFrame, config: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cycles.to_parquet(path / "cycles.parquet", index=False)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _plan(max_seeds: int, comparisons: int, margin: float = 0.01) -> v.SequentialPlan:
    return v.make_plan(max_seeds, comparisons, margin=margin)


def _auto_analysis(plan: v.SequentialPlan, named: list[str], history: list[dict] | None = None) -> dict:
    return {"baseline": "random", "margin": plan.margin, "design": "sequential", "strategies": named,
            "sequential": {**plan.to_json(), "max_seeds": plan.looks[-1], "history": history or [],
                           "stopped": "in progress"}}


def _primary(result) -> list[tuple[str, str]]:
    rows = result.verdicts[result.verdicts["family"] == v.PRIMARY]
    return list(zip(rows["strategy"], rows["other"], strict=True))


# ---------------------------------------------------------------- the families, by hand


def test_a_question_against_the_baseline_with_three_or_more_held_has_every_pair_beside_it():
    # asked nothing: every strategy held; the baseline always second
    assert families((), ("random", "entropy", "margin"), "random") == {
        PRIMARY: [("entropy", "random"), ("margin", "random")],
        ALL_PAIRS: [("entropy", "random"), ("margin", "random"), ("entropy", "margin")]}
    # two strategies: the one pair is the question, no family beside it
    assert families((), ("random", "entropy"), "random") == {PRIMARY: [("entropy", "random")]}


def test_without_the_baseline_every_pair_is_the_question_in_the_order_typed():
    assert families(("margin", "entropy", "ll"), ("ll", "entropy", "margin"), "random") == {
        PRIMARY: [("margin", "entropy"), ("margin", "ll"), ("entropy", "ll")]}


def test_strategies_held_but_not_asked_about_are_a_context_family_of_their_own():
    assert families(("ll", "entropy"), ("random", "entropy", "ll"), "random") == {
        PRIMARY: [("ll", "entropy")], CONTEXT: [("ll", "random"), ("entropy", "random")]}
    # the order typed first, then the folder's; the baseline second in every pair
    assert families(("entropy", "random"), ("random", "entropy", "margin"), "random") == {
        PRIMARY: [("entropy", "random")], CONTEXT: [("entropy", "margin"), ("margin", "random")]}


def test_a_command_naming_one_strategy_keeps_the_recorded_question():
    assert question(["ll", "entropy", "ll"], ["random", "entropy"]) == ("ll", "entropy")  # typed, once each
    assert question(["entropy"], ["random", "entropy", "random"]) == ("random", "entropy")
    assert question(["entropy"]) == ()


# ---------------------------------------------------------------- A: the rounds' family is the report's


def test_the_rounds_look_at_the_reports_primary_family(tmp_path):
    from bench.runner import seeds_auto as rounds

    # a fixed run of three strategies at 2 seeds, then --seeds auto of two of them up to 3 seeds
    from bench.runner.resolve import (
        RunOptions,
        build_config,
    )
    cycles = pd.concat([_cycles({"random": 0, "entropy": 0.0, "margin": 0.0}, dict.fromkeys(
        ["random", "entropy", "margin"], 2)), _cycles({"random": 0, "entropy": 0.0}, {"random": 3, "entropy": 3})])
    cycles = cycles.drop_duplicates(["strategy", "seed", "cycle"], keep="last")
    config = build_config("quick", ["random", "entropy"], 3, out=tmp_path / "R")
    options = RunOptions(max_seeds=3)
    plan = rounds.plan_for(config, options)
    _folder(tmp_path / "R", cycles, {"strategies": ["random", "entropy", "margin"]})
    found, history = rounds.look(config, options, plan)
    (tmp_path / "R" / "config.json").write_text(json.dumps(
        {"strategies": ["random", "entropy", "margin"], "analysis": _auto_analysis(plan, ["random", "entropy"],
                                                                                   history)}))
    result = analyse_folder(tmp_path / "R", "random")
    looked = list(zip(found["strategy"], found["other"], strict=True))
    assert _primary(result) == looked == [("entropy", "random")]
    assert result.plan.comparisons == plan.comparisons == len(looked)
    assert result.history == history and history[-1]["seeds"] == 3  # the report sees the look the rounds took
    # margin is context, in a family of its own
    others = result.verdicts[result.verdicts["family"] == v.CONTEXT]
    assert {("entropy", "margin"), ("margin", "random")} <= set(zip(others["strategy"], others["other"], strict=True))
    record = rounds.analysis_record(config, options, plan, history)  # what the rounds write is what was read
    assert record["strategies"] == ["random", "entropy"] and record["sequential"]["comparisons"] == 1


# ---------------------------------------------------------------- B: one margin per sentence


def test_report_refuses_another_margin_than_the_sequential_design_tested(tmp_path):
    plan = _plan(5, 1)
    folder = _folder(tmp_path / "R", _cycles({"random": 0, "entropy": 0.001}, {"random": 5, "entropy": 5}),
                     {"strategies": ["random", "entropy"], "analysis": _auto_analysis(plan, ["random", "entropy"])})
    with pytest.raises(UserError, match=r"±1 AULC point") as caught:
        report_folder(folder, "random", 0.001)
    assert "\n" not in str(caught.value)
    _, lines = report_folder(folder, "random", 0.01)  # its own margin, given again, is fine
    assert any("equivalent within ±1 point" in x for x in lines)


# ---------------------------------------------------------------- C: a stored plan no run writes is refused


@pytest.mark.parametrize("edit", [{"looks": []}, {"nominal": 1.5}, {"nominal": 0.2}, {"comparisons": 0},
                                  {"looks": [5, 3]}, {"alpha": 2}, {"margin": -1}, {"looks": ["x"]},
                                  {"comparisons": True}])
def test_a_stored_plan_no_run_writes_is_refused_in_one_line(tmp_path, edit):
    analysis = _auto_analysis(_plan(5, 1), ["random", "entropy"])
    analysis["sequential"].update(edit)
    folder = _folder(tmp_path / "R", _cycles({"random": 0, "entropy": 0.01}, {"random": 5, "entropy": 5}),
                     {"strategies": ["random", "entropy"], "analysis": analysis})
    with pytest.raises(ResultsError) as caught:
        report_folder(folder, "random")
    assert "\n" not in str(caught.value) and "config.json" in str(caught.value)


@pytest.mark.parametrize("edit", [{"strategies": "entropy"}, {"strategies": [1, 2]}, {"design": "bayes"},
                                  {"baseline": 3}, {"margin": 0.02}])
def test_an_analysis_section_no_run_writes_is_refused_in_one_line(tmp_path, edit):
    analysis = {**_auto_analysis(_plan(5, 1), ["random", "entropy"]), **edit}
    folder = _folder(tmp_path / "R", _cycles({"random": 0, "entropy": 0.01}, {"random": 5, "entropy": 5}),
                     {"strategies": ["random", "entropy"], "analysis": analysis})
    with pytest.raises(ResultsError) as caught:
        stored_design(folder)
    assert "\n" not in str(caught.value)


def test_a_plan_for_another_family_than_the_reports_is_refused(tmp_path):
    # a plan for 1 comparison, recorded beside a question of 2
    analysis = _auto_analysis(_plan(5, 1), ["random", "entropy", "margin"])
    folder = _folder(tmp_path / "R", _cycles(dict.fromkeys(["random", "entropy", "margin"], 0.0),
                                             dict.fromkeys(["random", "entropy", "margin"], 5)),
                     {"strategies": ["random", "entropy", "margin"], "analysis": analysis})
    with pytest.raises(UserError, match="comparison"):
        report_folder(folder, "random")


# ---------------------------------------------------------------- D: the design kept, its advice honest


def test_another_design_into_a_folder_whose_rounds_looked_is_refused_in_one_line(tmp_path):
    from bench.analysis.design import check_design

    looked = _auto_analysis(_plan(6, 1), ["random", "entropy"], [{"seeds": 5, "decided": [], "undecided": ["x"]}])
    same = _auto_analysis(_plan(6, 1), ["random", "entropy"])
    check_design(looked, same, tmp_path)  # the same design resumes
    for other in (_auto_analysis(_plan(10, 1), ["random", "entropy"]),
                  _auto_analysis(_plan(6, 1, margin=0.02), ["random", "entropy"]),
                  {"baseline": "random", "margin": 0.01, "design": "fixed", "strategies": ["random", "entropy"]}):
        with pytest.raises(UserError, match="looked at 5 seeds") as caught:
            check_design(looked, other, tmp_path)
        assert "\n" not in str(caught.value) and "raise --max-seeds" not in str(caught.value)
    # a design that has looked at nothing may be replaced; a fixed folder may go on in rounds
    check_design(same, _auto_analysis(_plan(10, 1), ["random", "entropy"]), tmp_path)
    check_design({"baseline": "random", "margin": 0.01, "design": "fixed"}, same, tmp_path)


def test_an_undecided_end_does_not_advise_raising_the_maximum(tmp_path):
    plan = _plan(5, 1)
    history = [{"seeds": 5, "decided": [], "undecided": ["entropy vs random"]}]
    folder = _folder(tmp_path / "R", _cycles({"random": 0, "entropy": 0.004}, {"random": 5, "entropy": 5},
                                             noise=0.03),
                     {"strategies": ["random", "entropy"], "analysis": _auto_analysis(plan, ["random", "entropy"],
                                                                                      history)})
    _, lines = report_folder(folder, "random")
    text = "\n".join(lines)
    assert "undecided at --max-seeds 5" in text
    assert "raise --max-seeds" not in text and "report it as undecided" in text


# ---------------------------------------------------------------- G: suites keep the design


def test_a_suite_uses_the_margin_given_and_refuses_sequential_folders(tmp_path):
    lead = {"random": 0.0, "entropy": 0.003}
    folders = [_folder(tmp_path / name, _cycles(lead, {"random": 6, "entropy": 6}, seed=i),
                       {"strategies": ["random", "entropy"]}) for i, name in enumerate(["a", "b"])]
    _, wide = write_suite(folders, "random", tmp_path / "S", margin=0.05)
    assert all("within ±5 points" in x for x in wide if x.startswith("primary") and "equivalent" in x)
    assert any("equivalent within ±5 points" in x for x in wide)
    # folders of other margins need one given
    (folders[1] / "config.json").write_text(json.dumps({"strategies": ["random", "entropy"], "analysis": {
        "baseline": "random", "margin": 0.02, "design": "fixed"}}))
    with pytest.raises(UserError, match="margin"):
        write_suite(folders, "random", tmp_path / "S")
    # a folder whose rounds decided (or left undecided) its comparisons is not re-tested with the fixed design
    (folders[1] / "config.json").write_text(json.dumps({"strategies": ["random", "entropy"], "analysis":
                                                        _auto_analysis(_plan(6, 1), ["random", "entropy"])}))
    with pytest.raises(UserError, match="--seeds auto") as caught:
        write_suite(folders, "random", tmp_path / "S", margin=0.01)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- M: at chance, no comparison is equivalent


def test_models_at_chance_at_every_budget_are_never_called_equivalent(tmp_path):
    cycles = _cycles({"random": 0.0, "entropy": 0.0005}, {"random": 6, "entropy": 6}, acc=0.1, noise=0.001)
    cycles["test_acc"] = 0.11 + (cycles["test_acc"] - cycles["test_acc"].mean()) * 0.05  # every budget near 11%
    folder = _folder(tmp_path / "R", cycles, {"strategies": ["random", "entropy"],
                                              "dataset": {"classes": [str(i) for i in range(10)]}})
    result = analyse_folder(folder, "random")
    row = result.verdicts.iloc[0]
    assert -0.01 < row["ci_low"] and row["ci_high"] < 0.01  # the interval alone would say equivalent
    assert row["verdict"] == v.UNDECIDED
    _, lines = report_folder(folder, "random")
    assert any(x.startswith("primary") and "the protocol cannot tell" in x for x in lines)


# ---------------------------------------------------------------- M: the docs say what the console prints


def test_the_console_lines_the_docs_promise_are_those_the_report_prints(tmp_path):
    paragraph = DOCS.read_text().split("The console shows the headline", 1)[1].split("\n\n", 1)[0]
    promised = set(re.findall(r"`(\w+)` line", paragraph))
    plan = _plan(5, 1)
    history = [{"seeds": 5, "decided": [], "undecided": ["entropy vs random"]}]
    cycles = _cycles({"random": 0, "entropy": 0.004}, {"random": 5, "entropy": 5})
    cycles.loc[cycles["cycle"] < 2, "test_acc"] = 0.1  # two budgets at chance: a caution line
    folder = _folder(tmp_path / "R", cycles, {"strategies": ["random", "entropy"], "dataset": {
        "classes": [str(i) for i in range(10)]}, "analysis": _auto_analysis(plan, ["random", "entropy"], history)})
    _, lines = report_folder(folder, "random")
    printed = {x.split()[0] for x in lines}
    assert promised == printed == {"primary", "caution", "seeds"}
    # the Wilcoxon test is promised where a table shows it: beside the per-budget tests, not the primary one
    text = DOCS.read_text()
    primary = next(x for x in text.split("\n- ") if x.startswith("**Primary endpoint:**"))
    assert "Wilcoxon" not in primary
    assert "Wilcoxon p" in (folder / "report" / "report.md").read_text()
    assert "Wilcoxon" in next(x for x in text.split("\n- ") if x.startswith("**Secondary"))


# ---------------------------------------------------------------- K, M: the README's two commands, in order


def test_the_second_command_answers_its_own_question_in_the_order_typed(cli, tmp_path):
    out_dir = tmp_path / "quick"
    small = [*TINY[:-2], "--out", out_dir]
    status, _, err = cli("--strategies", "random", "entropy", "ll", "--seeds", "2", *small)
    assert status == 0, err
    status, out, err = cli("--strategies", "ll", "entropy", "--seeds", "3", *small)
    assert status == 0, err
    lines = out.splitlines()
    compare = next(x for x in lines if x.startswith("compare   "))
    assert "learning-loss vs entropy" in compare and "context" in compare
    primary = [x for x in lines if x.startswith("primary   ")]
    assert len(primary) == 1 and primary[0].startswith("primary   learning-loss vs entropy: ")
    # the sign is learning loss minus entropy, over the 3 seeds both ran
    rows = pd.read_parquet(out_dir / "cycles.parquet")
    aulc = {}
    for (strategy, seed), curve in rows.groupby(["strategy", "seed"]):
        curve = curve.sort_values("n_labeled")
        x, y = curve["n_labeled"].to_numpy(float), curve["test_acc"].to_numpy(float)
        aulc[strategy, seed] = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))
    diff = np.mean([aulc["learning-loss", s] - aulc["entropy", s] for s in range(3)])
    shown = float(re.search(r": ([+-]?\d+\.\d) AULC points", primary[0]).group(1))
    assert math.isclose(shown, round(100 * diff, 1), abs_tol=0.051)
    report = (out_dir / "report" / "report.md").read_text()
    assert "**learning-loss** vs entropy" in report
