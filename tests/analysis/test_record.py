"""bench.analysis.record: the rows a report can use (load_cycles), the names of datasets given by path, the design a
folder records (stored_design) and the statistics of one report (analyse), checked against scipy and by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import record, verdicts
from bench.results.store import ResultsError
from conftest import cycles_frame

LABELS = [20, 40, 60]


def _store(folder, cycles: pd.DataFrame, config: dict | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    cycles.to_parquet(folder / "cycles.parquet", index=False)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_load_cycles_leaves_out_rows_without_accuracy_and_names_datasets_by_file(tmp_path):
    cycles = cycles_frame({("random", 0): [0.5, math.nan, 0.7], ("entropy", 0): [0.5, 0.6, math.nan]}, LABELS,
                          dataset="npz:/sets/slice.npz")
    rows = record.load_cycles(_store(tmp_path / "run", cycles))
    assert len(rows) == 4 and rows.attrs["rows_without_accuracy"] == 2
    assert set(rows["dataset"]) == {"slice"} and set(rows["dataset_spec"]) == {"npz:/sets/slice.npz"}
    assert rows["test_acc"].tolist() == [0.5, 0.7, 0.5, 0.6] and rows["seed"].dtype == np.int64
    failed = cycles_frame({("random", 0): [math.nan]}, LABELS)
    with pytest.raises(ResultsError, match="no finished cycles yet"):
        record.load_cycles(_store(tmp_path / "failed", failed))


def test_dataset_labels_by_hand():
    assert record.dataset_labels(["npz:/a/slice.npz", "imagefolder:/data/pets/", "digits", "vectors:x"]) == {
        "npz:/a/slice.npz": "slice", "imagefolder:/data/pets/": "pets", "digits": "digits", "vectors:x": "vectors:x"}
    # two files of one stem would share a name: each keeps its spec
    assert record.dataset_labels(["npz:/a/s.npz", "npz:/b/s.npz"]) == {"npz:/a/s.npz": "npz:/a/s.npz",
                                                                       "npz:/b/s.npz": "npz:/b/s.npz"}


def test_stored_design_reads_what_config_json_records_and_defaults_the_rest(tmp_path):
    assert record.stored_design(tmp_path) == record.Design()  # no config.json: margin 1 point, fixed seeds
    assert record.Design().margin == 0.01 and record.Design().plan is None
    config = {"strategies": ["margin", "random"], "dataset": {"classes": ["a", "b", "c", "d"], "n_test": 250},
              "analysis": {"baseline": "random", "margin": 0.02, "design": "fixed", "strategies": ["margin", "random"]},
              "device_type": "cuda", "protocol": {"deterministic": False}}
    found = record.stored_design(_store(tmp_path / "run", cycles_frame({("random", 0): [0.5]}, LABELS), config))
    assert found == record.Design(margin=0.02, plan=None, order=("margin", "random"), chance=0.25,
                                  asked=("margin", "random"), baseline="random", tolerance=1 / 250)
    with pytest.raises(ResultsError, match="margin must be a positive number"):
        record.stored_design(_store(tmp_path / "bad", cycles_frame({("random", 0): [0.5]}, LABELS),
                                    {"analysis": {"margin": -1}}))


def test_in_order_puts_the_named_first_then_the_rest_sorted():
    assert record.in_order({"c", "a", "b", "d"}, ["d", "x", "b", "d"]) == ["d", "b", "a", "c"]


def _aulc(accs: list[float]) -> float:
    return float(np.trapezoid(accs, LABELS) / (LABELS[-1] - LABELS[0]))


def test_analyse_answers_a_clear_lead_as_scipy_does():
    rng = np.random.default_rng(4)
    runs = {}
    for seed in range(6):
        base = [0.5 + 0.01 * seed, 0.6 + rng.normal(0, 0.01), 0.7 + rng.normal(0, 0.01)]
        runs[("random", seed)] = base
        runs[("entropy", seed)] = [base[0], base[1] + 0.04 + rng.normal(0, 0.005), base[2] + 0.03]
    result = record.analyse(cycles_frame(runs, LABELS), "random")
    row = result.verdicts[result.verdicts["family"] == verdicts.PRIMARY].iloc[0]
    diffs = [_aulc(runs[("entropy", s)]) - _aulc(runs[("random", s)]) for s in range(6)]
    assert (row["strategy"], row["other"], row["verdict"]) == ("entropy", "random", verdicts.BETTER)
    assert row["mean_diff"] == pytest.approx(np.mean(diffs))
    assert row["t_p"] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)  # one comparison: Holm changes nothing
    assert result.aulc_summary.set_index("strategy").loc["random", "n_seeds"] == 6


def test_two_strategies_at_chance_at_every_budget_are_never_called_equivalent():
    apart = [0.001, -0.001, 0.002, -0.002, 0.0005, -0.0005]  # a - random per seed: mean 0, within 0.2 points
    runs = {(name, seed): [0.10 + 0.001 * seed + (apart[seed] if name == "a" else 0.0)] * 3
            for name in ("random", "a") for seed in range(6)}
    cycles = cycles_frame(runs, LABELS)
    plain = record.analyse(cycles, "random").verdicts.iloc[0]
    assert plain["verdict"] == verdicts.EQUIVALENT  # well within the 1-point margin
    at_chance = record.analyse(cycles, "random", chance={"d": 0.1}).verdicts.iloc[0]  # 10 classes: below 19%
    assert at_chance["verdict"] == verdicts.UNDECIDED and at_chance["note"] == record.AT_CHANCE
    # one budget above the near-chance line (19%) and the interval speaks again
    learned = {k: [*v[:2], 0.5] for k, v in runs.items()}
    assert record.analyse(cycles_frame(learned, LABELS), "random", chance={"d": 0.1}).verdicts.iloc[0][
        "verdict"] == verdicts.EQUIVALENT
