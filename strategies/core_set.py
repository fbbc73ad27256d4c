"""Core-set: k-center greedy on penultimate embeddings (Sener & Savarese, ICLR 2018).

Memory is O(N*d): one min-distance vector over the pool, updated by one matrix-vector product per pick.
The initial distances to the labeled set are computed in chunks whose temporary is bounded by
`chunk_bytes`, so an N x L distance matrix never exists whole.
"""

from __future__ import annotations

import numpy as np
import torch

from strategies.base import PoolInputs, Strategy

CHUNK_BYTES = 32 * 2**20  # the largest temporary distance block, in bytes


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """[N] squared row norms of x [N, d], without an [N, d] temporary."""
    return torch.linalg.vector_norm(x, dim=1).square_()


def min_sq_dist(pool: torch.Tensor, centers: torch.Tensor, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """[N] squared Euclidean distance from each pool row ([N, d]) to its nearest centre ([L, d], L >= 1)."""
    n, n_centers = pool.shape[0], centers.shape[0]
    elems = max(1, chunk_bytes // pool.element_size())  # elements of one [rows, cols] block
    cols = min(n_centers, elems)
    rows = max(1, elems // cols)
    # one block buffer, reused: the allocator cannot fragment it into a growing heap
    buffer = torch.empty(min(n, rows) * cols, dtype=pool.dtype, device=pool.device)
    c_sq = sq_norms(centers)  # [L]
    best = torch.full((n,), torch.inf, dtype=pool.dtype, device=pool.device)  # [N]
    for r in range(0, n, rows):
        x = pool[r:r + rows]  # [rows, d]
        for c in range(0, n_centers, cols):
            cent = centers[c:c + cols]  # [cols, d]
            block = buffer[:x.shape[0] * cent.shape[0]].view(x.shape[0], cent.shape[0])  # [rows, cols]
            # ||c||^2 - 2 x.c; ||x||^2 is constant per row, added after the min
            torch.addmm(c_sq[c:c + cols], x, cent.T, alpha=-2.0, out=block)
            torch.minimum(best[r:r + rows], block.amin(dim=1), out=best[r:r + rows])
    return best.add_(sq_norms(pool)).clamp_min_(0.0)


def k_center_greedy(pool: torch.Tensor, centers: torch.Tensor, k: int,
                    chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """k distinct positions into pool ([N, d]), in pick order: each pick is the pool point farthest from
    its nearest centre (centers [L, d] plus the earlier picks); ties go to the lowest position.
    With no centres (L = 0) the first pick is the point farthest from the pool's mean."""
    n = pool.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} points")
    centers = centers.to(pool.device, pool.dtype)
    sq_norm = sq_norms(pool)  # [N]
    if centers.shape[0] > 0:
        min_d = min_sq_dist(pool, centers, chunk_bytes)  # [N]
    else:  # ||x - m||^2 to the mean m: it picks the first point only and is not a centre afterwards
        mean = pool.mean(dim=0)  # [d]
        min_d = torch.addmv(sq_norm, pool, mean, alpha=-2.0).add_(mean.square().sum())
    picks = torch.empty(k, dtype=torch.long, device=pool.device)  # stays on the device: no sync per pick
    for i in range(k):
        pick = torch.argmax(min_d)  # first maximal position
        picks[i] = pick
        dist = torch.addmv(sq_norm, pool, pool[pick], alpha=-2.0).add_(sq_norm[pick]).clamp_min_(0.0)  # [N]
        min_d = dist if i == 0 and centers.shape[0] == 0 else torch.minimum(min_d, dist, out=min_d)
        min_d[pick] = -1.0  # never picked again, even among exact duplicates (minimum keeps it at -1)
    return picks.cpu().numpy()


class CoreSet(Strategy):
    """k-center greedy core-set on penultimate embeddings (Sener & Savarese, ICLR 2018)."""

    name = "core-set"
    aliases = ("coreset",)
    needs = frozenset({"embeddings", "labeled_embeddings"})

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        return k_center_greedy(inputs.embeddings, inputs.labeled_embeddings, k)
