"""The pool that perf.strategy_costs measures every strategy on, and the adapters that run the reference
implementations on it: our code calling theirs, imported at run time from a folder of fetched repositories
(`--reference-dir`), never copied here.

    python perf/strategy_refs.py --dir DIR --strategy kmeans --n 10000 --k 1000

This file imports numpy and torch only (the harness is not imported), so that it runs under the interpreter the
references need (faiss for the TypiClust repository's two methods: `--reference-python`). DIR holds one extracted
tree per repository, named owner+name as the fetch mirror names them (SineZHAN+deepALplus, avihu111+TypiClust,
baal-org+baal, BlackHC+batchbald_redux, cure-lab+deep-active-learning), and optionally `_deps/`, a folder of
packages a reference imports that the interpreter lacks (batchbald_redux's toma), put on sys.path first.

One run prints one JSON line: the reference's seconds, its peak memory above the inputs' (VmHWM), its picks' count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------- the pool


def pool(n: int, labeled: int, dim: int, classes: int, seed: int) -> dict[str, np.ndarray]:
    """A pool with the cluster structure diversity methods care about: `classes` classes x 100 sub-clusters of
    varying spread in `dim` dimensions, the labeled rows first; logits from a fixed linear head on the embeddings.
    Both sides of every row read these arrays (ours as PoolInputs, theirs through an adapter)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    subs = centres.repeat(100, 0) + 0.5 * rng.normal(size=(classes * 100, dim))
    spread = rng.uniform(0.1, 0.3, size=classes * 100)
    which = rng.integers(0, classes * 100, size=n + labeled)
    x = (subs[which] + spread[which, None] * rng.normal(size=(n + labeled, dim))).astype(np.float32)  # [L + n, d]
    head_w = (rng.normal(size=(classes, dim)) / np.sqrt(dim)).astype(np.float32)  # [C, d]
    head_b = rng.normal(size=classes).astype(np.float32)  # [C]
    logits = x[labeled:] @ head_w.T + head_b  # [n, C] float32
    z = logits.astype(np.float64)
    z -= z.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)  # [n, C] float64
    return {"embeddings": x[labeled:], "labeled_embeddings": x[:labeled], "labeled_labels": which[:labeled] // 100,
            "logits": logits, "probs": probs, "head_w": head_w, "head_b": head_b}


def mc_samples(arrays: dict[str, np.ndarray], samples: int, rate: float, seed: int) -> np.ndarray:
    """[T, n, C] softmax of the pool's head on inverted-dropout copies of the embeddings: what the references
    are handed (ours draws its own from a head with the same weights, inside its select())."""
    g = torch.Generator().manual_seed(seed)
    emb, w, b = (torch.from_numpy(arrays[key]) for key in ("embeddings", "head_w", "head_b"))
    out = []
    for _ in range(samples):
        mask = (torch.rand(emb.shape, generator=g) >= rate).float() / (1 - rate)  # [n, d]
        out.append(torch.softmax((emb * mask) @ w.T + b, dim=1).double())
    return torch.stack(out).numpy()


def peak_mib() -> float:
    """VmHWM: this address space's peak resident memory (perf.timing.vm_hwm_mib, which this file cannot import)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


# ---------------------------------------------------------------------------------------------- stand-ins


def _stub(name: str, **attrs: Any) -> None:
    """A module the reference imports for something the measurement does not use (a progress bar, a logger)."""
    if name not in sys.modules:
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.SimpleNamespace(**attrs)  # type: ignore[assignment]


class _Logger:
    def __getattr__(self, _: str) -> Callable[..., None]:
        return lambda *a, **k: None


class _Data:
    """DeepAL+'s data.Data, the parts its strategies read: the labeled mask over the pool (labeled rows first)."""

    def __init__(self, labeled: int, n: int) -> None:
        self.n_pool = labeled + n
        self.labeled_idxs = np.arange(self.n_pool) < labeled

    def get_unlabeled_data(self) -> tuple[np.ndarray, str]:
        return np.flatnonzero(~self.labeled_idxs), "unlabeled"

    def get_train_data(self) -> tuple[np.ndarray, str]:
        return self.labeled_idxs.copy(), "train"


