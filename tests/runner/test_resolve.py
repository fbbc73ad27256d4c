"""bench.runner.resolve: what build_config records (strategies by canonical name, every parameter with its default,
epoch parameters as whole epochs, the name and folder a run gets) and what it refuses before any work; RunOptions'
own checks; the job list in the order the scheduler runs it. The bad-argument table of the Python API as a whole is
tests/guarantees/test_api_arguments.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import UserError
from bench.runner import resolve
from bench.runner.resolve import RunOptions, build_config, job_specs
from strategies import STRATEGIES, create_strategy
from strategies.random import Random


def test_strategies_are_recorded_by_canonical_name_once_each_in_the_order_given():
    config = build_config(strategies=["ll", "random", "learning-loss", "least-confidence"], seeds=2)
    assert config.strategies == ("learning-loss", "random", "least-confidence")
    assert config.seeds == (0, 1)
    assert build_config(seeds=1).strategies == tuple(STRATEGIES.names())  # none named: every registered one


def test_every_parameter_is_recorded_with_its_default_and_epoch_parameters_as_epochs():
    config = build_config(strategies=["ll", "bald", "random"], seeds=1, protocol={"epochs": 10},
                          strategy_params={"bald": {"samples": 7}})
    # the preset's detach at 0.6 of the epochs, as epoch 6 of 10; the milestone at 0.8 likewise
    assert config.strategy_params["learning-loss"] == {"margin": 1.0, "weight": 1.0, "detach_after": 6,
                                                       "loss": "ranking"}
    assert config.protocol.milestones == (8,)
    assert config.strategy_params["bald"] == {**create_strategy("bald").params, "samples": 7}
    assert "random" not in config.strategy_params  # a strategy without parameters records none
    given = build_config(strategies=["ll"], seeds=1, protocol={"epochs": 10},
                         strategy_params={"ll": {"detach_after": 3}})  # by alias, as a whole epoch
    assert given.strategy_params["learning-loss"]["detach_after"] == 3


def test_a_run_is_named_for_its_preset_and_dataset_and_writes_under_results(tmp_path):
    config = build_config(strategies=["random"], seeds=1)
    assert (config.name, config.out, config.preset) == ("quick-digits", Path("results") / "quick-digits", "quick")
    named = build_config(strategies=["random"], seeds=1, name="mine")
    assert (named.name, named.out) == ("mine", Path("results") / "mine")
    assert build_config(strategies=["random"], seeds=1, out=tmp_path / "x").out == tmp_path / "x"
    assert build_config(strategies=["random"], seeds=1, protocol={"subset": None}).protocol.subset is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategies": ["random"], "strategy_params": {"entropy": {}}},
     "--strategy-param sets 'entropy', which is not among the strategies of this run (random)"),
    ({"strategies": ["bald"], "strategy_params": {"bald": {"sample": 3}}}, "bald"),
    ({"strategies": ["ll"], "protocol": {"train_mode": "frozen"}},
     "Strategy 'learning-loss' cannot run with --train-mode frozen: it reads the backbone's stage feature maps"),
    ({"name": "."}, "--name '.' is not a folder name"),
    ({"name": "a/b"}, "--name 'a/b' is not a folder name"),
    ({"seeds": True}, "'seeds' parameter must be an integer from 1 to 10000. Got True"),
    ({"seeds": 10_001}, "Got 10001"),
    ({"strategies": ["entrpy"]}, "entropy"),
])
def test_build_config_refuses_in_one_line(kwargs, message):
    with pytest.raises(UserError) as refused:
        build_config(**{"strategies": ["random"], "seeds": 1, **kwargs})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_strategy_is_refused_a_batch_smaller_than_it_needs():
    class Quads(Random):
        name = "test-quads"
        min_batch_size = 4  # say, a loss over groups of four

    with pytest.raises(UserError, match="^Strategy 'test-quads' needs a batch size of at least 4. Got --batch-size 3 "
                                        "instead: raise --batch-size.$"):
        build_config(strategies=["random", "test-quads"], seeds=1, protocol={"batch_size": 3})
    assert build_config(strategies=["test-quads"], seeds=1, protocol={"batch_size": 4}).protocol.batch_size == 4


def test_frozen_mode_leaves_out_the_strategies_it_cannot_run_when_none_are_named():
    config = build_config(seeds=1, protocol={"train_mode": "frozen"})
    assert "learning-loss" not in config.strategies and "random" in config.strategies
    assert all(STRATEGIES.get(s).frozen_refusal() is None for s in config.strategies)


def test_run_options_validate_themselves():
    for fine in (RunOptions(), RunOptions(jobs_per_device="auto", max_seeds=3, scheduler_address="tcp://h:8786"),
                 RunOptions(strategy_files=[Path("a.py")], command=("run_bench.py", "--seeds", "auto"))):
        fine.validate()
    for bad, message in [(RunOptions(max_seeds=True), "'max_seeds' parameter"),
                         (RunOptions(jobs_per_device=True), "--jobs-per-device must be a positive integer or auto"),
                         (RunOptions(jobs_per_device="many"), "Got 'many'"),
                         (RunOptions(scheduler_address=8786), "'scheduler_address' parameter must be tcp://HOST:PORT"),
                         (RunOptions(command="run_bench.py --seeds 3"), "'command' parameter must be a tuple")]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            bad.validate()


def test_the_jobs_run_seed_by_seed_each_with_its_strategys_parameters_and_identity():
    config = build_config(strategies=["ll", "random"], seeds=2, name="r")
    specs = job_specs(config)
    assert [s.key for s in specs] == ["learning-loss/seed0", "random/seed0", "learning-loss/seed1", "random/seed1"]
    assert all(s.run == "r" and s.dataset == "digits" and s.protocol == config.protocol for s in specs)
    assert specs[0].params == config.strategy_params["learning-loss"] and specs[1].params == {}
    assert [s.config_hash for s in specs] == [config.job_hash(s.strategy) for s in specs]
    assert specs[0].config_hash != specs[1].config_hash
    assert {(s.weights, s.weights_sha256) for s in specs} == {(None, "")}


def test_the_numerics_and_the_epoch_proportions_a_run_records():
    config = build_config(strategies=["ll"], seeds=1, protocol={"epochs": 10, "precision": "fp32"})
    assert resolve.epoch_proportions(config) == {"milestones": [0.8], "learning-loss.detach_after": 0.6}
    resolved = resolve.resolve_numerics(config, ["cpu"])
    assert (resolved.device_type, resolved.precision_used) == ("cpu", "float32")
    assert (config.device_type, config.precision_used) != ("cpu", "float32")  # a copy: the config itself unresolved
    assert resolve.resolve_baseline("ll") == "learning-loss"
    with pytest.raises(UserError, match="^--baseline: "):
        resolve.resolve_baseline("rnadom")
