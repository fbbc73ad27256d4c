"""Core-set: k-center greedy on penultimate embeddings (Sener & Savarese, ICLR 2018).

Distances are float64 sums on centred points (see strategies.geometry), so the picks are those of a float64
brute force wherever the embeddings sit, and exact ties (points on a lattice) go to the lowest position.

Memory is O((N + L) * d): a centred float64 copy of the pool and of the centres, and one min-distance vector
over the pool, updated by one matrix-vector product per pick. The initial distances to the labeled set are
computed in chunks whose temporary is bounded by `chunk_bytes`, so an N x L distance matrix never exists whole.
"""

from __future__ import annotations

import numpy as np
import torch

from strategies.base import PoolInputs, Strategy
from strategies.geometry import EXACT, sq_dist, sq_norms

CHUNK_BYTES = 32 * 2**20  # the largest temporary distance block, in bytes


def min_sq_dist(pool: torch.Tensor, centers: torch.Tensor, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """[N] float64 squared Euclidean distance from each pool row ([N, d]) to its nearest centre ([L, d],
    L >= 1). Accumulated in float64; centre rows that sit far from the origin first (k_center_greedy does)."""
    pool, centers = pool.to(EXACT), centers.to(pool.device, EXACT)
    n, n_centers = pool.shape[0], centers.shape[0]
    elems = max(1, chunk_bytes // pool.element_size())  # elements of one [rows, cols] block
    cols = min(n_centers, elems)
    rows = max(1, elems // cols)
    # one block buffer, reused: the allocator cannot fragment it into a growing heap
    buffer = torch.empty(min(n, rows) * cols, dtype=EXACT, device=pool.device)
    x_sq, c_sq = sq_norms(pool), sq_norms(centers)  # [N], [L]
    best = torch.full((n,), torch.inf, dtype=EXACT, device=pool.device)  # [N]
    for r in range(0, n, rows):
        x = pool[r:r + rows]  # [rows, d]
        for c in range(0, n_centers, cols):
            cent = centers[c:c + cols]  # [cols, d]
            block = buffer[:x.shape[0] * cent.shape[0]].view(x.shape[0], cent.shape[0])  # [rows, cols]
            sq_dist(x_sq[r:r + rows, None], c_sq[c:c + cols], torch.mm(x, cent.T, out=block))
            torch.minimum(best[r:r + rows], block.amin(dim=1), out=best[r:r + rows])
    return best


def k_center_greedy(pool: torch.Tensor, centers: torch.Tensor, k: int,
                    chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """k distinct positions into pool ([N, d]), in pick order: each pick is the pool point farthest from
    its nearest centre (centers [L, d] plus the earlier picks); ties go to the lowest position.
    With no centres (L = 0) the first pick is the point farthest from the pool's mean."""
    n = pool.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} points")
    pool = pool.to(EXACT, copy=True)  # [N, d], centred in place: the caller's tensor is untouched
    # The shift is the mean rounded to float32: x - shift is then exact in float64 for float32 x of the
    # shift's order of magnitude, so centring moves no point relative to another and exact ties stay exact.
    shift = pool.mean(dim=0).float().to(EXACT)  # [d]
    pool.sub_(shift)
    centers = centers.to(pool.device, EXACT, copy=True).sub_(shift)  # [L, d]
    sq_norm = sq_norms(pool)  # [N]
    if centers.shape[0] > 0:
        min_d = min_sq_dist(pool, centers, chunk_bytes)  # [N]
    else:  # distance to the mean: it picks the first point only and is not a centre afterwards
        mean = pool.mean(dim=0)  # [d], about 0 after centring
        min_d = sq_dist(sq_norm, sq_norms(mean[None]), torch.mv(pool, mean))
    # The picks stay on the device, each a [1] index tensor used through index_select / index_fill_: indexing
    # with a 0-d tensor would call .item(), a host sync per use. The one sync is the .cpu() at the end.
    picks = torch.empty(k, dtype=torch.long, device=pool.device)
    for i in range(k):
        pick = torch.argmax(min_d).reshape(1)  # [1]: the first maximal position
        picks[i:i + 1] = pick
        dist = sq_dist(sq_norm, sq_norm.index_select(0, pick), torch.mv(pool, pool.index_select(0, pick)[0]))  # [N]
        min_d = dist if i == 0 and centers.shape[0] == 0 else torch.minimum(min_d, dist, out=min_d)
        min_d.index_fill_(0, pick, -1.0)  # never picked again, even among exact duplicates (minimum keeps -1)
    return picks.cpu().numpy()


class CoreSet(Strategy):
    """k-center greedy core-set on penultimate embeddings (Sener & Savarese, ICLR 2018)."""

    name = "core-set"
    aliases = ("coreset",)
    needs = frozenset({"embeddings", "labeled_embeddings"})

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        return k_center_greedy(inputs.embeddings, inputs.labeled_embeddings, k)