class _Net:
    """DeepAL+'s Net, answering from the pool's arrays instead of a network."""

    def __init__(self, arrays: dict[str, np.ndarray], samples: np.ndarray | None = None) -> None:
        self.a, self.samples = arrays, samples

    def predict_prob(self, data: Any) -> torch.Tensor:
        return torch.from_numpy(self.a["probs"])

    def predict_prob_dropout_split(self, data: Any, n_drop: int = 10) -> torch.Tensor:
        return torch.from_numpy(self.samples)

    def get_embeddings(self, data: str) -> torch.Tensor:  # k-center greedy asks for the labeled rows too
        return torch.from_numpy(np.concatenate([self.a["labeled_embeddings"], self.a["embeddings"]])
                                if data == "train" else self.a["embeddings"])

    def get_grad_embeddings(self, data: Any) -> np.ndarray:
        """The gradient embedding their nets.py builds per sample, in one array operation: (p - onehot(argmax))
        outer the embedding, float64 [n, C * d] as theirs."""
        p = self.a["probs"]
        g = p - np.eye(p.shape[1])[p.argmax(1)]  # [n, C]
        return (g[:, :, None] * self.a["embeddings"][:, None, :]).reshape(p.shape[0], -1)


# ---------------------------------------------------------------------------------------------- adapters

# An adapter imports the reference from --reference-dir and sets it up on the pool (untimed); the call it returns
# is the selection, timed. Adapter(root, arrays, k, params) -> Call.
Call = Callable[[], np.ndarray]
Adapter = Callable[[Path, dict, int, dict], Call]


def _deepal(root: Path, module: str, cls: str, arrays: dict, k: int, samples: np.ndarray | None = None,
            **kw: Any) -> Call:
    sys.path.insert(0, str(root / "SineZHAN+deepALplus"))
    _stub("tqdm", tqdm=lambda it, **_: it)
    strategy = getattr(__import__(f"query_strategies.{module}", fromlist=[cls]), cls)
    labeled = arrays["labeled_embeddings"].shape[0]
    s = strategy(_Data(labeled, arrays["embeddings"].shape[0]), _Net(arrays, samples), None, None, **kw)
    return lambda: np.asarray(s.query(k)) - labeled


def _typiclust_repo(root: Path, arrays: dict) -> Any:
    """The TypiClust repository's pycls.al, its feature loader answering with the pool (L2-normalised, as their
    load_features(normalized=True)) and faiss's GPU copy left on the CPU."""
    sys.path.insert(0, str(root / "avihu111+TypiClust" / "deep-al"))
    feats = np.concatenate([arrays["labeled_embeddings"], arrays["embeddings"]])
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    utils = types.SimpleNamespace(load_features=lambda *a, **k: feats)
    sys.modules["pycls.datasets"] = types.SimpleNamespace(utils=utils)  # type: ignore[assignment]
    sys.modules["pycls.datasets.utils"] = utils  # type: ignore[assignment]
    import faiss  # noqa: PLC0415 (only the reference interpreter has it)

    faiss.index_cpu_to_all_gpus = lambda index: index
    torch.Tensor.cuda = lambda self, *a, **k: self  # their graph is built with .cuda()
    import builtins  # noqa: PLC0415

    builtins.print = lambda *a, **k: None  # they print every iteration
    return __import__("pycls.al.typiclust", fromlist=["x"]), __import__("pycls.al.prob_cover", fromlist=["x"])


