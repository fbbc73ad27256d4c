"""A results folder never mixes configurations: every row carries its job's identity (protocol, dataset
content, strategy parameters), widening keeps stored parameters, and whatever contradicts the folder is
refused in one line with the folder left byte for byte as it was."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import UserError
from bench.results.identity import stored_numerics, widen
from bench.runner.resolve import build_config
from conftest import TINY

ARGS = [*TINY, "--subset", "60"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(cli, folder: Path, *args) -> str:
    """Run args; assert one error line, exit 2 and an untouched folder; return the line."""
    before = snapshot(folder)
    status, _, err = cli(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert snapshot(folder) == before
    return lines[0]


def npz(path: Path, n_classes: int, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.integers(0, 255, size=(n, 12, 12, 3)).astype(np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x[: n // 3], y_test=y[: n // 3])
    return path


def test_widening_keeps_stored_parameters_and_one_identity_per_strategy(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    data = f"npz:{tiny_npz}"
    assert cli("--strategies", "ll", "random", "--strategy-param", "ll.margin=0.1", "--dataset", data, *ARGS,
               "--out", out)[0] == 0
    # a shorter command: more seeds, only random named; the stored learning-loss job keeps margin 0.1, and only
    # random's new seed runs (a run runs the jobs it was asked, no others)
    assert cli("--strategies", "random", "--dataset", data, *ARGS, "--seeds", "2", "--out", out)[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_params"]["learning-loss"]["margin"] == 0.1
    assert config["strategies"] == ["learning-loss", "random"] and config["seeds"] == [0, 1]
    rows = pd.read_parquet(out / "cycles.parquet")
    assert sorted(rows.groupby(["strategy", "seed"]).size().index.tolist()) == [
        ("learning-loss", 0), ("random", 0), ("random", 1)]
    assert rows.groupby("strategy")["config_hash"].nunique().tolist() == [1, 1]
    assert set(rows["config_hash"]) == set(config["job_hashes"].values())
    # naming the strategy with other parameters contradicts the folder: refused, with the field named
    line = refused(cli, out, "--strategies", "ll", "--strategy-param", "ll.margin=0.5", "--dataset", data, *ARGS,
                   "--out", out)
    assert "strategy_params.learning-loss.margin 0.1 -> 0.5" in line


def test_a_lost_config_json_never_admits_another_protocol(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    data = f"npz:{tiny_npz}"
    assert cli("--strategies", "random", "--dataset", data, *ARGS, "--out", out)[0] == 0
    (out / "config.json").unlink()
    line = refused(cli, out, "--strategies", "random", "--dataset", data, *ARGS, "--epochs", "4", "--out", out)
    assert "row(s) of another configuration" in line and "random/seed0 cycle 0" in line
    # the same command as the rows' rebuilds config.json and finds every job finished
    status, stdout, _ = cli("--strategies", "random", "--dataset", data, *ARGS, "--out", out)
    assert status == 0 and "1 of 1 jobs already finished" in stdout and (out / "config.json").exists()


def test_another_dataset_at_the_same_path_is_refused(cli, tmp_path):
    out, path = tmp_path / "run", tmp_path / "data.npz"
    npz(path, 3, 200, seed=0)
    assert cli("--strategies", "random", "--dataset", f"npz:{path}", *ARGS, "--out", out)[0] == 0
    npz(path, 7, 500, seed=1)
    line = refused(cli, out, "--strategies", "random", "--dataset", f"npz:{path}", *ARGS, "--out", out)
    assert "another configuration" in line and "dataset_fingerprint" in line


def test_rows_of_an_unknown_strategy_without_config_json_are_refused(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    data = f"npz:{tiny_npz}"
    assert cli("--strategies", "entropy", "--dataset", data, *ARGS, "--out", out)[0] == 0
    (out / "config.json").unlink()
    line = refused(cli, out, "--strategies", "random", "--dataset", data, *ARGS, "--out", out)
    assert "rows of strategy 'entropy'" in line


@pytest.mark.parametrize("edit", [
    lambda c: c.update(strategies="random"),
    lambda c: c.update(seeds=["0"]),
    lambda c: c.pop("protocol"),
    lambda c: c.update(strategy_params={"random": 3}),
])
def test_a_hand_edited_config_json_of_the_wrong_shape_is_one_line(cli, tmp_path, tiny_npz, edit):
    out = tmp_path / "run"
    data = f"npz:{tiny_npz}"
    assert cli("--strategies", "random", "--dataset", data, *ARGS, "--out", out)[0] == 0
    config = json.loads((out / "config.json").read_text())
    edit(config)
    (out / "config.json").write_text(json.dumps(config))
    assert "is not a configuration this harness wrote" in refused(cli, out, "--strategies", "random", "--dataset",
                                                                   data, *ARGS, "--out", out)


def test_a_wrongly_typed_column_is_refused_and_no_pick_is_lost(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    data = f"npz:{tiny_npz}"
    assert cli("--strategies", "random", "--dataset", data, *ARGS, "--seeds", "2", "--out", out)[0] == 0
    rows = pd.read_parquet(out / "cycles.parquet")
    rows["seed"] = rows["seed"].map({0: "zero", 1: "one"})
    rows.to_parquet(out / "cycles.parquet", index=False)
    line = refused(cli, out, "--strategies", "random", "--dataset", data, *ARGS, "--seeds", "2", "--out", out)
    assert "wrong type" in line and "seed" in line


@pytest.mark.parametrize(("args", "message"), [
    (("--strategies", "random", "--strategy-param", "ll.margin=0.5"), "not among the strategies of this run"),
    (("--seeds", "1000000000000"), "'seeds' parameter must be an integer from 1 to"),
    (("--momentum", "1.0"), "'momentum' parameter must be a number in [0, 1)"),
    (("--strategies", "ll", "--strategy-param", "ll.weight=nan"), "'learning-loss.weight' parameter must be"),
    (("--strategies", "ll", "--strategy-param", "ll.margin=-1"), "'learning-loss.margin' parameter must be"),
])
def test_values_that_would_change_nothing_or_break_training_are_refused_up_front(cli, tmp_path, args, message):
    (tmp_path / "run").mkdir()
    assert message in refused(cli, tmp_path / "run", *args, "--dry-run", "--out", tmp_path / "run")


def test_a_checkpoint_of_another_configuration_restarts_its_job(tmp_path, tiny_npz):
    from bench.results.store import RunStore
    from bench.runner.benchmark import pending_work
    from bench.runner.resolve import build_config, job_specs
    from bench.training.jobs import JobState

    config = build_config(strategies=["random"], seeds=1, protocol={"dataset": f"npz:{tiny_npz}", "initial": 20},
                          out=tmp_path / "run")
    spec = job_specs(config)[0]
    store = RunStore(tmp_path / "run")
    stale = JobState(2, np.arange(60), np.arange(40, 60), config_hash="not-this-one")
    store.save_checkpoint(spec.strategy, spec.seed, stale)
    ready, done = pending_work([spec], store, 200)
    assert ready[0][1].cycle == 0 and done[spec.key] == 0
    current = JobState(0, np.arange(20), np.arange(20), config_hash=spec.config_hash)
    store.save_checkpoint(spec.strategy, spec.seed, current)
    assert pending_work([spec], store, 200)[0][0][1].config_hash == spec.config_hash


def test_an_unreachable_dask_scheduler_leaves_a_widened_folder_as_it_was(cli, tmp_path, tiny_npz, monkeypatch):
    from bench.runner import scheduler
    out = tmp_path / "run"
    args = ["--strategies", "random", "--dataset", f"npz:{tiny_npz}", *ARGS, "--out", out]
    assert cli(*args)[0] == 0
    monkeypatch.setattr(scheduler, "DASK_CONNECT_TIMEOUT_S", 2)
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
    line = refused(cli, out, *args, "--seeds", "2", "--backend", "dask", "--scheduler-address", address)
    assert f"Cannot reach the dask scheduler at {address}" in line
    assert json.loads((out / "config.json").read_text())["seeds"] == [0]


# ---------------------------------------------------------------- widening and the stored numerics, called directly


def stored_of(config, **fields) -> dict:
    """config.json as a run of `config` writes the fields that decide its numbers, with `fields` replaced."""
    return {**json.loads(json.dumps(config.result_defining(), default=str)), **fields}


def test_widen_adds_the_stored_strategies_with_their_parameters_and_the_union_of_seeds(tmp_path):
    config = build_config("quick", ["entropy"], 2, out=tmp_path / "R")  # seeds 0, 1
    stored = stored_of(config, strategies=["random", "margin"], seeds=[0, 4],
                       strategy_params={"random": {}, "margin": {"width": 3}})
    widened = widen(config, stored, tmp_path / "R", known={"random", "margin", "entropy"})
    assert widened.strategies == ("random", "margin", "entropy")  # the folder's first, then this run's
    assert widened.seeds == (0, 1, 4)
    assert widened.strategy_params == {"random": {}, "margin": {"width": 3}}  # entropy takes no parameter
    with pytest.raises(UserError, match="strategy 'margin', which is not registered"):
        widen(config, stored, tmp_path / "R", known={"random", "entropy"})


def test_widen_refuses_another_protocol_naming_the_field_as_stored_and_as_asked(tmp_path):
    config = build_config("quick", ["entropy"], 2, out=tmp_path / "R")
    stored = stored_of(config, strategies=["entropy"], seeds=[0])
    stored["protocol"]["epochs"] = 7
    with pytest.raises(UserError, match=r"another configuration \(protocol\.epochs 7 -> 200\)"):
        widen(config, stored, tmp_path / "R", known={"entropy"})
    del stored["seeds"]
    with pytest.raises(UserError, match="its seeds is missing or of the wrong type"):
        widen(config, stored, tmp_path / "R", known={"entropy"})


def test_a_folder_that_predates_the_recorded_numerics_ran_on_the_cpu_in_its_protocols_precision():
    assert stored_numerics({}) == {"device_type": "cpu", "precision": "float32"}
    assert stored_numerics({"protocol": {"precision": "bf16"}}) == {"device_type": "cpu", "precision": "bfloat16"}
    assert stored_numerics({"precision": "torch.float16", "device_type": "cuda"}) == {"device_type": "cuda",
                                                                                      "precision": "float16"}
