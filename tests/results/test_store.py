"""bench.results.store: read_cycles refuses what no run writes, in one line each; files and folders are replaced
whole (a failed write leaves the previous one); a RunStore's rows, picks, failures and checkpoints come back as
written when the folder is opened again; --force moves a folder's results aside and --fresh deletes them, and
nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.core.errors import UserError
from bench.results import store
from bench.results.store import RESULT_FILES, ResultsError, RunStore, read_cycles
from bench.training.jobs import JobState


def cycle_row(strategy: str = "random", seed: int = 0, cycle: int = 0, n_labeled: int = 3, **changes) -> dict:
    return {"run": "r", "dataset": "digits", "strategy": strategy, "seed": seed, "cycle": cycle,
            "n_labeled": n_labeled, "test_acc": 0.5 + 0.1 * cycle, **changes}


def write_cycles(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / store.CYCLES, index=False)
    return folder


# ---------------------------------------------------------------- read_cycles


def test_read_cycles_returns_the_table_as_stored(tmp_path):
    rows = [cycle_row(), cycle_row(cycle=1, n_labeled=5, test_acc=float("nan"))]  # NaN: an evaluation that failed
    table = read_cycles(write_cycles(tmp_path, rows))
    pd.testing.assert_frame_equal(table, pd.DataFrame(rows))


# \S* around a value: the message shows its repr, which numpy 2 writes as np.float64(1.5)
@pytest.mark.parametrize(("rows", "message"), [
    ([cycle_row(test_acc=1.5)], r"holds values a run never writes \(test_acc \S*1\.5\S* outside 0\.\.1\)"),
    ([cycle_row(test_acc=float("inf"))], r"test_acc \S*inf\S* outside 0\.\.1"),
    ([cycle_row(seed=-1)], r"seed \S*-1\S*, where a whole number from 0 belongs"),
    ([cycle_row(cycle=0.5)], r"cycle \S*0\.5\S*, where a whole number from 0 belongs"),
    ([cycle_row(n_labeled=0)], r"n_labeled \S*0\S*, where a whole number from 1 belongs"),
    ([cycle_row(strategy=" ")], "an empty strategy name"),
    ([cycle_row(seed="one")], "has a value of the wrong type in dataset, strategy, seed"),
    ([cycle_row(), cycle_row(test_acc=0.7)], r"has 1 duplicate row\(s\) for one \(dataset, strategy, seed, cycle\)"),
])
def test_read_cycles_refuses_values_no_run_writes(tmp_path, rows, message):
    with pytest.raises(ResultsError, match=message) as refused:
        read_cycles(write_cycles(tmp_path, rows))
    assert "\n" not in str(refused.value)


def test_read_cycles_refuses_a_missing_unreadable_or_foreign_table(tmp_path):
    with pytest.raises(ResultsError, match="No results to report in .*cycles.parquet does not exist"):
        read_cycles(tmp_path)
    write_cycles(tmp_path, [cycle_row()])
    with pytest.raises(ResultsError, match="is the results file itself: pass its folder"):
        read_cycles(tmp_path / store.CYCLES)
    pd.DataFrame({"strategy": ["a"], "seed": [0]}).to_parquet(tmp_path / store.CYCLES)
    with pytest.raises(ResultsError, match=r"lacks the column\(s\) dataset, cycle, n_labeled, test_acc"):
        read_cycles(tmp_path)
    (tmp_path / store.CYCLES).write_bytes(b"PAR1 not really")
    with pytest.raises(ResultsError, match="cycles.parquet is unreadable as parquet"):
        read_cycles(tmp_path)


def test_read_cycles_refuses_picks_that_do_not_match_the_rows(tmp_path):
    write_cycles(tmp_path, [cycle_row(n_labeled=3)])
    picks = pd.DataFrame({"strategy": "random", "seed": 0, "cycle": 0, "rank": [0, 1], "index": [4, 9]})
    picks.to_parquet(tmp_path / store.SELECTIONS, index=False)
    with pytest.raises(ResultsError, match="holds picks a run never writes .*has 2 picks where its row adds 3"):
        read_cycles(tmp_path)


# ---------------------------------------------------------------- whole files and folders


def test_write_json_is_sorted_indented_and_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    store.write_json(path, {"b": 1, "a": Path("x")})  # default=str: a path is written as its text
    assert path.read_text() == '{\n  "a": "x",\n  "b": 1\n}\n' and store.read_json(path) == {"a": "x", "b": 1}

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(UserError, match="Cannot write .*config.json .No space left on device.: free disk space"):
        store.write_json(path, {"c": 3})
    monkeypatch.undo()
    assert store.read_json(path) == {"a": "x", "b": 1} and [p.name for p in tmp_path.iterdir()] == ["config.json"]
    path.write_text("{not json")
    with pytest.raises(UserError, match="config.json is not readable JSON"):
        store.read_json(path)


def test_atomic_write_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
    report = tmp_path / "report"
    store.atomic_write_folder(report, lambda tmp: (tmp / "a.md").write_text("one"))
    store.atomic_write_folder(report, lambda tmp: (tmp / "b.md").write_text("two"))
    assert sorted(p.name for p in report.iterdir()) == ["b.md"]  # the previous folder is gone, not merged

    def broken(tmp: Path) -> None:
        (tmp / "c.md").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="Cannot write .*report .No space left on device."):
        store.atomic_write_folder(report, broken)
    assert sorted(p.name for p in report.iterdir()) == ["b.md"] and (report / "b.md").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left beside it
    (report / "run").mkdir()
    write_cycles(report / "run", [cycle_row()])
    with pytest.raises(UserError, match="holds the results of a run .*which rewriting it would delete"):
        store.atomic_write_folder(report, lambda tmp: None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="it is a file, not a folder"):
        store.atomic_write_folder(tmp_path / "file", lambda tmp: None)


# ---------------------------------------------------------------- RunStore round trip


def test_rows_and_picks_come_back_when_the_folder_is_opened_again(tmp_path):
    run = RunStore(tmp_path / "run")
    run.add_cycle(cycle_row(), np.array([7, 2, 5]))
    run.add_cycle(cycle_row(cycle=1, n_labeled=5), np.array([1, 0]))
    run.add_cycle(cycle_row("entropy"), np.array([7, 2, 5]))
    again = RunStore(tmp_path / "run")
    pd.testing.assert_frame_equal(again.cycles(), run.cycles())
    assert again.cycles()[["strategy", "cycle"]].values.tolist() == [["random", 0], ["random", 1], ["entropy", 0]]
    picks = pd.read_parquet(tmp_path / "run" / store.SELECTIONS)
    assert picks[picks["strategy"] == "random"][["cycle", "rank", "index"]].values.tolist() == [
        [0, 0, 7], [0, 1, 2], [0, 2, 5], [1, 0, 1], [1, 1, 0]]  # in pick order, ranked from 0
    assert again.done_cycles("random", 0) == {0, 1} and again.done_cycles("entropy", 0) == {0}
    assert again.done_cycles("random", 1) == set()
    again.drop_from("random", 0, 1)
    assert RunStore(tmp_path / "run").done_cycles("random", 0) == {0}  # forgotten on disk, not only in memory


def test_picks_are_written_before_their_row(tmp_path, monkeypatch):
    # a kill between the two renames leaves picks without their row (resumable), never a row without its picks
    written = []
    real = store.atomic_write
    monkeypatch.setattr(store, "atomic_write", lambda path, write: (written.append(path.name), real(path, write)))
    RunStore(tmp_path).add_cycle(cycle_row(), np.array([7, 2, 5]))
    assert written == [store.SELECTIONS, store.CYCLES]


def test_a_checkpoint_comes_back_as_saved_and_an_unreadable_one_as_none(tmp_path):
    run = RunStore(tmp_path)
    assert run.load_checkpoint("random", 0) is None
    state = JobState(2, np.array([7, 2, 5, 1], dtype=np.int64), np.array([5, 1], dtype=np.int64),
                     model={"w": torch.arange(6.0).reshape(2, 3)}, aux=None, config_hash="abc")
    run.save_checkpoint("random", 0, state)
    back = run.load_checkpoint("random", 0)
    assert (back.cycle, back.labeled.tolist(), back.added.tolist(), back.aux, back.config_hash) == (
        2, [7, 2, 5, 1], [5, 1], None, "abc")
    assert back.model.keys() == {"w"} and torch.equal(back.model["w"], state.model["w"])
    assert run.load_checkpoint("random", 1) is None  # another seed's
    (tmp_path / store.CHECKPOINTS / "random__seed0.pt").write_bytes(b"truncated")
    assert run.load_checkpoint("random", 0) is None  # the job restarts from its first cycle
    run.remove_checkpoint("random", 0)
    assert list((tmp_path / store.CHECKPOINTS).iterdir()) == []


def test_config_failures_and_stale_temporary_files(tmp_path):
    run = RunStore(tmp_path)
    assert run.read_config() is None
    run.write_config({"run": "r", "seeds": [0, 1]})
    assert run.read_config() == {"run": "r", "seeds": [0, 1]}
    run.add_failure({"job": "random/seed0", "error": "boom"})
    run.add_failure({"job": "entropy/seed0", "error": "bang"})
    assert json.loads((tmp_path / store.FAILURES).read_text()) == [
        {"error": "boom", "job": "random/seed0"}, {"error": "bang", "job": "entropy/seed0"}]
    run.clear_failures()
    assert not (tmp_path / store.FAILURES).exists()
    (tmp_path / store.CONFIG).write_text("[1, 2]")
    with pytest.raises(UserError, match="is not a run configuration .a JSON object."):
        run.read_config()
    stale = [tmp_path / ".cycles.parquet.abc.tmp", tmp_path / ".report.x.old", tmp_path / "notes.tmp"]
    (tmp_path / store.CHECKPOINTS).mkdir()
    stale.append(tmp_path / store.CHECKPOINTS / ".random__seed0.pt.abc.tmp")
    for path in stale:
        path.write_text("")
    run.remove_stale_temp_files()
    assert [path.exists() for path in stale] == [False, False, True, False]  # a file of the user's stays


# ---------------------------------------------------------------- --force and --fresh


def fill(folder: Path) -> None:
    """Every result file of a folder, and one file of the user's beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        if name in (store.CHECKPOINTS, store.REPORT):
            (folder / name).mkdir()
            (folder / name / "inside").write_text(name)
        else:
            (folder / name).write_text(name)
    (folder / "notes.txt").write_text("mine")


def test_results_are_moved_aside_whole_and_deleted_leaving_the_users_files(tmp_path):
    assert RunStore.results_present(tmp_path) == [] and RunStore.move_results_aside(tmp_path) is None
    fill(tmp_path)
    assert RunStore.results_present(tmp_path) == list(RESULT_FILES)
    aside = RunStore.move_results_aside(tmp_path)
    assert aside.parent == tmp_path and aside.name.startswith("previous-")
    assert sorted(p.name for p in aside.iterdir()) == sorted(RESULT_FILES)
    assert (aside / store.REPORT / "inside").read_text() == store.REPORT and (aside / store.CYCLES).read_text() == (
        store.CYCLES)
    assert RunStore.results_present(tmp_path) == [] and (tmp_path / "notes.txt").read_text() == "mine"
    fill(tmp_path / "again")
    RunStore.delete_results(tmp_path / "again")
    assert [p.name for p in (tmp_path / "again").iterdir()] == ["notes.txt"]
