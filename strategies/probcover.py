"""ProbCover: greedy maximum coverage of delta-balls (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022).

Held to the authors' `ProbCover.construct_graph` and `select_samples` (github.com/avihu111/TypiClust,
deep-al/pycls/al/prob_cover.py, commit 4097a71; fixture tests/fixtures/probcover_reference.npz). As there: on the
L2-normalised pool (labeled rows first, then the candidates) an edge x -> y joins every pair at distance below
delta (a point covers itself); what the labeled rows cover is removed; each pick is the row covering the most
points not yet covered (the lowest row on ties), whose newly covered points then leave the graph.

Memory is O(N * d + E): the graph's E edges are found in row blocks of at most BLOCK_ELEMENTS distances (screened
in float32, decided in float64 near delta: the edges of a float64 computation), kept as
two int64 index arrays, and the greedy keeps one out-degree vector, lowered through the in-edges of each newly
covered point, so the whole selection touches each edge a bounded number of times.

Deliberate differences, each a parameter:
- `when_covered`: once every point is covered, the authors' argmax over all-zero degrees re-picks row 0 (a
  labeled row, or the same candidate again). "next" (the default) picks the lowest candidate row not yet picked,
  by the same tie rule; "reference" keeps the authors' row 0, and a selection that reaches it fails in one line,
  since a repeated or labeled pick cannot be labeled.
- `closed`: false, the authors' `distance < delta`; true, `distance <= delta`.
- `delta`: a number, or "auto" for the paper's purity rule (k-means pseudo-labels with one cluster per class;
  the largest delta on a grid of 0.05 steps whose balls are pure for at least 95% of the points).
The authors' graph loop also skips the last N mod 500 rows (their out-edges are never built); every row is kept
here.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.core.errors import UserError
from strategies.base import PoolInputs, Strategy, StrategyOutputError
from strategies.geometry import EXACT, kmeans, sq_dist, sq_norms
from strategies.typiclust import normalised

# distances in one [rows, N] block: 64 MiB in float32 (128 in float64 for delta='auto'); 4x smaller blocks made
# the graph 1.5x slower at 11k x 512 (thinner products)
BLOCK_ELEMENTS = 2**24
DELTA_GRID = np.round(np.arange(1, 41) * 0.05, 2)  # unit vectors lie at most 2 apart
PURITY = 0.95  # the paper's alpha
WHEN_COVERED = ("next", "reference")


def _blocks(features: torch.Tensor):
    """(first row, [rows, N] float64 squared distances) over features [N, d], rows bounded by BLOCK_ELEMENTS."""
    n = features.shape[0]
    norms = sq_norms(features)  # [N]
    rows = max(1, BLOCK_ELEMENTS // max(1, n))
    for r in range(0, n, rows):
        yield r, sq_dist(norms[r:r + rows, None], norms, features[r:r + rows] @ features.T)


def delta_graph(features: torch.Tensor, delta: float, closed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The edges (x, y) [E] each, sorted by x then y, of the pool features [N, d] (float64): x -> y when
    |x - y| < delta (<= when closed). Squared distances are compared with delta ** 2: no square root to round.

    Screened in float32, decided in float64: a pair whose float32 squared distance lies within `band` of delta ** 2
    (far wider than float32's error, about d * 2**-24 of the largest squared norm) is recomputed from float64
    products, so the edges are those of a float64 computation at float32's speed."""
    n, d = features.shape
    limit, norms = delta * delta, sq_norms(features)  # [N] float64
    band = float(norms.max()) * max(1e-3, 16 * d * 2.0**-24)
    low, norms32 = features.float(), norms.float()
    rows = max(1, BLOCK_ELEMENTS // max(1, n))
    xs, ys = [], []
    for r in range(0, n, rows):
        block = sq_dist(norms32[r:r + rows, None], norms32, low[r:r + rows] @ low.T)  # [rows, N] float32
        x, y = (block < limit + band).nonzero(as_tuple=True)
        near = block[x, y] > limit - band  # undecided in float32
        xn, yn = x[near] + r, y[near]
        exact = norms[xn] + norms[yn] - 2.0 * (features[xn] * features[yn]).sum(1)  # float64
        keep = ~near
        keep[near] = exact <= limit if closed else exact < limit
        xs.append((x[keep] + r).numpy())
        ys.append(y[keep].numpy())
    return np.concatenate(xs), np.concatenate(ys)


def greedy_cover(xs: np.ndarray, ys: np.ndarray, n: int, n_labeled: int, k: int,
                 when_covered: str = "next") -> np.ndarray:
    """k rows of an n-row pool (labeled rows first) in pick order, from the edges xs -> ys (sorted by xs)."""
    out_start = np.searchsorted(xs, np.arange(n + 1))  # row x's out-edges are ys[out_start[x]:out_start[x + 1]]
    by_y = np.argsort(ys, kind="stable")
    in_x, in_start = xs[by_y], np.searchsorted(ys[by_y], np.arange(n + 1))  # row y's in-edges
    covered = np.zeros(n, dtype=bool)
    degree = np.bincount(xs, minlength=n)  # [n] edges into points not yet covered

    def cover(rows: np.ndarray) -> None:
        new = np.unique(rows[~covered[rows]])
        covered[new] = True
        # the in-edges of the new points, as one index array: each point is covered once, so each edge
        # is subtracted once over the whole selection
        lengths = in_start[new + 1] - in_start[new]
        edges = np.repeat(in_start[new] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        degree[:] -= np.bincount(in_x[edges], minlength=n)

    cover(ys[:out_start[n_labeled]])  # what the labeled rows cover
    picked = np.zeros(n, dtype=bool)
    picked[:n_labeled] = True
    picks = []
    for _ in range(k):
        cur = int(np.argmax(degree))  # the first maximal row
        if degree[cur] == 0 and when_covered == "next":  # everything is covered: the first row not yet picked
            cur = int(np.argmin(picked))
        picks.append(cur)
        picked[cur] = True
        cover(ys[out_start[cur]:out_start[cur + 1]])
    return np.array(picks, dtype=np.int64)


def pure_delta(features: torch.Tensor, labels: np.ndarray, closed: bool = False) -> float:
    """The largest delta on DELTA_GRID whose balls around the rows of features [N, d] hold one label (labels [N])
    for at least PURITY of the rows; the smallest grid value when none does."""
    labels = torch.from_numpy(labels)
    other = torch.empty(features.shape[0], dtype=EXACT)  # [N] squared distance to the nearest other label
    for r, block in _blocks(features):
        block[labels[r:r + block.shape[0], None] == labels[None]] = torch.inf
        other[r:r + block.shape[0]] = block.amin(dim=1)
    # a ball is pure when no point of another label lies inside it
    ok = [g for g in DELTA_GRID if (other > g * g if closed else other >= g * g).double().mean().item() >= PURITY]
    return float(ok[-1] if ok else DELTA_GRID[0])


def pseudo_labels(features: torch.Tensor, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """[N] k-means cluster ids of features [N, d], one cluster per class (the paper's purity rule)."""
    km = kmeans(min(n_classes, features.shape[0]), int(rng.integers(2**31 - 1)), 10)
    return km.fit_predict(features.numpy())


class ProbCover(Strategy):
    """Greedy coverage of delta-balls on the run's embeddings (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022).

    Runs on the run's penultimate embeddings (the paper used self-supervised features: --train-mode frozen with
    pretrained --weights gives that setting). Parameters: `delta` (a ball radius on unit-normalised embeddings,
    or "auto" for the paper's purity rule), `closed` (<= delta instead of the authors' <), `when_covered`
    ("next", or "reference" for the authors' re-pick of row 0 once all is covered)."""

    name = "probcover"
    aliases = ("prob-cover",)
    needs = frozenset({"embeddings", "labeled_embeddings"})
    params = {"delta": "0.75", "closed": False, "when_covered": "next"}  # 0.75: the authors' CIFAR-10 command

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.delta = self.params["delta"] = positive_or_auto(self.delta)
        if self.when_covered not in WHEN_COVERED:
            raise UserError(f"The 'probcover.when_covered' parameter must be one of {', '.join(WHEN_COVERED)}. "
                            f"Got {self.when_covered!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        n_labeled = inputs.labeled_embeddings.shape[0]
        pool = normalised(torch.cat([inputs.labeled_embeddings.cpu(), inputs.embeddings.cpu()]))  # [L + n, d]
        delta = self.delta
        if delta == "auto":
            labels = pseudo_labels(pool, inputs.model.classifier.out_features, inputs.rng)
            delta = pure_delta(pool, labels, self.closed)
        xs, ys = delta_graph(pool, delta, self.closed)
        rows = greedy_cover(xs, ys, pool.shape[0], n_labeled, k, self.when_covered)
        if (rows < n_labeled).any() or np.unique(rows).size < k:
            raise StrategyOutputError(f"probcover covered every point before its {k} picks and, with "
                                      "when_covered=reference, re-picked row 0 as the authors' code does; use "
                                      "when_covered=next to go on with the first rows not yet picked")
        return rows - n_labeled


def positive_or_auto(value: object, parameter: str = "probcover.delta") -> float | str:
    """value as a positive finite float, or "auto"; anything else is one line naming the parameter."""
    if value == "auto":
        return value
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number < math.inf:
        raise UserError(f"The '{parameter}' parameter must be a positive number or 'auto'. Got {value!r} "
                        "instead.")
    return number
