"""The strategy contract, held when a class is defined: what the loop could not honour (a parameter that hides a
method, epoch_params naming no parameter, a min_batch_size that is no positive integer, needs naming no input)
is one UserError at import, exit status 2 with --strategy-file; and a strategy that worker processes could not
import is refused before any work."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from bench.core.errors import UserError
from strategies import Strategy, create_strategy
from strategies.base import INPUTS, PoolInputs, StrategyOutputError


def _define(body: str) -> type:
    """A Strategy subclass with this class body (after name and needs), defined now."""
    namespace: dict = {"Strategy": Strategy, "__name__": __name__}  # defined in this module, as a notebook's
    source = "class Mine(Strategy):\n    name = 'test-contract'\n    needs = frozenset({'logits'})\n" + \
        textwrap.indent(textwrap.dedent(body), "    ") + \
        "\n    def score(self, inputs):\n        return inputs.logits[:, 0]\n"
    exec(source, namespace)  # noqa: S102 - the test's own source
    return namespace["Mine"]


# every name Strategy declares or defines, from the class itself (a new method is covered without editing this)
RESERVED = sorted({n for n in (*vars(Strategy), *Strategy.__annotations__) if not n.startswith("__")})


def test_the_reserved_names_are_those_of_the_class():
    assert {"select", "score", "needs", "aux_head", "cycle_metrics", "name", "params", "aliases", "epoch_params",
            "min_batch_size"} <= set(RESERVED)


@pytest.mark.parametrize("key", RESERVED)
def test_a_parameter_named_like_a_member_of_strategy_is_refused(key):
    with pytest.raises(UserError, match=f"has a parameter named '{key}', which is a method or attribute"):
        _define(f"params = {{'{key}': 3}}")


def test_a_parameter_named_like_a_method_of_the_class_itself_is_refused():
    with pytest.raises(UserError, match="parameter named 'spread'"):
        _define("params = {'spread': 1.0}\ndef spread(self):\n    return 2")


@pytest.mark.parametrize("body, message", [
    ("params = {'warmup': 3}\nepoch_params = frozenset({'warmpu'})", "names 'warmpu' in epoch_params, which is not"),
    ("epoch_params = frozenset({'detach'})", "names 'detach' in epoch_params, which is not one of its params (none)"),
    ("min_batch_size = '2'", "declares min_batch_size '2': it must be a positive integer"),
    ("min_batch_size = 0", "declares min_batch_size 0"),
    ("min_batch_size = 2.0", "declares min_batch_size 2.0"),
    ("min_batch_size = True", "declares min_batch_size True"),
    ("needs = frozenset({'gradients'})", "needs unknown inputs ['gradients']"),
    ("needs = 'logits'", "declares needs 'logits'"),
    ("params = {'k': [1, 2]}", "parameter 'k' has a default of type list"),
    ("params = {'not a name': 1}", "a parameter's name must be a Python identifier"),
])
def test_a_declaration_the_loop_cannot_honour_is_refused(body, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _define(body)


def test_a_sound_class_registers():
    cls = _define("params = {'warmup': 0.5}\nepoch_params = frozenset({'warmup'})\nmin_batch_size = 2")
    assert cls.min_batch_size == 2 and set(INPUTS) >= cls.needs


def test_a_refused_strategy_file_is_one_line_and_exit_status_2(tmp_path, cli):
    path = tmp_path / "mine.py"
    path.write_text("from strategies import Strategy\n\n\nclass Mine(Strategy):\n    name = 'test-select-param'\n"
                    "    needs = frozenset({'logits'})\n    params = {'select': 3}\n\n"
                    "    def score(self, inputs):\n        return inputs.logits[:, 0]\n")
    code, _, err = cli("--strategy-file", path, "--list-strategies")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "has a parameter named 'select'" in err and str(path) in err


def test_a_strategy_the_workers_cannot_import_is_refused_before_any_work(tmp_path, capsys):
    """Registered here (as a notebook would) and not among RunOptions.strategy_files: a worker process would not
    know it. With two workers the run refuses it before any job; with one it runs in this process."""
    from bench.runner.benchmark import run_benchmark
    from bench.runner.resolve import RunOptions, build_config
    _define("")
    config = build_config(strategies=["random", "test-contract"], seeds=1, out=tmp_path / "run", devices="cpu",
                          protocol={"initial": 20, "budget": 20, "cycles": 2, "epochs": 1})
    with pytest.raises(UserError, match="'test-contract' is defined in .*pass its file in RunOptions.strategy_files"):
        run_benchmark(config, RunOptions(jobs=2))
    assert not (tmp_path / "run" / "cycles.parquet").exists()
    assert run_benchmark(config, RunOptions(jobs=1)).failed == ()


def _by_hand(**fields) -> PoolInputs:
    """PoolInputs built from plain tensors, as a notebook would: no model, no loop, no harness."""
    n = next(len(v) for v in fields.values())
    return PoolInputs(n=n, rng=np.random.default_rng(0), model=None, device=torch.device("cpu"), **fields)


def test_a_strategy_runs_outside_the_harness_on_plain_tensors():
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.99, 0.01]], dtype=torch.float64)
    assert list(create_strategy("entropy").select(_by_hand(probs=probs), 2)) == [1, 2]  # the two most uncertain
    # k-center greedy from a labeled point at the origin: the farthest candidate first, then the farthest from both
    embeddings = torch.tensor([[1.0, 0.0], [5.0, 0.0], [0.0, 3.0], [4.0, 0.5]])
    inputs = _by_hand(embeddings=embeddings, labeled_embeddings=torch.zeros(1, 2))
    assert list(create_strategy("core-set").select(inputs, 2)) == [1, 2]


def test_a_field_the_strategy_did_not_declare_is_one_line_where_it_is_read():
    inputs = _by_hand(probs=torch.full((3, 2), 0.5, dtype=torch.float64))
    assert inputs.require("probs") is inputs.probs
    with pytest.raises(StrategyOutputError, match="PoolInputs.embeddings was not computed: add 'embeddings' to"):
        inputs.require("embeddings")
