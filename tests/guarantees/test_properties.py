"""Property-based tests (hypothesis): generated flags and malformed npz, config.json and parquet inputs never
end in a traceback, and a refusal never changes an existing results folder.

`make test` runs the short profile. The long one (2,000 examples per property):
    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q -p no:cacheprovider tests/guarantees/test_properties.py
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.core.errors import UserError
from bench.data.images import load_npz
from bench.results.identity import check_identity, widen
from bench.results.store import RunStore, read_cycles
from bench.runner.resolve import build_config
from strategies import STRATEGIES

settings.register_profile("short", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))

NUMBERS = st.one_of(st.integers(-10**6, 10**13), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["0", "-1", "1e309", "nan", "inf", "x", "", "1.5", "0.8", "all"]))
WORDS = st.one_of(st.sampled_from(["random", "ll", "entropy", "core-set", "badge", "bald", "margin", "lc",
                                   "learning-loss", "nope", "a/b", "", "-", "--"]), st.text(max_size=8))
FLAG_VALUES = {
    "--initial": NUMBERS, "--budget": NUMBERS, "--cycles": NUMBERS, "--epochs": NUMBERS, "--batch-size": NUMBERS,
    "--subset": NUMBERS, "--lr": NUMBERS, "--momentum": NUMBERS, "--weight-decay": NUMBERS, "--seeds": NUMBERS,
    "--milestones": NUMBERS, "--precision": WORDS, "--preset": WORDS, "--model": WORDS, "--strategies": WORDS,
    "--convention": WORDS, "--devices": WORDS, "--backend": WORDS, "--baseline": WORDS,
    "--strategy-param": st.builds(lambda n, k, v: f"{n}.{k}={v}", WORDS,
                                  st.sampled_from(["margin", "weight", "detach_after", "loss", "samples",
                                                   "dropout", "zzz"]), NUMBERS),
}


@st.composite
def command_lines(draw) -> list[str]:
    flags = draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=6))
    argv = []
    for flag in flags:
        argv += [flag, str(draw(FLAG_VALUES[flag]))]
    return argv


@given(argv=command_lines())
def test_generated_command_lines_end_in_a_plan_or_one_line(cli, argv):
    status, out, err = cli(*argv, "--dry-run")
    assert status in (0, 2), (argv, err)
    lines = [line for line in err.splitlines() if line.strip()]
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (argv, err)
    else:
        assert "job       " in out, (argv, out)


# ---------------------------------------------------------------------------------------------- npz files

ARRAYS = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),
              st.sampled_from([np.uint8, np.int64, np.float32, np.uint16, np.bool_, "U3"])),
    st.just(np.array([b"x"])),
)


@st.composite
def npz_bytes(draw) -> bytes:
    """An npz, a damaged one, or a zip whose members are not .npy arrays."""
    kind = draw(st.sampled_from(["arrays", "text-member", "truncated"]))
    members = {key: draw(ARRAYS) for key in draw(st.sets(st.sampled_from(
        ["x_train", "y_train", "x_test", "y_test", "classes", "other"]), max_size=6))}
    buffer = io.BytesIO()
    if kind == "text-member":
        with zipfile.ZipFile(buffer, "w") as archive:
            for key in members:
                archive.writestr(f"{key}.npy", draw(st.binary(max_size=64)))
        return buffer.getvalue()
    np.savez(buffer, **members)
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data)))] if kind == "truncated" else data


@given(payload=npz_bytes())
def test_malformed_npz_is_a_user_error_or_a_valid_dataset(tmp_path, payload):
    path = tmp_path / "d.npz"
    path.write_bytes(payload)
    try:
        data = load_npz(path)
    except UserError as err:
        assert "\n" not in str(err)
        return
    assert data.x_train.ndim == 4 and data.y_train.shape[0] == data.x_train.shape[0] and data.n_classes >= 1


# ---------------------------------------------------------------------------------------------- results folders

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                              st.text(max_size=5)),
                    lambda children: st.one_of(st.lists(children, max_size=3),
                                               st.dictionaries(st.text(max_size=5), children, max_size=3)),
                    max_leaves=8)
CONFIG_KEYS = ["protocol", "strategies", "seeds", "strategy_params", "dataset_fingerprint"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, object]:
    """A finished tiny run's folder (built without training: rows and config as run_benchmark writes them)."""
    from bench.runner.resolve import job_specs
    folder = tmp_path_factory.mktemp("run") / "run"
    config = build_config(strategies=["random", "entropy"], seeds=2, out=folder,
                          protocol={"initial": 20, "budget": 20, "cycles": 2, "epochs": 2})
    store = RunStore(folder)
    for spec in job_specs(config):
        for cycle in range(2):
            record = {"run": "t", "dataset": "digits", "model": "cnn", "strategy": spec.strategy, "seed": spec.seed,
                      "cycle": cycle, "n_labeled": 20 + 20 * cycle, "test_acc": 0.5, "test_loss": 1.0,
                      "config_hash": spec.config_hash}
            store.add_cycle(record, np.arange(20) + 20 * cycle)
    store.write_config({**json.loads(json.dumps(config.result_defining(), default=str)),
                        "strategies": list(config.strategies), "seeds": list(config.seeds)})
    return folder, config


