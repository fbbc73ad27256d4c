"""bench.core.vary: --vary's words into a grid of settings (the product, in the order typed, with folder names), the
command line's flags as its fields, and every malformed grid refused in one line."""

from __future__ import annotations

import pytest

from bench.cli import build_parser
from bench.core.errors import UserError
from bench.core.vary import MAX_SETTINGS, parse_vary, vary_fields

FIELDS = vary_fields(build_parser())


def test_the_grid_is_the_product_of_the_values_the_last_field_fastest():
    grid = parse_vary(["initial=30,100", "budget=10,30"], FIELDS)
    settings = grid.settings()
    assert [s.slug for s in settings] == ["initial-30_budget-10", "initial-30_budget-30", "initial-100_budget-10",
                                          "initial-100_budget-30"]
    assert [s.protocol for s in settings] == [{"initial": 30, "budget": 10}, {"initial": 30, "budget": 30},
                                              {"initial": 100, "budget": 10}, {"initial": 100, "budget": 30}]
    assert settings[2].labels == {"initial": "100", "budget": "10"}
    assert grid.describe() == "initial 30, 100 x budget 10, 30"


def test_each_field_parses_as_its_flag_does():
    grid = parse_vary(["start=warm,cold", "subset=all,500", "milestones=0.5+0.75,160", "imbalance=1,10",
                       "batch-size=16,64"], FIELDS)
    assert grid.fields == ("warm_start", "subset", "milestones", "imbalance", "batch_size")
    assert grid.values == ((True, False), (None, 500), ((0.5, 0.75), (160,)), (1.0, 10.0), (16, 64))
    assert parse_vary(["model=cnn,resnet18", "train-mode=finetune,frozen"], FIELDS).values == (
        ("cnn", "resnet18"), ("finetune", "frozen"))


@pytest.mark.parametrize(("items", "given", "says"), [
    (["foo=1,2"], (), "Unknown field 'foo'"),
    (["inital=1,2"], (), "did you mean 'initial'"),
    (["initial=abc,30"], (), "initial 'abc' is not a value it takes"),
    (["subset=-3,10"], (), "subset '-3' is not a value it takes"),
    (["start=warm,hot"], (), "choose warm or cold"),
    (["precision=fp32,fp64"], (), "choose one of"),
    (["initial"], (), "must read FIELD=VALUE,VALUE"),
    (["=30,100"], (), "must read FIELD=VALUE,VALUE"),
    (["initial=30,"], (), "has an empty value"),
    (["initial=30"], (), "one value, which varies nothing"),
    (["initial=30,30"], (), "the same value twice"),
    (["initial=30,100", "initial=50,60"], (), "names 'initial' twice"),
    (["initial=30,100"], ("initial",), "its own flag both set 'initial'"),
    (["start=warm,cold"], ("warm_start",), "its own flag both set 'start'"),
])
def test_a_malformed_grid_is_one_line(items, given, says):
    with pytest.raises(UserError) as err:
        parse_vary(items, FIELDS, given)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_grid_larger_than_the_limit_is_refused():
    values = ",".join(str(i) for i in range(10, 10 + MAX_SETTINGS + 1))
    with pytest.raises(UserError, match="more than"):
        parse_vary([f"initial={values}"], FIELDS)
