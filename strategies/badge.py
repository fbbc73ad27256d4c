"""BADGE: k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020).

The gradient embedding of a candidate is g = a outer h, with a = p - onehot(argmax p) ([C]) and h its
penultimate embedding ([d]): the gradient of the cross-entropy at the predicted label with respect to the
last layer's weights (up to sign). It is never formed: ||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 +
||a_j||^2 ||h_j||^2 - 2 (a_i.a_j)(h_i.h_j), so memory stays O(N*(C+d)) instead of O(N*C*d). That expansion
is accumulated in float64 (see strategies.geometry): h sits far from the origin after a ReLU, and centring it
would change the gradient embeddings' distances.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from strategies.base import PoolInputs, Strategy
from strategies.geometry import EXACT, sq_dist, sq_norms


def gradient_embedding_sq_dist(a: torch.Tensor, h: torch.Tensor, a_c: torch.Tensor, h_c: torch.Tensor,
                               sq_norm: torch.Tensor | None = None) -> torch.Tensor:
    """[n, m] float64 squared distances between the gradient embeddings a_i outer h_i (a [n, C], h [n, d])
    and a_c_j outer h_c_j (a_c [m, C], h_c [m, d]); sq_norm ([n], ||a||^2 ||h||^2) may be passed precomputed.
    Float32 inputs are cast: the products are accumulated in float64."""
    a, h, a_c, h_c = (t.to(EXACT) for t in (a, h, a_c, h_c))
    if sq_norm is None:
        sq_norm = sq_norms(a) * sq_norms(h)  # [n]
    c_sq_norm = sq_norms(a_c) * sq_norms(h_c)  # [m]
    cross = (a @ a_c.T).mul_(h @ h_c.T)  # [n, m]: <g_i, g_j> = (a_i.a_j)(h_i.h_j)
    return sq_dist(sq_norm[:, None], c_sq_norm, cross)


def loss_gradient_factor(probs: torch.Tensor) -> torch.Tensor:
    """[n, C] a = p - onehot(argmax p): the logits' gradient of the cross-entropy at the predicted label."""
    return probs - F.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype)


def kmeans_pp(a: torch.Tensor, h: torch.Tensor, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct positions, in pick order, by k-means++ seeding on the gradient embeddings a_i outer h_i.

    First centre: the largest-norm gradient embedding (as Ash et al.'s reference code; ties to the lowest
    position). Each later centre is drawn with probability proportional to its squared distance to the
    nearest centre so far (D^2 sampling), one rng.random() per pick. Picked points have weight 0; if every
    unpicked point is at distance 0 (e.g. all predictions one-hot), the draw is uniform over the unpicked.
    """
    n = a.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} points")
    a, h = a.to(EXACT), h.to(EXACT)  # [n, C], [n, d]: cast once here, not at every pick
    sq_norm = sq_norms(a) * sq_norms(h)  # [n]: ||g||^2
    # The picks stay on the device, each a [1] index tensor used through index_select / index_fill_: indexing
    # with a 0-d tensor would call .item(), a host sync per use. The one sync is the .cpu() at the end.
    picks = torch.empty(k, dtype=torch.long, device=a.device)
    unpicked = torch.ones(n, dtype=EXACT, device=a.device)  # [n]
    min_d = torch.full((n,), torch.inf, dtype=EXACT, device=a.device)  # [n] D^2 to the nearest centre
    for i in range(k):
        if i == 0:
            pick = torch.argmax(sq_norm).reshape(1)  # [1]
        else:
            weight = torch.where(min_d.sum() > 0, min_d, unpicked)  # [n]; 0 at picked points either way
            cum = weight.cumsum(dim=0)  # [n]
            total = cum[-1:]  # [1]
            u = total * rng.random()  # [1]
            # first position whose cumulative weight exceeds u (its weight is > 0); u == total after rounding
            # would fall past the end, so cap at the last position with weight
            pick = torch.minimum(torch.searchsorted(cum, u, right=True), torch.searchsorted(cum, total))  # [1]
        picks[i:i + 1] = pick
        dist = gradient_embedding_sq_dist(a, h, a.index_select(0, pick), h.index_select(0, pick), sq_norm)[:, 0]
        min_d = torch.minimum(min_d, dist, out=min_d)
        min_d.index_fill_(0, pick, 0.0)  # exactly: weight 0, never drawn again (minimum keeps it at 0)
        unpicked.index_fill_(0, pick, 0.0)
    return picks.cpu().numpy()


class Badge(Strategy):
    """Batch Active learning by Diverse Gradient Embeddings (Ash et al., ICLR 2020)."""

    name = "badge"
    needs = frozenset({"probs", "embeddings"})

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        a = loss_gradient_factor(inputs.probs)  # [n, C]
        return kmeans_pp(a, inputs.embeddings, k, inputs.rng)
