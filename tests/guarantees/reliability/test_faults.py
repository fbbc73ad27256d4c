"""Faults: SIGKILL during training, during selection and while the store is written; SIGINT; a full disk;
jobs that run out of memory, diverge or lose their worker process. After each, the finished cycles are
intact and re-running the same command completes with results equal to an uninterrupted run (every
non-timing column of cycles.parquet and all of selections.parquet).

The runs pause at exact points through fault_injection.py (see its docstring). The scenarios (scenarios.py)
start in the background at the beginning of the session; each test here waits for its own."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
from launch import in_process

from .scenarios import INTERRUPTIONS, Observed
from .support import (
    REFERENCE,
    REFERENCE_ROWS,
    assert_same_results,
    one_error_line,
    rows,
    snapshot,
    temp_files,
)

# ---------------------------------------------------------------------------------------------- a full disk


def _fail_writes(monkeypatch, target: str, nth: int, folder: Path, before: dict) -> None:
    """Make the nth write of `target` (parquet or checkpoint) fail with ENOSPC after writing a few bytes; keep in
    `before` the folder as it was just then (the temporary file aside)."""
    import torch

    calls = []
    original = pd.DataFrame.to_parquet if target == "parquet" else torch.save

    def failing(obj, path, *args, **kwargs):
        calls.append(str(path))
        if len(calls) == nth:
            before.update({k: v for k, v in snapshot(folder).items() if not k.endswith(".tmp")})
            Path(path).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(obj, path, *args, **kwargs)

    if target == "parquet":
        monkeypatch.setattr(pd.DataFrame, "to_parquet", failing)
    else:
        monkeypatch.setattr(torch, "save", failing)


@pytest.mark.parametrize("target, nth, failed_file", [
    ("parquet", 7, "selections.parquet"),  # the first write of the 4th cycle
    ("parquet", 8, "cycles.parquet"),  # its second write: selections.parquet already holds the new picks
    ("checkpoint", 2, "random__seed0.pt"),  # the checkpoint after the 2nd cycle
], ids=["selections", "cycles", "checkpoint"])
def test_a_full_disk_is_one_clear_error_and_leaves_the_previous_files(target, nth, failed_file, tmp_path, capsys,
                                                                      monkeypatch, reference):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs (OMP_NUM_THREADS=1), for the same numbers
    try:
        folder, before = tmp_path / "run", {}
        with monkeypatch.context() as patch:
            _fail_writes(patch, target, nth, folder, before)
            code = in_process(*REFERENCE, "--jobs", "1", "--out", folder)
        line = one_error_line(capsys.readouterr().err)
        assert code == 2
        assert line.startswith(f"error: Cannot write {folder}") and failed_file in line, line
        assert "(No space left on device)" in line and "run the same command again to resume" in line
        assert before and snapshot(folder) == before  # the file being replaced is the previous one, byte for byte
        pd.read_parquet(folder / "cycles.parquet")  # and whole
        pd.read_parquet(folder / "selections.parquet")
        code = in_process(*REFERENCE, "--jobs", "1", "--out", folder)  # disk space freed: the same command resumes
        assert code == 0, capsys.readouterr().err
        assert_same_results(folder, reference)
    finally:
        torch.set_num_threads(threads)


def test_a_full_disk_while_writing_the_report_is_one_clear_error(reference, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    before = snapshot(folder)

    def full(result, folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("bench.report.layout.write_analysis", full)
    assert in_process(*REFERENCE, "--jobs", "1", "--out", folder) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Cannot write the report" in line and "(No space left on device)" in line
    assert f"run `run_bench.py report {folder}`" in line
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k != "config.json"} == {k: v for k, v in before.items()
                                                                       if k != "config.json"}


def test_results_files_get_the_permissions_of_any_new_file(reference):
    """Temp-file-and-rename must not leave mkstemp's owner-only mode on results meant to be shared."""
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for name in ("cycles.parquet", "selections.parquet", "config.json"):
        assert stat.S_IMODE((reference / name).stat().st_mode) == 0o666 & ~umask, name


def test_stale_temp_files_of_a_killed_write_are_removed_on_resume(reference, tmp_path, capsys):
    """What a SIGKILL mid-write leaves (a temporary file beside its target) is cleaned by the next run,
    under the lock, once the configuration check passed; the results are untouched."""
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    for stale in (".cycles.parquet.abc123.tmp", "checkpoints/.random__seed0.pt.def456.tmp"):
        (folder / stale).write_bytes(b"half")
    before = (folder / "cycles.parquet").read_bytes(), (folder / "selections.parquet").read_bytes()
    assert in_process(*REFERENCE, "--jobs", "1", "--out", folder) == 0, capsys.readouterr().err
    assert "resume    4 of 4 jobs already finished" in capsys.readouterr().out
    assert temp_files(folder) == []
    assert ((folder / "cycles.parquet").read_bytes(), (folder / "selections.parquet").read_bytes()) == before


