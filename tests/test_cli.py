"""The command line end to end on tiny protocols: output files, determinism, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from launch import run_cli

from bench.results.lock import FolderLock
from bench.training.loop import candidates
from conftest import ROOT, TINY, one_line


def test_run_writes_the_store(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    status, stdout, _ = cli("--strategies", "entropy", "random", "--dataset", f"npz:{tiny_npz}", *TINY,
                            "--seeds", "2", "--subset", "100", "--out", out)
    assert status == 0
    assert f"dataset   npz:{tiny_npz}: 200 train / 80 test images" in stdout and "Test accuracy" in stdout
    cycles = pd.read_parquet(out / "cycles.parquet")
    assert len(cycles) == 2 * 2 * 3
    assert sorted(cycles["n_labeled"].unique()) == [20, 40, 60]
    for column in ("run", "dataset", "model", "strategy", "seed", "cycle", "n_labeled", "test_acc", "test_loss",
                   "train_seconds", "select_seconds", "config_hash", "finished_at"):
        assert column in cycles.columns, column
    assert cycles["test_acc"].between(0, 1).all()
    hashes = cycles.groupby("strategy")["config_hash"].unique()  # one identity per strategy's jobs
    assert hashes.map(len).tolist() == [1, 1] and hashes["entropy"][0] != hashes["random"][0]
    selections = pd.read_parquet(out / "selections.parquet")
    # Each job's rows rebuild its labeled sets: 20 initial + 20 + 20 distinct indices.
    for (_, _), rows in selections.groupby(["strategy", "seed"]):
        assert len(rows) == 60 and rows["index"].nunique() == 60
        assert rows.groupby("cycle").size().tolist() == [20, 20, 20]
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"]["initial"] == 20 and config["versions"]["torch"]
    assert config["git_commit"] and config["dataset"]["n_train"] == 200
    assert config["job_hashes"] == {s: h[0] for s, h in hashes.items()} and len(config["dataset_fingerprint"]) == 16


def test_same_command_twice_gives_identical_results(cli, tmp_path, tiny_npz):
    args = ["--strategies", "margin", "random", "--dataset", f"npz:{tiny_npz}", *TINY]
    assert cli(*args, "--out", tmp_path / "a")[0] == 0
    assert cli(*args, "--out", tmp_path / "b")[0] == 0
    a, b = (pd.read_parquet(tmp_path / d / "cycles.parquet") for d in ("a", "b"))
    pd.testing.assert_series_equal(a["test_acc"], b["test_acc"])
    sa, sb = (pd.read_parquet(tmp_path / d / "selections.parquet") for d in ("a", "b"))
    pd.testing.assert_frame_equal(sa, sb)


def test_dry_run_prints_the_protocol_and_jobs_and_writes_nothing(cli, tmp_path):
    status, stdout, _ = cli("--preset", "paper", "--dry-run", "--strategies", "entropy", "--seeds", "2",
                            "--out", tmp_path / "x")
    assert status == 0
    assert "dataset   cifar10: not loaded (cifar-10-batches-bin is not under data); a run downloads it" in stdout
    assert "model     resnet18" in stdout
    assert "initial 1000, budget 1000, cycles 10" in stdout and "subset 10000" in stdout
    assert "200 epochs, batch 128, SGD lr 0.1 momentum 0.9 weight decay 0.0005, milestones [160]" in stdout
    assert "job       entropy/seed1" in stdout
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("given", ["all", "0"])
def test_subset_all_scores_the_whole_pool_and_a_protocol_option_not_given_keeps_the_preset(cli, tmp_path, given):
    from bench.cli import build_parser
    from bench.core.config import preset_protocol

    args = build_parser().parse_args(["--preset", "paper", "--subset", given])
    assert args.subset is None and not hasattr(args, "epochs")  # one sentinel; what was not given is absent
    assert preset_protocol("paper", subset=args.subset).subset is None
    assert preset_protocol("paper").subset == 10000
    unlabeled = np.setdiff1d(np.arange(50), [3, 7])
    assert candidates(np.arange(50), np.array([3, 7]), None).tolist() == unlabeled.tolist()
    status, stdout, _ = cli("--preset", "paper", "--dry-run", "--strategies", "entropy", "--subset", given,
                            "--out", tmp_path / "x")
    assert status == 0 and "subset whole pool" in stdout


def test_dry_run_checks_the_data_and_the_pool_before_saying_yes(cli, tmp_path, tiny_npz):
    out = tmp_path / "x"
    status, stdout, _ = cli("--dry-run", "--dataset", f"npz:{tiny_npz}", *TINY, "--out", out)
    assert status == 0 and f"dataset   npz:{tiny_npz}: " in stdout and " train / " in stdout
    # what a run would refuse after loading the data, the dry run refuses too
    status, _, err = cli("--dry-run", "--dataset", f"npz:{tiny_npz}", *TINY, "--initial", "100000", "--out", out)
    assert status == 2 and "must be smaller than the training pool" in err
    status, _, err = cli("--dry-run", "--dataset", "mnist", "--no-download", "--data-root", tmp_path, "--out", out)
    assert status == 2 and "mnist is not under" in err
    assert not out.exists()


@pytest.mark.parametrize(("preset", "epochs", "milestones", "detach"), [
    ("quick", 200, "[160]", 120), ("paper", 200, "[160]", 120), ("blog", 40, "none", 24),
])
def test_dry_run_resolves_the_schedule_to_epochs_and_states_its_proportions(cli, tmp_path, preset, epochs,
                                                                             milestones, detach):
    status, stdout, _ = cli("--preset", preset, "--dry-run", "--strategies", "ll", "--out", tmp_path / "x")
    assert status == 0
    assert f"{epochs} epochs" in stdout and f"milestones {milestones} (x0.1)" in stdout
    assert f"learning-loss: detach_after={detach}," in stdout
    fraction = "[0.8]" if milestones != "none" else "[]"
    assert f"schedule  milestones at {fraction} of {epochs} epochs, learning-loss.detach_after at 0.6 of" in stdout
    # proportions follow --epochs; whole epochs stay whole epochs
    status, stdout, _ = cli("--preset", preset, "--dry-run", "--strategies", "ll", "--epochs", "50",
                            "--milestones", "0.5", "30", "--out", tmp_path / "x")
    assert "milestones [25, 30] (x0.1)" in stdout and "detach_after=30," in stdout
    assert "milestones at [0.5, 0.6] of 50 epochs" in stdout


def test_entropy_results_do_not_depend_on_bald_running_beside_it(cli, tmp_path, tiny_npz):
    args = ["--dataset", f"npz:{tiny_npz}", *TINY, "--subset", "100"]
    assert cli("--strategies", "entropy", *args, "--out", tmp_path / "alone")[0] == 0
    assert cli("--strategies", "entropy", "bald", *args, "--out", tmp_path / "beside")[0] == 0
    alone = pd.read_parquet(tmp_path / "alone" / "cycles.parquet")
    beside = pd.read_parquet(tmp_path / "beside" / "cycles.parquet")
    beside = beside[beside["strategy"] == "entropy"].reset_index(drop=True)
    for column in ("cycle", "n_labeled", "test_acc", "test_loss", "train_loss"):
        pd.testing.assert_series_equal(alone[column], beside[column])
    picks = [pd.read_parquet(tmp_path / d / "selections.parquet") for d in ("alone", "beside")]
    assert picks[0]["index"].tolist() == picks[1][picks[1]["strategy"] == "entropy"]["index"].tolist()


def test_list_strategies(cli):
    status, stdout, _ = cli("--list-strategies")
    assert status == 0 and "least-confidence (lc)" in stdout and "random" in stdout


def test_list_datasets_names_every_dataset_and_file_spec_with_a_line_each(cli):
    from bench.data.datasets import list_datasets

    status, stdout, _ = cli("--list-datasets")
    lines = stdout.strip().splitlines()
    assert status == 0 and [line.split()[0] for line in lines] == list_datasets()
    assert "vectors:PATH" in stdout and "npz:PATH" in stdout and "imagefolder:PATH" in stdout
    wine = next(line for line in lines if line.startswith("wine "))
    assert "13 features x 178 examples" in wine and "3 classes" in wine
    assert "3x32x32" in next(line for line in lines if line.startswith("cifar10 "))


def test_list_strategies_describes_a_strategy_by_its_class_docstring_else_its_modules(cli, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text('"""Lowest positions first (a module docstring).\n\nMore words."""\n'
                    "from strategies import Strategy\n\n"
                    "class Lowest(Strategy):\n    name = 'test-lowest'\n\n"
                    "    def score(self, inputs):\n        return -__import__('numpy').arange(inputs.n)\n\n"
                    "class Own(Lowest):\n    '''Its own words (a class docstring).'''\n    name = 'test-own'\n")
    status, stdout, _ = cli("--strategy-file", path, "--list-strategies")
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in stdout.splitlines()}
    assert status == 0
    assert lines["test-lowest"] == "Lowest positions first (a module docstring)."
    assert lines["test-own"] == "Its own words (a class docstring)."


BAD_INPUTS = [
    (["--strategies", "entrpy"], "Unknown strategy 'entrpy' (did you mean 'entropy'?)"),
    (["--strategies", "ENTROPY"], "Unknown strategy 'ENTROPY' (did you mean 'entropy'?)"),  # letters' case
    (["--dataset", "cifar-10"], "Unknown dataset 'cifar-10'"),
    (["--model", "resnet19"], "Unknown model 'resnet19'"),
    (["--preset", "papr"], "Unknown preset 'papr'"),
    (["--seeds", "0"], "--seeds: expected a positive integer"),
    (["--initial", "2000"], "The 'initial' parameter must be smaller than the training pool (1437 examples)"),
    (["--budget", "400"], "the training pool has 1437"),
    (["--subset", "10", "--budget", "20"], "The 'subset' parameter must be at least the budget (20)"),
    (["--dataset", "npz:/nonexistent/file.npz"], "does not exist"),
    (["--budget", "-5"], "The 'budget' parameter must be a positive integer. Got -5 instead."),
    (["--epochs", "0"], "The 'epochs' parameter must be a positive integer. Got 0 instead."),
    (["--devices", "tpu"], "Unknown device 'tpu'"),
    (["--strategy-param", "entropy.depth=3"], "has no parameter 'depth'"),
    (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["--target-accuracy", "0"], "--target-accuracy: expected a test accuracy in percent (0 to 100), got '0'"),
    (["--target-accuracy", "101"], "expected a test accuracy in percent (0 to 100), got '101'"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, args, message):
    out = tmp_path / "out"
    status, stdout, stderr = cli(*args, "--out", out, "--epochs", "1") if "--epochs" not in args else \
        cli(*args, "--out", out)
    assert status == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr, stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_bad_input_through_the_real_entry_point(tmp_path):
    """The same through run_bench.py in a subprocess: exit status 2, one line, no traceback."""
    result = run_cli("--strategies", "nope", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Unknown strategy 'nope'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_existing_results_are_never_overwritten(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    args = ["--strategies", "random", "--dataset", f"npz:{tiny_npz}", *TINY, "--out", out]
    assert cli(*args)[0] == 0
    before = (out / "cycles.parquet").read_bytes()
    status, _, stderr = cli(*args[:-2], "--epochs", "2", "--out", out)
    assert status == 2 and "--name" in stderr
    assert (out / "cycles.parquet").read_bytes() == before


def _one_line_refusal(cli, *args: object) -> str:
    status, _, err = cli(*args)
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_messages_say_what_is_wrong(cli, tmp_path):
    # a fraction that rounds to epoch 0 says so, instead of "Got [0]"
    err = _one_line_refusal(cli, "--milestones", "0.001", "--dry-run")
    assert "0.001 is 0.2 of an epoch at 200 epochs, which rounds to epoch 0" in err and "[0]" not in err
    # a folder where a file belongs is a folder, not a missing file
    for flag in (["--weights", tmp_path], ["--strategy-file", tmp_path], ["--dataset", f"npz:{tmp_path}"]):
        assert "is a folder" in _one_line_refusal(cli, *flag, "--dry-run"), flag
    # a pickle that is not a state dict is refused without passing on torch's advice to unpickle it
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(2), "f": print}, bad)
    err = _one_line_refusal(cli, "--weights", bad, "--dry-run")
    assert "weights_only" not in err and "nothing but tensors is ever unpickled" in err


def test_report_refuses_values_a_run_never_writes(cli, tmp_path):
    status, _, _ = cli("--strategies", "random", "entropy", "--initial", "20", "--budget", "20", "--cycles", "2",
                       "--epochs", "1", "--out", tmp_path / "run")
    assert status == 0
    good = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    for column, value in (("test_acc", 1.5), ("test_acc", -0.1), ("test_acc", float("inf")), ("seed", -1),
                          ("cycle", 0.5), ("n_labeled", 0), ("strategy", "")):
        bad = good.copy()
        bad[column] = bad[column].astype(object)
        bad.loc[0, column] = value
        bad.to_parquet(tmp_path / "run" / "cycles.parquet")
        err = _one_line_refusal(cli, "report", tmp_path / "run")
        assert "holds values a run never writes" in err, (column, value, err)
    good.to_parquet(tmp_path / "run" / "cycles.parquet")
    # a folder a run holds is not reported beside it; a suite is never written inside a run folder
    lock = FolderLock(tmp_path / "run")
    lock.acquire()
    try:
        assert "in use by another process" in _one_line_refusal(cli, "report", tmp_path / "run")
    finally:
        lock.release()
    shutil.copytree(tmp_path / "run", tmp_path / "other")
    err = _one_line_refusal(cli, "report", tmp_path / "other", tmp_path / "run", "--out", tmp_path / "run" / "suite")
    assert "lies inside the run folder" in err and not (tmp_path / "run" / "suite").exists()


def test_target_accuracy_reaches_the_run_s_report_and_report_s(cli, tmp_path):
    run = tmp_path / "run"
    status, _, err = cli("--strategies", "random", "entropy", "--initial", "20", "--budget", "20", "--cycles", "2",
                         "--epochs", "1", "--target-accuracy", "30", "--out", run)
    assert status == 0, err
    saved = pd.read_csv(run / "report" / "tables" / "labels_saved_digits.csv")
    assert list(saved["target"]) == ["final", "30%"]
    assert "labels to reach 30% test accuracy" in (run / "report" / "report.md").read_text()
    status, _, err = cli("report", run, "--target-accuracy", "97.5")
    assert status == 0, err
    assert list(pd.read_csv(run / "report" / "tables" / "labels_saved_digits.csv")["target"]) == ["final", "97.5%"]
    assert "expected a test accuracy in percent" in _one_line_refusal(cli, "report", run, "--target-accuracy", "-3")


def test_help_imports_no_torch_and_names_what_the_registries_hold():
    # --help answers without the harness: parsing imports bench.cli and bench.core.config only
    probe = ("import sys\nfrom bench.cli import build_parser\nbuild_parser().format_help()\n"
             "heavy = sorted(m for m in ('torch', 'pandas', 'scipy', 'seaborn') if m in sys.modules)\n"
             "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from bench.core.config import HELP_DATASETS, HELP_MODELS
    from bench.data.datasets import list_datasets
    from bench.models.backbones import list_models

    assert sorted(HELP_DATASETS) == sorted(list_datasets())
    assert set(list_models()) <= set(HELP_MODELS)
    shown = run_cli("--help")
    assert shown.returncode == 0 and "run_bench.py report DIR" in " ".join(shown.stdout.split())


def test_a_dry_run_loads_no_statistics_or_plotting(tmp_path):
    # a dry run checks the data and the model (torch), and says which comparisons the report makes, without
    # the report's stack (scipy, matplotlib, seaborn); --seeds auto's plan is made by the run, not the dry run
    probe = ("import sys\nfrom bench.cli import main\n"
             "status = main(['--strategies', 'random', 'entropy', '--seeds', '2', '--dry-run', '--out', "
             f"{str(tmp_path / 'run')!r}])\n"
             "heavy = sorted(m for m in ('scipy', 'matplotlib', 'seaborn') if m in sys.modules)\n"
             "assert status == 0 and not heavy, (status, heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "compare   each strategy against random (1 comparison)" in done.stdout


def test_a_target_accuracy_a_grid_cannot_report_is_refused_not_ignored(cli, tmp_path):
    status, _, err = cli("--strategies", "random", "entropy", "--vary", "budget=10,20", "--target-accuracy", "90",
                         "--out", tmp_path / "grid")
    assert status == 2 and one_line(err).startswith("error: --target-accuracy is for a run folder's report")
    assert not (tmp_path / "grid").exists()  # before any work
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "grid.json").write_text(json.dumps({"labels": {}, "names": []}))
    status, _, err = cli("report", tmp_path / "parent", "--target-accuracy", "90")
    assert status == 2 and "`run_bench.py report SETTING_FOLDER --out DIR --target-accuracy P`" in one_line(err)
