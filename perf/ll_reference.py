"""Learning loss as the reference code runs it, written out independently of the harness's trainer and strategy,
on the harness's data, initial labeled sets and initial weights: does our learning-loss job say something
about the method, or about our implementation?

The reference procedure (Yoo & Kweon, CVPR 2019, and the authors' released training loop), as facts: the backbone
and the loss-prediction module each get their own SGD with the same settings and MultiStepLR; per batch the
loss is the mean cross-entropy plus weight x the pairwise ranking loss of the module's predictions (the batch
against its flip, sign 2*sign(clamp(l_i - l_j, 0)) - 1, hinge at the margin, summed and divided by the number
of pairs); the stage features are detached once the 0-based epoch exceeds detach_after; the module pools each
stage globally, a linear layer to 128 and ReLU per stage, concatenated, linear to one output; acquisition takes
the candidates with the highest predicted loss; weights carry over between cycles with fresh optimizers.

    python -m perf.ll_reference [--seeds 5] [--jobs 2]

Writes results/ll-reference.csv (one row per seed and cycle) and prints per-cycle means beside the harness's
rows of a run folder (--compare DIR); this script trains in fp32, so compare it with a run at --precision fp32.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from joblib import Parallel, delayed
from torch import nn

from bench.core.config import preset_protocol
from bench.core.seeding import torch_generator
from bench.data.datasets import load_dataset
from bench.training.jobs import JobSpec
from bench.training.loop import candidates, initial_model, initial_set, pool_order
from bench.training.trainer import DeviceData, crop_flip


class ModuleNet(nn.Module):
    """The loss-prediction module: per stage GAP -> Linear(C, 128) -> ReLU, concatenated, Linear -> 1."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, 128) for c in channels)
        self.out = nn.Linear(128 * len(channels), 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        parts = [F.relu(fc(F.adaptive_avg_pool2d(f, 1).flatten(1))) for fc, f in zip(self.fcs, features, strict=True)]
        return self.out(torch.cat(parts, 1)).view(-1)


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    half = pred.shape[0] // 2
    diff_p = (pred - pred.flip(0))[:half]
    diff_t = (target - target.flip(0))[:half].detach()
    one = 2 * torch.sign(torch.clamp(diff_t, min=0)) - 1
    return torch.clamp(margin - one * diff_p, min=0).sum() / max(half, 1)


def stages(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the stage maps of a harness Backbone, read through its parts (stem, stages, classifier)."""
    out, maps = model.stem(x), []
    for stage in model.stages:
        out = stage(out)
        maps.append(out)
    return model.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1)), maps


def one_seed(seed: int, epochs: int) -> list[dict]:
    torch.set_num_threads(1)
    p = dataclasses.replace(preset_protocol("quick", epochs=epochs), precision="fp32")
    images = load_dataset(p.dataset)
    data = DeviceData.from_images(images, torch.device("cpu"))
    n_pool = images.x_train.shape[0]
    spec = JobSpec("reference", p.dataset, "learning-loss", seed, p)
    model = initial_model(spec, images.x_train.shape[1], images.n_classes)
    torch.manual_seed(seed)
    module = ModuleNet(list(model.stage_channels))
    labeled = initial_set(seed, n_pool, p.initial)
    detach_after = round(0.6 * p.epochs)
    rows = []
    for cycle in range(p.cycles):
        opts = [torch.optim.SGD(m.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
                for m in (model, module)]
        scheds = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=list(p.milestones), gamma=p.gamma) for o in opts]
        generator = torch_generator(seed, "reference-train", cycle)
        model.train()
        module.train()
        idx_all = torch.from_numpy(labeled)
        for epoch in range(p.epochs):
            order = idx_all[torch.randperm(idx_all.numel(), generator=generator)]
            for first in range(0, order.numel(), p.batch_size):
                idx = order[first:first + p.batch_size]
                if idx.numel() < 2:
                    continue
                x = crop_flip(data.x_train[idx], data.pad, data.flip, generator)
                logits, maps = stages(model, data.normalise(x))
                target = F.cross_entropy(logits, data.y_train[idx], reduction="none")
                if epoch > detach_after:
                    maps = [m.detach() for m in maps]
                loss = target.sum() / target.size(0) + ranking_loss(module(maps), target, 1.0)
                for o in opts:
                    o.zero_grad()
                loss.backward()
                for o in opts:
                    o.step()
            for s in scheds:
                s.step()
        model.eval()
        module.eval()
        with torch.no_grad():
            logits, _ = stages(model, data.normalise(data.x_test))
            acc = float((logits.argmax(1) == data.y_test).float().mean())
        rows.append({"seed": seed, "cycle": cycle, "n_labeled": int(labeled.size), "test_acc": acc})
        if cycle < p.cycles - 1:
            cand = candidates(pool_order(seed, cycle, n_pool), labeled, p.subset)
            with torch.no_grad():
                _, maps = stages(model, data.normalise(data.x_train[torch.from_numpy(cand)]))
                predicted = module(maps)
            picks = cand[torch.argsort(predicted, descending=True)[:p.budget].numpy()]
            labeled = np.concatenate([labeled, picks])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--compare", type=Path, help="a run folder whose learning-loss rows to set beside")
    parser.add_argument("--out", type=Path, default=Path("results") / "ll-reference.csv")
    args = parser.parse_args(argv)
    runs = Parallel(n_jobs=args.jobs)(delayed(one_seed)(seed, args.epochs) for seed in range(args.seeds))
    rows = pd.DataFrame([row for run in runs for row in run])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out, index=False)
    table = rows.groupby("n_labeled")["test_acc"].agg(["mean", "std"]).mul(100).round(1)
    table.columns = ["reference procedure: mean %", "sd"]
    if args.compare:
        ours = pd.read_parquet(args.compare / "cycles.parquet")
        for name in sorted(set(ours["strategy"])):
            mine = ours[(ours["strategy"] == name) & (ours["seed"] < args.seeds)]
            table[f"{name} (harness): mean %"] = mine.groupby("n_labeled")["test_acc"].mean().mul(100).round(1)
    print(table.to_string())


if __name__ == "__main__":
    main()
