"""perf/strategy_costs.py at a tiny pool: each strategy runs in its own process and its row carries what the docs'
table is made of; a run past the timeout says so; the reference adapter maps the reference's pool positions back
to the candidates' (a stand-in DeepAL+ tree in a temporary --reference-dir); bad flags are one line and exit 2."""

from __future__ import annotations

import json
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from perf import strategy_costs, strategy_refs
from strategies import create_strategy
from strategies.base import entropy

FAST = ["entropy", "margin", "random"]


def test_a_tiny_run_writes_every_field_of_its_rows(tmp_path):
    out = tmp_path / "costs.json"
    start = time.perf_counter()
    assert strategy_costs.main(["--sizes", "300", "--dim", "16", "--k", "10", "--labeled", "50", "--strategies",
                                *FAST, "--out", str(out)]) == 0
    assert time.perf_counter() - start < 60  # about 4 s a process on 2 loaded cores
    got = json.loads(out.read_text())
    assert got["machine"]["avx512_bf16_cpus"] == open("/proc/cpuinfo").read().count("avx512_bf16")
    assert got["sizes"] == [300] and got["dim"] == 16 and "--strategies entropy margin random" in got["command"]
    assert [r["strategy"] for r in got["rows"]] == FAST
    for r in got["rows"]:
        ours = r["ours"]
        assert ours["status"] == "ok" and ours["seconds"] > 0 and ours["peak_mib"] >= 0, r
        assert ours["details"]["picks"] == ours["details"]["distinct"] == 10  # k distinct positions
        assert len(r["load_before"]) == len(r["load_after"]) == 3 and r["n"] == 300 and r["k"] == 10
        assert r["ratio"] is None and r["reference"]["status"] == "not run"
    notes = {r["strategy"]: r["reference"]["note"] for r in got["rows"]}
    assert notes == {"entropy": "no --reference-dir", "margin": "no --reference-dir", "random": "no reference adapter"}
    assert got["growth"] == []  # one size: nothing grows


def test_a_run_past_the_timeout_is_stopped_and_says_so():
    start = time.perf_counter()
    side = strategy_costs.measured([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert side.status == "timeout" and side.note == "did not finish in 0.5 s" and side.seconds is None
    assert time.perf_counter() - start < 10
    failed = strategy_costs.measured([sys.executable, "-c", "raise SystemExit('no memory left')"], 10)
    assert failed.status == "failed" and failed.note == "no memory left"


def test_growth_flags_memory_that_grows_with_the_square_of_the_pool():
    def row(name, n, mib):
        side = strategy_costs.Side("ok", seconds=n / 1000, peak_mib=mib)
        return strategy_costs.CostRow(name, n, 10, {}, side, "", strategy_costs.Side("not run"), [0] * 3, [0] * 3)

    rows = [row("pairs", 10_000, 400.0), row("pairs", 50_000, 10_000.0), row("vector", 10_000, 40.0),
            row("vector", 50_000, 200.0)]
    grown = {g["strategy"]: g for g in strategy_costs.growth(rows)}
    assert grown["pairs"]["memory_factor"] == 25 and grown["pairs"]["quadratic"]
    assert grown["vector"]["memory_factor"] == 5 and not grown["vector"]["quadratic"]
    assert grown["vector"]["seconds_factor"] == pytest.approx(5)


def test_the_adapter_maps_the_references_pool_positions_to_the_candidates(tmp_path, monkeypatch):
    # a stand-in for DeepAL+'s EntropySampling, reading the pool through the adapter's Data and Net as theirs does
    tree = tmp_path / "SineZHAN+deepALplus" / "query_strategies"
    tree.mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    (tree / "entropy_sampling.py").write_text(textwrap.dedent("""
        import numpy as np
        class EntropySampling:
            def __init__(self, dataset, net, args_input, args_task):
                self.dataset, self.net = dataset, net
            def query(self, n):
                idx, data = self.dataset.get_unlabeled_data()
                p = self.net.predict_prob(data).numpy()
                return idx[np.argsort((p * np.log(p)).sum(1), kind="stable")[:n]]
    """))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m.split(".")[0] == "query_strategies"]:
        monkeypatch.delitem(sys.modules, name)
    arrays = strategy_refs.pool(200, 30, 8, 4, seed=0)  # the seed strategy_inputs builds its pool from
    theirs = strategy_refs.REFERENCES["entropy"][1](tmp_path, arrays, 12, {})()
    for name in [m for m in sys.modules if m.split(".")[0] == "query_strategies"]:
        monkeypatch.delitem(sys.modules, name)
    by_hand = np.argsort(-entropy(torch.from_numpy(arrays["probs"])).numpy(), kind="stable")[:12]
    assert theirs.tolist() == by_hand.tolist() and theirs.min() >= 0  # candidates' positions, not the pool's
    inputs = strategy_costs.strategy_inputs("entropy", 200, 30, 8, 4, (1, 8, 8), create_strategy("entropy"))
    assert create_strategy("entropy").select(inputs, 12).tolist() == by_hand.tolist()  # both sides, one pool
    assert inputs.embeddings is None and inputs.probs.dtype == torch.float64  # only what entropy needs


@pytest.mark.parametrize("flags, says", [
    (["--k-for", "batchbald"], "--k-for takes NAME=INTEGER"),
    (["--k-for", "batchbald=ten"], "'ten' is not an integer"),
    (["--param", "probcover=0.3"], "--param takes NAME.KEY=VALUE"),
    (["--strategies", "entropyy"], "entropy"),
    (["--vaal-image", "8x8"], "--vaal-image must be CxHxW"),
])
def test_bad_flags_are_one_line_and_exit_2(flags, says, capsys, tmp_path):
    assert strategy_costs.main([*flags, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not (tmp_path / "x.json").exists()
