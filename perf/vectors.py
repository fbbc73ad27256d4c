"""Vectors at real sizes: a `vectors:` run of N x d features (CIFAR-sized embeddings by default: 50,000 x 512 in 10
classes), 10 cycles of 1,000 labels, the `linear` and `mlp` models with entropy and random, timed per cycle
(training, scoring, selection) from the run's own rows; then the linear model's training set beside scikit-learn's
LogisticRegression and SGDClassifier fitted on the same labeled sets, each to the same training loss, in one run.

    python -m perf.vectors --out /tmp/vectors.json            # the full size (about 10 minutes on 2 cores)
    python -m perf.vectors --n 3000 --dim 32 --cycles 3 --budget 200 --initial 200 --epochs 5   # a miniature

The features are Gaussian clusters (class means drawn once, unit noise): learnable but not separable, so the
accuracy is neither chance nor 100%. "The same training loss": the harness trains with the protocol (epochs, batch,
SGD, weight decay); its final weights' mean cross-entropy on the labeled set is the target; each scikit-learn
estimator is refitted from scratch with its iteration count doubled (1, 2, 4, ...) until its own mean cross-entropy
on the same standardised set is at most the target, and the time of that fit is its time. LogisticRegression's
penalty is the same L2 as the harness's weight decay (C = 1 / (weight_decay x n)).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.core.seeding import derive_seed, numpy_rng, torch_generator
from bench.data.vectors import from_vector_arrays
from bench.models.build import build_model
from bench.runner.resolve import RunOptions, build_config
from bench.training.vector_trainer import VectorDeviceData, VectorTrainer
from perf.side_by_side import loadavg
from perf.strategy_costs import avx512_bf16

MODELS = {"linear": (), "mlp": (("hidden", "256"),)}
STRATEGIES = ("entropy", "random")
WEIGHT_DECAY = 5e-4  # the quick preset's, which the runs use: the L2 penalty LogisticRegression is given alike


def features(n: int, n_test: int, dim: int, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussian clusters: class means of norm about 2, unit noise (so neighbouring classes overlap); float32."""
    rng = numpy_rng(seed, "perf-vectors")
    means = rng.normal(size=(classes, dim)) * (2.0 / np.sqrt(dim))
    y, y_test = rng.integers(0, classes, n), rng.integers(0, classes, n_test)
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    x_test = (means[y_test] + rng.normal(size=(n_test, dim))).astype(np.float32)
    return {"x_train": x, "y_train": y.astype(np.int64), "x_test": x_test, "y_test": y_test.astype(np.int64)}


def protocol_of(args: argparse.Namespace, dataset: str, model: str) -> dict[str, Any]:
    return {"dataset": dataset, "model": model, "model_params": MODELS[model], "initial": args.initial,
            "budget": args.budget, "cycles": args.cycles, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "milestones": (0.8,)}


def run_cycles(args: argparse.Namespace, dataset: str, scratch: Path) -> tuple[pd.DataFrame, dict[str, Path]]:
    """The harness's own runs, one folder per model: their cycle rows."""
    from bench.runner.benchmark import run_benchmark

    rows, folders = [], {}
    for model in MODELS:
        folders[model] = scratch / model
        config = build_config("quick", list(STRATEGIES), 1, protocol_of(args, dataset, model), out=folders[model],
                              devices="cpu")
        before = loadavg()
        run_benchmark(config, RunOptions(jobs=1))
        table = pd.read_parquet(folders[model] / "cycles.parquet")
        table["load_before"], table["load_after"] = before, loadavg()
        rows.append(table)
    return pd.concat(rows, ignore_index=True), folders


