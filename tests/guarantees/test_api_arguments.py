"""The Python API checks its arguments as the command line checks its flags: every bad argument to build_config
or RunOptions is one UserError before any work (no traceback from the pool, no run that leaves the folder
unreportable, no announced rounds that never run)."""

from __future__ import annotations

import pytest

from bench.core.errors import UserError
from bench.runner.benchmark import dry_run, run_benchmark
from bench.runner.resolve import RunOptions, build_config

PROTOCOL = {"initial": 20, "budget": 20, "cycles": 2, "epochs": 1}


@pytest.mark.parametrize("options, message", [
    (RunOptions(jobs=0), "'jobs' parameter (--jobs) must be a positive integer. Got 0"),
    (RunOptions(jobs=-2), "Got -2"),
    (RunOptions(jobs=1.5), "Got 1.5"),
    (RunOptions(jobs=True), "Got True"),
    (RunOptions(margin=-0.01), "'margin' parameter (--margin) must be a positive number"),
    (RunOptions(margin=0), "Got 0 instead"),
    (RunOptions(margin=float("nan")), "Got nan instead"),
    (RunOptions(margin="1"), "Got '1' instead"),
    (RunOptions(target_accuracy=95), "'target_accuracy' parameter (--target-accuracy) must be a test accuracy"),
    (RunOptions(target_accuracy=0.0), "Got 0.0 instead"),
    (RunOptions(max_seeds=2), "'max_seeds' parameter (--max-seeds) must be an integer of at least 3"),
    (RunOptions(max_seeds=30), "RunOptions(max_seeds=30) asks for seeds in rounds"),
    (RunOptions(jobs_per_device=0), "--jobs-per-device must be a positive integer or auto"),
    (RunOptions(backend="dsk"), "Unknown backend 'dsk' (did you mean 'dask'?)"),
    (RunOptions(on_existing="overwrite"), "Unknown on_existing choice 'overwrite'"),
    (RunOptions(strategy_files="mine.py"), "'strategy_files' parameter must be a tuple"),
    (RunOptions(baseline=None), "'baseline' parameter must be a strategy name"),
])
def test_bad_run_options_are_refused_before_any_work(options, message, tmp_path):
    config = build_config(strategies=["random", "entropy"], seeds=1, protocol=PROTOCOL, out=tmp_path / "run")
    with pytest.raises(UserError) as raised:
        run_benchmark(config, options)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists(), "work began before the refusal"


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": {"epoch": 1}}, "Unknown protocol field 'epoch' (did you mean 'epochs'?)"),
    ({"protocol": {"bugdet": 5}}, "Unknown protocol field 'bugdet' (did you mean 'budget'?)"),
    ({"protocol": [("epochs", 1)]}, "'protocol' parameter must be a dict of Protocol fields"),
    ({"strategies": "entropy"}, "'strategies' parameter must be a list of strategy names. Got 'entropy'"),
    ({"strategies": ["random", 3]}, "'strategies' parameter must be a list of strategy names"),
    ({"strategy_params": {"entropy": 3}}, "'strategy_params' parameter must be a dict of"),
    ({"name": 7}, "'name' parameter (--name) must be a string"),
    ({"name": "n" * 300}, "--name is 300 bytes long"),
    ({"out": ""}, "--out '' names no folder"),
    ({"seeds": 0}, "'seeds' parameter must be an integer from 1"),
])
def test_bad_build_config_arguments_are_one_user_error(kwargs, message):
    with pytest.raises(UserError) as raised:
        build_config(**{"strategies": ["random", "entropy"], "seeds": 1, **kwargs})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_dry_run_checks_the_options_too(tmp_path):
    config = build_config(strategies=["random", "entropy"], seeds=1, protocol=PROTOCOL, out=tmp_path / "run")
    with pytest.raises(UserError, match="'jobs' parameter"):
        dry_run(config, RunOptions(jobs=0))


def test_a_run_folder_inside_another_runs_report_is_refused(tmp_path):
    run = tmp_path / "A"
    (run / "report").mkdir(parents=True)
    (run / "cycles.parquet").write_bytes(b"")  # a run's folder: it rewrites report/ whole
    for out in (run / "report" / "nested", run / "report", run / "report" / "a" / "b", run / "checkpoints" / "x"):
        with pytest.raises(UserError, match=f"is inside the (report|checkpoints) folder of the run in {run}"):
            build_config(strategies=["random"], seeds=1, out=out)
    build_config(strategies=["random"], seeds=1, out=tmp_path / "report" / "nested")  # no run holds that report/