def typiclust_ref(root: Path, arrays: dict, k: int, params: dict) -> Call:
    tc, _ = _typiclust_repo(root, arrays)
    labeled, n = arrays["labeled_embeddings"].shape[0], arrays["embeddings"].shape[0]
    cfg = {"DATASET": {"NAME": "pool"}, "RNG_SEED": 0}
    # their constructor clusters the pool: it is part of the selection, timed
    return lambda: np.asarray(tc.TypiClust(cfg, np.arange(labeled), np.arange(labeled, labeled + n), k)
                              .select_samples()[0]) - labeled


def probcover_ref(root: Path, arrays: dict, k: int, params: dict) -> Call:
    _, pc = _typiclust_repo(root, arrays)
    labeled, n = arrays["labeled_embeddings"].shape[0], arrays["embeddings"].shape[0]
    cfg = {"DATASET": {"NAME": "pool"}, "RNG_SEED": 0}
    # their constructor builds the delta-ball graph: part of the selection, timed
    return lambda: np.asarray(pc.ProbCover(cfg, np.arange(labeled), np.arange(labeled, labeled + n), k,
                                           float(params["delta"])).select_samples()[0]) - labeled


def _baal(root: Path) -> Any:
    """baal's heuristics without its package __init__ (which imports its model wrapper and its logger)."""
    base = root / "baal-org+baal" / "baal"
    _stub("structlog", get_logger=lambda *a, **k: _Logger())
    for name, path in (("baal", base), ("baal.active", base / "active"), ("baal.utils", base / "utils")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    return __import__("baal.active.heuristics.stochastics", fromlist=["x"]), __import__(
        "baal.active.heuristics.heuristics", fromlist=["x"])


def stochastic_ref(mode: str, base: str) -> Adapter:
    def run(root: Path, arrays: dict, k: int, params: dict) -> Call:
        st, h = _baal(root)
        cls = {"power": st.PowerSampling, "softmax": st.GibbsSampling, "softrank": st.RankBasedSampling}[mode]
        if base == "entropy":
            heuristic, predictions = h.Entropy(), arrays["probs"][:, :, None]  # [n, C, 1]
        else:
            samples = mc_samples(arrays, int(params["samples"]), float(params["dropout"]), 0)
            heuristic, predictions = h.BALD(), np.moveaxis(samples, 0, 2)  # [n, C, T]
        s = cls(heuristic, query_size=k, temperature=1 / float(params["beta"]))
        return lambda: np.asarray(s.get_ranks(predictions)[0])

    return run


def batchbald_ref(root: Path, arrays: dict, k: int, params: dict) -> Call:
    sys.path.insert(0, str(root / "BlackHC+batchbald_redux"))
    from batchbald_redux import batchbald  # noqa: PLC0415 (from --reference-dir, at run time)

    samples = mc_samples(arrays, int(params["samples"]), float(params["dropout"]), 0)
    log_probs = torch.from_numpy(np.log(np.moveaxis(samples, 0, 1)))  # [n, K, C]
    return lambda: np.asarray(batchbald.get_batchbald_batch(log_probs, k, int(params["num_samples"]),
                                                            dtype=torch.double).indices)


def cluster_margin_ref(root: Path, arrays: dict, k: int, params: dict) -> Call:
    """cure-lab's ClusterMarginSampling.query: its own average-linkage tree over the whole pool."""
    sys.path.insert(0, str(root / "cure-lab+deep-active-learning"))
    from query_strategies.batch_active_learning_at_scale import ClusterMarginSampling  # noqa: PLC0415

    labeled, n = arrays["labeled_embeddings"].shape[0], arrays["embeddings"].shape[0]
    emb = np.concatenate([arrays["labeled_embeddings"], arrays["embeddings"]])
    probs = np.concatenate([np.full((labeled, arrays["probs"].shape[1]), 1 / arrays["probs"].shape[1]),
                            arrays["probs"]])
    s = ClusterMarginSampling.__new__(ClusterMarginSampling)
    s.one_sample_step = True
    s.X, s.Y, s.n_pool = np.arange(labeled + n), torch.zeros(labeled + n, dtype=torch.long), labeled + n
    s.idxs_lb = np.arange(labeled + n) < labeled
    s.prepare_emb = lambda: emb
    s.predict_prob = lambda x, y: torch.from_numpy(probs[x])
    return lambda: np.asarray(s.query(k)) - labeled


# strategy -> (what the reference is, its adapter); the other strategies have no reference row
REFERENCES: dict[str, tuple[str, Adapter]] = {
    "entropy": ("DeepAL+ EntropySampling", lambda r, a, k, p: _deepal(r, "entropy_sampling", "EntropySampling", a, k)),
    "margin": ("DeepAL+ MarginSampling", lambda r, a, k, p: _deepal(r, "margin_sampling", "MarginSampling", a, k)),
    "least-confidence": ("DeepAL+ LeastConfidence",
                         lambda r, a, k, p: _deepal(r, "least_confidence", "LeastConfidence", a, k)),
    "kmeans": ("DeepAL+ KMeansSampling", lambda r, a, k, p: _deepal(r, "kmeans_sampling", "KMeansSampling", a, k)),
    "core-set": ("DeepAL+ KCenterGreedy", lambda r, a, k, p: _deepal(r, "kcenter_greedy", "KCenterGreedy", a, k)),
    "badge": ("DeepAL+ BadgeSampling", lambda r, a, k, p: _deepal(r, "badge_sampling", "BadgeSampling", a, k)),
    "mean-std": ("DeepAL+ MeanSTD (given the samples)", lambda r, a, k, p: _deepal(
        r, "mean_std", "MeanSTD", a, k, mc_samples(a, int(p["samples"]), float(p["dropout"]), 0),
        n_drop=int(p["samples"]))),
    "typiclust": ("TypiClust repo TypiClust", typiclust_ref),
    "probcover": ("TypiClust repo ProbCover", probcover_ref),
    "batchbald": ("batchbald_redux get_batchbald_batch (given the samples)", batchbald_ref),
    "cluster-margin": ("cure-lab ClusterMarginSampling (whole-pool tree)", cluster_margin_ref),
    **{f"{mode}-{base}": (f"baal {cls}({base}){' (given the samples)' if base == 'bald' else ''}",
                          stochastic_ref(mode, base))
       for mode, cls in (("power", "PowerSampling"), ("softmax", "GibbsSampling"), ("softrank", "RankBasedSampling"))
       for base in ("entropy", "bald")},
}

# Where a reference cannot run at pool scale, and why: it is not started there.
REFERENCE_LIMITS: dict[str, tuple[int, str]] = {
    "core-set": (20_000, "builds the (L + N) x (L + N) distance matrix: 10 GB in float32 at 50k"),
    "cluster-margin": (20_000, "its tree is over the whole pool: 10 GB of pairwise distances at 50k"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perf/strategy_refs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--strategy", required=True, choices=sorted(REFERENCES))
    for flag, default in (("--n", 10_000), ("--k", 1000), ("--labeled", 1000), ("--dim", 512), ("--classes", 10),
                          ("--seed", 0)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--params", default="{}", help="the strategy's parameters, as JSON")
    args = parser.parse_args(argv)
    if (args.dir / "_deps").is_dir():
        sys.path.insert(0, str(args.dir / "_deps"))
    arrays = pool(args.n, args.labeled, args.dim, args.classes, args.seed)
    np.random.seed(0)  # the references draw from numpy's and torch's global generators
    torch.manual_seed(0)
    call = REFERENCES[args.strategy][1](args.dir, arrays, args.k, json.loads(args.params))
    before = peak_mib()
    start = time.perf_counter()
    picks = call()
    seconds = time.perf_counter() - start
    # not print(): the TypiClust repository's adapter silences it
    sys.stdout.write(json.dumps({"seconds": seconds, "peak_mib": peak_mib() - before,
                                 "picks": int(np.asarray(picks).size), "distinct": int(np.unique(picks).size)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
