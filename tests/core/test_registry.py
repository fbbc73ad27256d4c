"""What a job ran is in its identity: a user's strategy file and the helper modules a model file imports are
hashed as they were run, and a worker that would run other code than the driver hashed refuses."""

from __future__ import annotations

import hashlib
import json
import sys

import pandas as pd
import pytest
from launch import run_cli

import strategies
from bench.core.config import Protocol
from bench.core.registry import IMPORTED_CODE, code_digest, import_user_file
from bench.models.backbones import MODELS
from bench.runner.scheduler import DataSource, execute
from bench.training.jobs import JobSpec
from bench.training.loop import start_state
from conftest import TINY

CONFIDENT = '''
import torch
from strategies import Strategy


class Confident(Strategy):
    """Picks the {which}-confident candidates."""

    name = "test-confident"
    needs = frozenset({{"probs"}})

    def score(self, inputs):
        return {sign}inputs.probs.max(dim=1).values
'''


def test_an_edited_strategy_file_is_another_configuration(tmp_path):
    path, out = tmp_path / "confident.py", tmp_path / "run"
    runs = []
    for which, sign in (("most", ""), ("least", "-")):
        path.write_text(CONFIDENT.format(which=which, sign=sign))
        runs.append(run_cli("--strategy-file", path, "--strategies", "random", "test-confident", *TINY, "--out", out))
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 2 and "holds" in runs[1].stderr and "another configuration" in runs[1].stderr
    config = json.loads((out / "config.json").read_text())  # the first run's, untouched
    path.write_text(CONFIDENT.format(which="most", sign=""))
    assert config["strategy_code"] == {"test-confident": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert len(pd.read_parquet(out / "cycles.parquet")) == 2 * 3


def test_a_helper_module_of_a_model_file_enters_its_digest(tmp_path, monkeypatch):
    helper, net = tmp_path / "helper_width_9d2.py", tmp_path / "net_9d2.py"
    helper.write_text("WIDTH = 8\n")
    net.write_text("from helper_width_9d2 import WIDTH\nfrom torch import nn\n"
                   "from bench.models.backbones import register_model\n"
                   "\n\n@register_model('test-helper-net')\ndef net(c, n):\n"
                   "    return nn.Sequential(nn.Conv2d(c, WIDTH, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
                   " nn.Linear(WIDTH, n))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    digests = []
    for width in (8, 16):
        helper.write_text(f"WIDTH = {width}\n")
        sys.modules.pop("helper_width_9d2", None)
        with MODELS.scoped():
            import_user_file(net, MODELS, "registers no model")
        assert set(IMPORTED_CODE[str(net.resolve())]) == {str(net.resolve()), str(helper.resolve())}
        digests.append(code_digest(net))
    assert digests[0] != digests[1]  # the model file did not change; its helper did
    assert hashlib.sha256(net.read_bytes()).hexdigest() not in digests


def test_a_worker_whose_files_changed_since_the_driver_hashed_them_fails_its_job(tmp_path):
    path = tmp_path / "confident_w.py"
    path.write_text(CONFIDENT.format(which="most", sign="").replace("test-confident", "test-confident-w"))
    with strategies.STRATEGIES.scoped():
        import_user_file(path, strategies.STRATEGIES, "defines no strategy")
        protocol = Protocol(initial=10, budget=5, cycles=2, epochs=1, precision="fp32")
        spec = JobSpec("r", "digits", "test-confident-w", 0, protocol)
        source = DataSource("digits", "data", False, (str(path.resolve()),),
                            code=((str(path.resolve()), "0" * 64),))
        outcome = execute(spec, start_state(spec, 1437), source)
        assert outcome.error is not None and "changed since the run started" in outcome.error
        fine = DataSource("digits", "data", False, (str(path.resolve()),), code=((str(path.resolve()),
                                                                                  code_digest(path)),))
        assert execute(spec, start_state(spec, 1437), fine).error is None


@pytest.mark.parametrize("code", ["import sys\nsys.exit(0)\n", "raise SystemExit(3)\n"])
def test_a_strategy_file_that_exits_at_import_is_one_line(cli, tmp_path, code):
    path = tmp_path / "exits.py"
    path.write_text(code)
    status, _, err = cli("--strategy-file", path, "--dry-run")
    assert status == 2 and err.count("\n") == 1 and "called sys.exit(" in err


EXITS = '''
import sys
from strategies import Strategy


class Exits(Strategy):
    """Ends the process from inside score()."""

    name = "test-exits"

    def score(self, inputs):
        sys.exit({code})
'''


@pytest.mark.parametrize("code", [0, 3])
def test_a_strategy_that_exits_fails_its_job_and_the_others_finish(cli, tmp_path, code):
    path = tmp_path / "exits.py"
    path.write_text(EXITS.format(code=code))
    with strategies.STRATEGIES.scoped():
        status, out, err = cli("--strategy-file", path, "--strategies", "test-exits", "random", *TINY,
                               "--out", tmp_path / "run")
    assert status == 1, (out, err)
    failures = json.loads((tmp_path / "run" / "failures.json").read_text())
    assert [f["job"] for f in failures] == ["test-exits/seed0"]
    assert failures[0]["error"].startswith(f"SystemExit: the job's code called sys.exit({code})")
    rows = pd.read_parquet(tmp_path / "run" / "cycles.parquet")
    assert set(rows.loc[rows["strategy"] == "random", "cycle"]) == {0, 1, 2}  # the other job finished
