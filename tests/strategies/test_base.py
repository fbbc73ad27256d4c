"""Tie-breaking, the registry's refusals, and what a strategy declares against what it gets. (Each strategy's own
cases and its conformance test are in tests/strategies/test_<strategy>.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import strategies
from bench.core.errors import UserError
from bench.models.backbones import create_model
from strategies import PoolInputs, create_strategy, top_k

PROBS = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.8, 0.2, 0.0]])


def inputs(probs: torch.Tensor, seed: int = 0) -> PoolInputs:
    model = create_model("cnn", 1, probs.shape[1], 0)
    return PoolInputs(n=probs.shape[0], rng=np.random.default_rng(seed), model=model, device=torch.device("cpu"),
                      probs=probs, logits=torch.log(probs.clamp_min(1e-12)))


def test_ties_go_to_the_lower_position_and_nan_ranks_last():
    assert top_k(np.array([1.0, 3.0, 3.0, np.nan, 3.0]), 4).tolist() == [1, 2, 4, 0]
    assert top_k(torch.tensor([float("nan"), 0.0, float("nan")]), 3).tolist() == [1, 0, 2]
    identical = torch.full((6, 3), 1 / 3)
    assert create_strategy("entropy").select(inputs(identical), 3).tolist() == [0, 1, 2]


def test_unknown_name_lists_known_ones_and_closest_match():
    with pytest.raises(UserError, match=r"did you mean 'entropy'.*random"):
        create_strategy("entrpy")
    assert strategies.STRATEGIES.canonical("coreset") == "core-set"


def test_duplicate_name_is_refused():
    with pytest.raises(UserError, match="taken"):
        class Again(strategies.Strategy):
            name = "entropy"

    with pytest.raises(UserError, match="taken"):
        class AliasClash(strategies.Strategy):
            name = "a-new-one-with-a-clashing-alias"
            aliases = ("lc",)


def test_a_subclass_registers_its_own_aliases_only():
    with strategies.STRATEGIES.scoped():
        class Parent(strategies.Strategy):
            name = "test-parent"
            aliases = ("tp",)

        class Child(Parent):
            name = "test-child"

        assert strategies.STRATEGIES.get("tp") is Parent and strategies.STRATEGIES.aliases_of("test-child") == []
        assert "test-child (" not in "\n".join(strategies.list_strategies())
    assert "test-parent" not in strategies.STRATEGIES  # scoped: gone after the block


def test_unknown_or_ill_typed_parameter_is_a_user_error():
    class WithParam(strategies.Strategy):
        name = "test-with-param"
        params = {"depth": 2, "greedy": True, "rate": 0.5}

        def score(self, inputs):
            return np.zeros(inputs.n)

    assert create_strategy("test-with-param", depth="5", greedy="false").depth == 5
    assert create_strategy("test-with-param", greedy="false").greedy is False
    with pytest.raises(UserError, match="no parameter 'width'"):
        create_strategy("test-with-param", width=1)
    with pytest.raises(UserError, match="test-with-param.depth must be an integer. Got 'deep'"):
        create_strategy("test-with-param", depth="deep")
    with pytest.raises(UserError, match="test-with-param.greedy must be a boolean"):
        create_strategy("test-with-param", greedy="maybe")
    with pytest.raises(UserError, match="test-with-param.rate must be a number"):
        create_strategy("test-with-param", rate="half")


def test_strategy_file_registers_its_strategy(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from strategies import Strategy\n\n"
        "class Smallest(Strategy):\n"
        "    '''Picks the lowest positions (test only).'''\n"
        "    name = 'test-smallest-position'\n\n"
        "    def score(self, inputs):\n"
        "        return -__import__('numpy').arange(inputs.n)\n"
    )
    assert strategies.load_strategy_file(path) == ["test-smallest-position"]
    assert create_strategy("test-smallest-position").select(inputs(PROBS), 2).tolist() == [0, 1]


@pytest.mark.parametrize("source, message", [
    ("def broken(:\n", "syntax error at line 1"),
    ("x = 1\n", "defines no strategy"),
    ("raise RuntimeError('boom')\n", "failed to import"),
])
def test_bad_strategy_files(tmp_path, source, message):
    path = tmp_path / f"bad{abs(hash(source))}.py"
    path.write_text(source)
    with pytest.raises(UserError, match=message):
        strategies.load_strategy_file(path)


def test_a_parameter_read_from_self_params_is_the_value_set():
    # a strategy written from the README read self.params["k"] and got the class default while self.k held 5
    with strategies.STRATEGIES.scoped():
        class Tops(strategies.Strategy):
            name = "test-tops"
            params = {"k": 20, "scale": 1.0}

            def score(self, inputs):
                return np.zeros(inputs.n)

        made = create_strategy("test-tops", k="5")
        assert made.params == {"k": 5, "scale": 1.0} and made.k == 5
        assert Tops.params == {"k": 20, "scale": 1.0}  # the defaults stay the class's, for the next job
        assert create_strategy("test-tops").params["k"] == 20


@pytest.mark.parametrize("default", [[1, 2, 3], {"a": 1}, (1, 2), {1}])
def test_a_parameter_type_that_cannot_be_parsed_is_refused_when_the_strategy_registers(default):
    with strategies.STRATEGIES.scoped():
        with pytest.raises(TypeError, match="parameter 'weights' has a default of type"):
            type("Weights", (strategies.Strategy,), {"name": "test-weights", "params": {"weights": default}})
        assert "test-weights" not in strategies.STRATEGIES


# ---------------------------------------------------------------- what a strategy declares is what it gets


@pytest.fixture(scope="module")
def untrained():
    """A digits trainer and an untrained CNN: enough for every strategy to score and select."""
    from bench.core.config import Protocol
    from bench.data.datasets import load_dataset
    from bench.training.trainer import DeviceData, Trainer

    data = load_dataset("digits")
    protocol = Protocol(precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, torch.device("cpu")), protocol, torch.device("cpu"))
    return trainer, create_model("cnn", 1, data.n_classes, 0), protocol


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES.names()))
def test_each_strategy_scores_and_reports_from_exactly_the_inputs_it_declares(untrained, name):
    from bench.training.loop import gather_inputs, make_aux
    from strategies.base import INPUTS

    trainer, model, protocol = untrained
    strategy = create_strategy(name)
    aux_head = make_aux(strategy, model, 0, protocol, trainer.device)
    cand, labeled = torch.arange(40, 100), torch.arange(40)
    inputs = gather_inputs(strategy, trainer, model, aux_head, cand, labeled, np.random.default_rng(0))
    assert {field for field in INPUTS if getattr(inputs, field) is not None} == set(strategy.needs)
    picks = strategy.select(inputs, 10)  # an undeclared input is None here, and reading it fails
    metrics = strategy.cycle_metrics(inputs, np.asarray(picks), trainer.data.y_train[cand])
    assert all(isinstance(v, float) for v in metrics.values())


def test_a_strategy_needing_the_aux_output_without_an_aux_head_is_refused_in_one_line(untrained):
    from bench.training.loop import make_aux

    trainer, model, protocol = untrained

    class NoHead(strategies.Strategy):
        name = "test-no-head"
        needs = frozenset({"aux_output"})

        def score(self, inputs):
            return inputs.aux_output

    with pytest.raises(strategies.base.StrategyOutputError, match="needs 'aux_output'.*aux_head"):
        make_aux(NoHead(), model, 0, protocol, trainer.device)


def test_the_old_stage_features_attribute_is_refused_not_ignored():
    with pytest.raises(TypeError, match='add "stage_features" to its needs'):
        class Old(strategies.Strategy):
            name = "test-old-stages"
            stage_features = True


def test_registrations_made_in_a_test_end_with_it():
    from bench.core.registry import IMPORTED_CODE
    from bench.models.backbones import MODELS
    from tests.conftest import registries_scoped

    before = (strategies.STRATEGIES.names(), MODELS.names(), dict(IMPORTED_CODE))
    with registries_scoped():
        class Leak(strategies.Strategy):
            name = "test-leak"
        MODELS.add("test-leak-model", lambda c, n: None)
        IMPORTED_CODE["/nowhere/leak.py"] = {"/nowhere/leak.py": "0" * 64}
        assert "test-leak" in strategies.STRATEGIES and "test-leak-model" in MODELS
    assert (strategies.STRATEGIES.names(), MODELS.names(), dict(IMPORTED_CODE)) == before