def per_cycle(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Seconds per cycle (mean over the cycles), by model and strategy: training, scoring, selection proper."""
    found = []
    for (model, strategy), g in rows.groupby(["model", "strategy"]):
        picking = g[g["cycle"] < g["cycle"].max()]  # the last cycle acquires nothing
        found.append({"model": model, "strategy": strategy, "cycles": len(g),
                      "train_s": float(g["train_seconds"].mean()), "eval_s": float(g["eval_seconds"].mean()),
                      "score_s": float(picking["score_seconds"].mean()),
                      "select_s": float((picking["select_seconds"] - picking["score_seconds"]).mean()),
                      "final_acc": float(g.sort_values("cycle")["test_acc"].iloc[-1]),
                      "load": f"{g['load_before'].iloc[0]} -> {g['load_after'].iloc[0]}"})
    return found


def mean_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(y.size), y].mean())


def ours_fit(args: argparse.Namespace, data: VectorDeviceData, labeled: np.ndarray,
             classes: int) -> tuple[float, float]:
    """The harness's linear model trained on `labeled` as a cycle trains it: seconds, and its final training CE."""
    p = build_config("quick", ["random"], 1, protocol_of(args, "digits", "linear")).protocol
    trainer = VectorTrainer(data, p, torch.device("cpu"))
    model = build_model("linear", int(data.x_train.shape[1]), classes, derive_seed(0, "init-weights"), ())
    idx = torch.from_numpy(labeled)
    start = time.perf_counter()
    trainer.fit(model, idx, torch_generator(0, "train", 0))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = model(data.x_train[idx]).logits.numpy()
    return seconds, mean_cross_entropy(logits, data.y_train[idx].numpy())


def sklearn_to_loss(make: Any, x: np.ndarray, y: np.ndarray, target: float, most: int = 4096) -> dict[str, Any]:
    """Refit make(iterations) from scratch, doubling its iterations, until its training CE is at most `target` (at
    most `most` iterations: then the last fit's time and loss, marked not reached)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    iterations, seconds, loss = 1, 0.0, float("inf")
    while iterations <= most:
        estimator = make(iterations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            estimator.fit(x, y)
            seconds = time.perf_counter() - start
        scores = estimator.decision_function(x)
        if scores.ndim == 1:  # two classes: the log-odds of class 1, i.e. the logits [0, score]
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        loss = mean_cross_entropy(scores, y)
        if loss <= target:
            return {"seconds": seconds, "iterations": iterations, "loss": loss, "reached": True}
        iterations *= 2
    return {"seconds": seconds, "iterations": iterations // 2, "loss": loss, "reached": False}


def versus_sklearn(args: argparse.Namespace, arrays: dict[str, np.ndarray], folders: dict[str, Path],
                   rows: pd.DataFrame) -> list[dict[str, Any]]:
    """At a few cycles' labeled sets (random's): our linear fit against LogisticRegression and SGDClassifier."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    classes = int(arrays["y_train"].max()) + 1
    data = VectorDeviceData.from_vectors(from_vector_arrays("perf", arrays["x_train"], arrays["y_train"],
                                                            arrays["x_test"], arrays["y_test"]), torch.device("cpu"))
    picks = pd.read_parquet(folders["linear"] / "selections.parquet")
    picks = picks[picks["strategy"] == "random"]
    ran = rows[(rows["model"] == "linear") & (rows["strategy"] == "random")].set_index("cycle")
    cycle_s = ran["train_seconds"] + ran["eval_seconds"] + ran["select_seconds"]  # a whole cycle of the run, each
    found = []
    for cycle in sorted({0, (args.cycles - 1) // 2, args.cycles - 1}):
        added = picks[picks["cycle"] < cycle]["index"].to_numpy()
        labeled = np.concatenate([initial_set(args, data.n_train), added]).astype(np.int64)
        x, y = data.x_train[labeled].numpy().astype(np.float64), data.y_train[labeled].numpy()
        seconds, target = ours_fit(args, data, labeled, classes)
        n = labeled.size
        lbfgs = sklearn_to_loss(lambda k, n=n: LogisticRegression(C=1.0 / (WEIGHT_DECAY * n), max_iter=k, tol=1e-12),
                                x, y, target, most=1024)
        # one-vs-rest binary log losses: its softmax cross-entropy may never reach a multinomial model's (said so)
        sgd = sklearn_to_loss(lambda k: SGDClassifier(loss="log_loss", alpha=WEIGHT_DECAY, max_iter=k, tol=None,
                                                      random_state=0), x, y, target, most=args.epochs * 4)
        found.append({"cycle": cycle, "labeled": int(n), "ours_fit_s": seconds, "ours_loss": target,
                      "ours_cycle_s": float(cycle_s[cycle]), "logistic_regression": lbfgs, "sgd_classifier": sgd,
                      "load": loadavg()})
    return found


def initial_set(args: argparse.Namespace, n_pool: int) -> np.ndarray:
    from bench.training.loop import initial_set as drawn

    return drawn(0, n_pool, args.initial)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"perf.vectors: {result['n']} x {result['dim']} vectors, {result['classes']} classes, {result['cycles']} "
             f"cycles of {result['budget']} labels (initial {result['initial']}), {result['epochs']} epochs, batch "
             f"{result['batch_size']}; {m['cpu']} ({m['cores']} cores, avx512_bf16 on {m['avx512_bf16_cpus']}), "
             f"torch {m['torch']}, {result['wall_s']:.0f} s", "",
             "| model | strategy | train s/cycle | score s | select s | eval s | final acc | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['strategy']} | {r['train_s']:.3f} | {r['score_s']:.4f} | {r['select_s']:.4f} | "
              f"{r['eval_s']:.4f} | {100 * r['final_acc']:.1f}% | {r['load']} |" for r in result["per_cycle"]]
    lines += ["", "| labels | ours: fit s (train CE) | ours: whole cycle s | LogisticRegression s (iters) | "
              "ours / it | SGDClassifier s (epochs) | ours / it | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["sklearn"]:
        lr, sgd = r["logistic_regression"], r["sgd_classifier"]

        def cell(s: dict[str, Any]) -> str:
            return f"{s['seconds']:.3f} ({s['iterations']}{'' if s['reached'] else ', loss not reached'})"

        lines.append(f"| {r['labeled']} | {r['ours_fit_s']:.3f} ({r['ours_loss']:.4f}) | {r['ours_cycle_s']:.3f} | "
                     f"{cell(lr)} | {r['ours_fit_s'] / lr['seconds']:.2f} | {cell(sgd)} | "
                     f"{r['ours_fit_s'] / sgd['seconds']:.2f} | {r['load']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.vectors", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--n", type=int, default=50_000, help="training vectors")
    add("--n-test", type=int, default=10_000)
    add("--dim", type=int, default=512)
    add("--classes", type=int, default=10)
    add("--initial", type=int, default=1000)
    add("--budget", type=int, default=1000)
    add("--cycles", type=int, default=10)
    add("--epochs", type=int, default=50)
    add("--batch-size", type=int, default=128)
    add("--lr", type=float, default=0.05)
    add("--out", type=Path, help="JSON of the results (and the table beside it, .md)")
    args = parser.parse_args(argv)
    from perf.perf import machine

    start = time.perf_counter()
    arrays = features(args.n, args.n_test, args.dim, args.classes)
    with tempfile.TemporaryDirectory(prefix="perf-vectors-") as scratch:
        path = Path(scratch) / "features.npz"
        np.savez(path, **arrays)
        rows, folders = run_cycles(args, f"vectors:{path}", Path(scratch))
        cycles = per_cycle(rows)
        sk = versus_sklearn(args, arrays, folders, rows)
    result = {**{k: v for k, v in vars(args).items() if k != "out"}, "command": " ".join(sys.argv),
              "machine": {**machine(torch.device("cpu")), "avx512_bf16_cpus": avx512_bf16()},
              "per_cycle": cycles, "sklearn": sk, "wall_s": time.perf_counter() - start}
    table = markdown(result)
    print(table)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