def _copy(source: Path, tmp_path: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"  # hypothesis reruns examples: a new folder each time
    shutil.copytree(source, folder)
    return folder


def opened_or_refused(folder: Path, config) -> bool:
    """Open the folder as run_benchmark does. True: accepted; False: refused in one line, folder untouched."""
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    try:
        store = RunStore(folder)
        stored = store.read_config()
        check_identity(store, widen(config, stored, folder, STRATEGIES.names()) if stored is not None else config)
    except UserError as err:
        assert "\n" not in str(err)
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
        return False
    return True


@given(key=st.sampled_from(CONFIG_KEYS), value=JSON, drop=st.booleans())
def test_an_edited_config_json_is_accepted_as_the_same_run_or_refused_in_one_line(finished_run, tmp_path, key,
                                                                                  value, drop):
    source, config = finished_run
    folder = _copy(source, tmp_path)
    stored = json.loads((folder / "config.json").read_text())
    if drop:
        stored.pop(key, None)
    else:
        stored[key] = value
    (folder / "config.json").write_text(json.dumps(stored))
    if not opened_or_refused(folder, config):
        return
    # accepted: then it is the same configuration, row for row
    rows = read_cycles(folder)
    assert (rows["config_hash"] == rows["strategy"].map({s: config.job_hash(s) for s in config.strategies})).all()


COLUMN_VALUES = st.one_of(st.integers(-2, 2), st.floats(), st.text(max_size=3), st.none(), st.booleans())


@given(column=st.sampled_from(["dataset", "strategy", "seed", "cycle", "n_labeled", "test_acc", "config_hash"]),
       values=st.lists(COLUMN_VALUES, min_size=8, max_size=8), drop=st.booleans())
def test_a_damaged_cycles_table_is_refused_in_one_line_or_read_whole(finished_run, tmp_path, column, values, drop):
    source, config = finished_run
    folder = _copy(source, tmp_path)
    rows = pd.read_parquet(folder / "cycles.parquet")
    try:
        if drop:
            rows = rows.drop(columns=[column])
        else:
            rows[column] = pd.Series(values, dtype=object)
        rows.to_parquet(folder / "cycles.parquet", index=False)
    except Exception:  # pyarrow cannot even write this mixture: nothing to test
        return
    if not opened_or_refused(folder, config):
        return
    table = read_cycles(folder)
    assert len(table) == 8 and not table.duplicated(["dataset", "strategy", "seed", "cycle"]).any()
    assert all(math.isfinite(float(s)) for s in table["seed"])