# ---------------------------------------------------------------------------------------------- signals


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.scenario(c.id)) for c in INTERRUPTIONS])
def test_interrupted_run_keeps_finished_cycles_and_resumes_to_the_same_results(case, fault_scenarios, reference):
    seen: Observed = fault_scenarios[case.id].result()
    sizes = seen.at_signal["sizes"]
    assert sizes in case.on_disk
    after = seen.after_signal
    if case.sig == signal.SIGKILL:
        assert after["code"] == -signal.SIGKILL
    else:  # SIGINT: a clean stop, one line, nothing half-written left behind
        assert after["code"] == 130, after["stderr"]
        line = one_error_line(after["stderr"])
        assert line.startswith("interrupted:") and "run the same command again to resume" in line
        assert after["temp"] == []
    # The finished cycles are there, whole (both tables read back) and not one more or less.
    assert after["sizes"] == sizes
    if case.second_writer:
        code, stderr, files = seen.second_writer
        assert code == 2 and "is in use by another process" in one_error_line(stderr)
        assert files == seen.at_signal["files"], "the refused second process changed the folder"
    code, stdout, stderr = seen.resume
    assert code == 0, stderr
    assert_same_results(seen.folder, reference)
    assert temp_files(seen.folder) == [] and not list((seen.folder / "checkpoints").glob("*"))
    jobs_done = min(sizes) // 3  # the reference's jobs have 3 cycles each, run one after another
    assert f"resume    {jobs_done} of 4 jobs already finished" in stdout


@pytest.mark.scenario("random-sigkills")
def test_random_sigkills_then_resume_gives_the_same_results(fault_scenarios, reference):
    seen: Observed = fault_scenarios["random-sigkills"].result()
    kills = seen.after_signal["kills"]
    assert len(kills) == 5
    mid_run = [k for k in kills if k["code"] == -signal.SIGKILL and k["sizes"][0] < REFERENCE_ROWS]
    assert len(mid_run) >= 3, kills  # most kills landed before the end of the run
    sizes = [k["sizes"][0] for k in kills]
    # Each kill keeps what the previous runs finished, but for at most the one cycle in flight (a row whose
    # checkpoint was not yet written is recomputed, identically).
    assert all(b >= a - 1 for a, b in zip(sizes, sizes[1:], strict=False)), kills
    code, _, stderr = seen.resume
    assert code == 0, stderr
    assert_same_results(seen.folder, reference)
    assert temp_files(seen.folder) == []


# ---------------------------------------------------------------------------------------------- failing jobs


@pytest.mark.scenario("failing-jobs")
def test_out_of_memory_and_nan_loss_are_recorded_while_the_others_finish(fault_scenarios):
    seen: Observed = fault_scenarios["failing-jobs"].result()
    first = seen.after_signal
    assert first["code"] == 1, first["stderr"]
    assert first["stderr"].strip().splitlines()[-1].startswith("failed    2 job(s): test-oom/seed0, test-nan/seed0")
    assert "Traceback" not in first["stderr"]
    errors = {f["job"]: f for f in first["failures"]}
    assert set(errors) == {"test-oom/seed0", "test-nan/seed0"}
    assert errors["test-oom/seed0"]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert errors["test-nan/seed0"]["error"].startswith("TrainingDiverged: training loss became nan at epoch 1")
    assert all("Traceback" in f["traceback"] for f in errors.values())
    done = first["rows"].groupby("strategy")["cycle"].apply(list).to_dict()
    assert done == {"random": [0, 1, 2], "test-oom": [0]}  # random finished; test-oom's first cycle is kept
    # The same command without the fault resumes the failed jobs and finishes; the failures file goes.
    code, stdout, stderr = seen.resume
    assert code == 0, stderr
    assert "resume    1 of 3 jobs already finished" in stdout
    assert not (seen.folder / "failures.json").exists()
    final = rows(seen.folder)
    assert final.groupby("strategy")["cycle"].apply(list).to_dict() == {
        "random": [0, 1, 2], "test-nan": [0, 1, 2], "test-oom": [0, 1, 2]}
    raw = pd.read_parquet(seen.folder / "cycles.parquet")
    kept = first["raw"].sort_values(["strategy", "cycle"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(raw.iloc[: len(kept)].sort_values(["strategy", "cycle"]).reset_index(drop=True),
                                  kept)  # finished rows are not rewritten, timing columns included


@pytest.mark.scenario("dead-worker")
def test_a_worker_killed_by_the_os_fails_its_job_only(fault_scenarios):
    seen: Observed = fault_scenarios["dead-worker"].result()
    first = seen.after_signal
    assert first["code"] == 1, first["stderr"]
    assert "Traceback" not in first["stderr"]
    assert [f["job"] for f in first["failures"]] == ["test-killed/seed0"]
    assert first["failures"][0]["error"].startswith("worker lost: TerminatedWorkerError")
    done = first["rows"].groupby("strategy")["cycle"].apply(list).to_dict()
    assert done == {"entropy": [0, 1, 2], "random": [0, 1, 2]}


