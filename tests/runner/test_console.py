"""bench.runner.console: the resolved run in words, line by line, from a protocol given field by field; the compare
line for each shape of question (against the baseline, every pair, without the baseline, with context, one strategy,
a margin, rounds); the accuracy table's mean ± std over seeds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bench.results.store import RunStore
from bench.runner.console import accuracy_table, comparison_line, describe_run
from bench.runner.resolve import RunOptions, build_config

PROTOCOL = {"epochs": 10, "initial": 20, "budget": 10, "cycles": 3, "batch_size": 16, "precision": "fp32",
            "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "milestones": (0.8,), "warm_start": True}


def test_the_run_is_described_line_by_line(tmp_path):
    config = build_config(strategies=["ll", "random"], seeds=3, protocol=PROTOCOL, out=tmp_path / "R")
    data = SimpleNamespace(x_train=np.zeros((100, 8, 8, 1)), x_test=np.zeros((40, 8, 8, 1)), n_classes=10, pad=2,
                           flip=False)
    assert describe_run(config, data, ["cpu"]).splitlines() == [
        "dataset   digits: 100 train / 40 test images, 8x8x1, 10 classes (augmentation: crop pad 2, flip False)",
        "model     cnn",
        "protocol  preset quick: initial 20, budget 10, cycles 3 (labels 20..40), subset whole pool",
        "training  10 epochs, batch 16, SGD lr 0.05 momentum 0.9 weight decay 0.0005, milestones [8] (x0.1), warm "
        "start, corrected convention, precision fp32 -> float32",
        "params    learning-loss: detach_after=6, loss=ranking, margin=1.0, weight=1.0",
        "schedule  milestones at [0.8] of 10 epochs, learning-loss.detach_after at 0.6 of 10 epochs",
        "jobs      2 strategies x 3 seeds = 6: learning-loss, random; seeds 0, 1, 2",
        "devices   cpu",
        f"output    {tmp_path / 'R'}",
    ]


def test_a_run_not_loaded_cold_started_unaugmented_and_nondeterministic_says_so(tmp_path):
    protocol = {**PROTOCOL, "warm_start": False, "augment": False, "deterministic": False, "subset": 500,
                "milestones": (), "image_size": 16}
    config = build_config(strategies=["random"], seeds=1, protocol=protocol, out=tmp_path / "R")
    lines = describe_run(config, "not loaded (a dry run)", ["cpu", "cpu"], model_note="2,000 parameters").splitlines()
    assert lines[0] == "dataset   digits: not loaded (a dry run)"
    assert lines[1] == "model     cnn, images resized to 16x16: 2,000 parameters"
    assert lines[2].endswith("(labels 20..40), subset 500")
    assert lines[3].endswith("milestones none (x0.1), cold start, corrected convention, precision fp32 -> float32, "
                             "nondeterministic")
    assert not any(line.startswith("params ") for line in lines)  # random has no parameters
    assert "devices   cpu, cpu" in lines


FIXED = "verdicts better, worse, equivalent within ±1 AULC point or undecided; fixed seeds, Holm over the comparisons"


@pytest.mark.parametrize(("asked", "held", "line"), [
    (["random", "entropy"], ["random", "entropy"], f"compare   each strategy against random (1 comparison); {FIXED}"),
    (["entropy", "margin", "random"], [],
     f"compare   each strategy against random (2 comparisons), and every pair (3) as a family of its own; {FIXED}"),
    (["entropy", "margin"], [],
     "compare   random is not in this run: the report compares the 2 strategies with each other (1 comparison: "
     f"entropy vs margin); add random to compare against random sampling; {FIXED}"),
    (["entropy", "margin"], ["random", "entropy", "margin"],
     "compare   this run asks (1 comparison: entropy vs margin), the primary family; the folder's other strategies "
     f"(random) are context, 2 comparisons in a family of their own; {FIXED}"),
    (["entropy", "random"], ["random", "entropy", "margin"],
     "compare   this run asks each strategy against random (1 comparison: entropy vs random), the primary family; "
     f"the folder's other strategies (margin) are context, 2 comparisons in a family of their own; {FIXED}"),
    (["a", "b", "c", "d"], ["a", "b", "c", "d", "e"],
     "compare   this run asks (6 comparisons), the primary family; the folder's other strategies (e) are context, 4 "
     f"comparisons in a family of their own; {FIXED}"),  # more than 3 pairs: counted, not listed
    (["entropy"], ["entropy"], "compare   one strategy: nothing to compare (add random or another strategy)"),
])
def test_the_compare_line_says_which_comparisons_the_report_makes(asked, held, line):
    assert comparison_line(asked, held, "random", RunOptions()) == line


def test_the_compare_line_says_the_margin_and_the_rounds():
    line = comparison_line(["random", "entropy"], [], "random", RunOptions(margin=0.005, max_seeds=20))
    assert line.endswith("verdicts better, worse, equivalent within ±0.5 AULC points or undecided; seeds in rounds "
                         "up to 20 (--seeds auto), stopping when every comparison is decided")
    assert "±2 AULC points" in comparison_line(["random", "entropy"], [], "random", RunOptions(margin=0.02))
    # a margin of one point reached by arithmetic (0.1 * 0.1 = 0.010000000000000002) is still one point, as the report
    # words it (bench.analysis.design.margin_text)
    assert "±1 AULC point or" in comparison_line(["random", "entropy"], [], "random", RunOptions(margin=0.1 * 0.1))


def test_the_accuracy_table_shows_mean_and_std_over_seeds_per_budget(tmp_path, capsys):
    store = RunStore(tmp_path)
    accs = {("random", 0): (0.5, 0.6), ("random", 1): (0.7, 0.8), ("entropy", 0): (0.5, 0.9)}
    for (strategy, seed), (first, second) in accs.items():
        for cycle, acc in enumerate((first, second)):
            store.add_cycle({"run": "r", "dataset": "digits", "strategy": strategy, "seed": seed, "cycle": cycle,
                             "n_labeled": 20 * (cycle + 1), "test_acc": acc}, np.arange(20) + 20 * cycle)
    accuracy_table(store)
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "random" in line
            or "entropy" in line}
    # random: 60.0 at 20 labels and 70.0 at 40, each std 14.1 (ddof 1); entropy's one seed: no spread
    assert "60.0 ± 14.1" in rows["random"] and "70.0 ± 14.1" in rows["random"]
    assert "50.0 ± 0.0" in rows["entropy"] and "90.0 ± 0.0" in rows["entropy"]
    accuracy_table(RunStore(tmp_path / "empty"))
    assert capsys.readouterr().out == ""

