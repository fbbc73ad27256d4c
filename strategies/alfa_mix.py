"""ALFA-Mix: candidates whose prediction flips when mixed with the labeled classes' anchors, clustered by k-means
(Parvaneh et al., "Active Learning by Feature Mixing", CVPR 2022).

Held to the authors' code (AminParvaneh/alpha_mix_active_learning, query_strategies/alpha_mix_sampling.py,
AlphaMixSampling.query with find_candidate_set, learn_alpha and sample), default path of their README
(`--alpha_opt`): each candidate embedding z is mixed with each class's anchor (the mean labeled embedding of the
class, of the whole labeled set for a class without labels) as (1 - alpha) z + alpha anchor, alpha [d] per candidate
drawn from N(cap/2, cap/2) clamped to [1e-8, cap], then moved by Adam steps (a fresh optimizer per step, as theirs)
that raise the cross-entropy of the candidate's own prediction at a small L2 cost. A candidate joins the set when the
classifier head's prediction of some mix differs from its prediction of z. The cap grows by `alpha_cap` until more
candidates than the budget flip (or the cap reaches 1); the picks are the members nearest the centres of k-means
over the set's L2-normalised embeddings, by cluster number, filled up at random from the other candidates when
fewer candidates than the budget flip.

Differences from the authors, none of which changes the picks on the conformance inputs: the alphas are drawn from a
generator seeded from inputs.rng (theirs: torch's global one) and k-means is seeded from it (theirs: unseeded, with
scikit-learn 0.23's n_init=10, given here explicitly); the fill-up is drawn without replacement from the candidates
(theirs: with replacement, from the whole unlabeled pool, so a pick can repeat); the step after the last evaluation
of the mixes is skipped (it changes nothing). `closed_form=true` is their `--alpha_closed_form_approx` (the README
pairs it with alpha_cap=0.2). `convention` is kmeans's: float64 distances to the centres, or their float32 ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import UserError
from bench.models.backbones import full_precision
from strategies.base import PoolInputs, Strategy
from strategies.geometry import kmeans
from strategies.kmeans import nearest_members

Head = Callable[[torch.Tensor], torch.Tensor]  # the model's classifier head: embeddings [n, d] -> logits [n, C]


def anchors(labeled: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[C, d] each class's mean labeled embedding; the whole labeled set's mean for a class without labels."""
    return torch.stack([(labeled[labels == c] if (labels == c).any() else labeled).mean(dim=0)
                        for c in range(n_classes)])


def learned_flips(head: Head, emb: torch.Tensor, anchor: torch.Tensor, pred: torch.Tensor, cap: float,
                  generator: torch.Generator, iters: int, lr: float, l2_coef: float) -> torch.Tensor:
    """[n] bool: whether some mix of emb [n, d] with anchor [d], as alpha learns (learn_alpha), flips pred [n]."""
    alpha = torch.normal(cap / 2.0, cap / 2.0, size=emb.shape, generator=generator,
                         device=emb.device).clamp(1e-8, cap)  # [n, d]
    flips = torch.zeros(emb.shape[0], dtype=torch.bool, device=emb.device)
    for step in range(iters):
        a = alpha.clone().requires_grad_(True)
        out = head((1 - a) * emb + a * anchor)  # [n, C]
        flips |= out.argmax(dim=1) != pred
        if step + 1 == iters:
            break  # the authors' last step moves alpha after its last evaluation: it changes nothing
        # raise the loss of the candidate's own prediction, at an L2 cost on alpha
        loss = -F.cross_entropy(out, pred, reduction="none") + l2_coef * a.norm(dim=1)  # [n]
        a.grad = torch.autograd.grad(loss.sum(), a)[0]
        torch.optim.Adam([a], lr=lr / (1.0 if step < iters * 2 / 3 else 10.0)).step()  # fresh each step, as theirs
        alpha = a.detach().clamp(1e-8, cap)
    return flips


def closed_form_flips(head: Head, emb: torch.Tensor, anchor: torch.Tensor, pred: torch.Tensor, cap: float,
                      grads: torch.Tensor) -> torch.Tensor:
    """[n] bool: the same with the authors' closed-form alpha (calculate_optimum_alpha), along the loss gradient
    grads [n, d]."""
    z = anchor - emb  # [n, d]
    eps = cap / math.sqrt(emb.shape[1])
    alpha = (eps * z.norm(dim=1) / grads.norm(dim=1)).unsqueeze(1) * grads / (z + 1e-8)  # [n, d]
    return head((1 - alpha) * emb + alpha * anchor).argmax(dim=1) != pred


def flip_candidates(head: Head, emb: torch.Tensor, labeled: torch.Tensor, labels: torch.Tensor, k: int,
                    generator: torch.Generator, alpha_cap: float = 0.03125, closed_form: bool = False,
                    iters: int = 5, lr: float = 0.1, l2_coef: float = 0.01) -> torch.Tensor:
    """[n] bool: the candidate set of query, for emb [n, d], the labeled embeddings [L, d] and labels [L]: the cap
    grows by alpha_cap until more than k candidates flip or it reaches 1."""
    logits = head(emb)  # [n, C]
    pred = logits.argmax(dim=1)  # [n]
    anchor = anchors(labeled, labels, logits.shape[1])  # [C, d]
    grads = None
    if closed_form:
        z = emb.clone().requires_grad_(True)
        grads = torch.autograd.grad(F.cross_entropy(head(z), pred), z)[0]  # [n, d]
    candidate = torch.zeros(emb.shape[0], dtype=torch.bool, device=emb.device)
    cap = 0.0
    while cap < 1.0:  # the authors' loop: 1 / alpha_cap steps at most
        cap += alpha_cap
        for c in range(anchor.shape[0]):
            if closed_form:
                candidate |= closed_form_flips(head, emb, anchor[c], pred, cap, grads)
            else:
                candidate |= learned_flips(head, emb, anchor[c], pred, cap, generator, iters, lr, l2_coef)
        if int(candidate.sum()) > k:
            break
    return candidate


def cluster_picks(emb: torch.Tensor, k: int, seed: int, n_init: int = 10, convention: str = "exact") -> np.ndarray:
    """[min(k, n)] positions into emb [n, d]: the member nearest each k-means centre of the L2-normalised rows
    (sample), by cluster number."""
    feats = F.normalize(emb.detach().float(), p=2, dim=1).cpu().numpy()  # [n, d] float32, normalised as theirs
    km = kmeans(min(k, len(feats)), seed, n_init).fit(feats)
    return nearest_members(feats, km.cluster_centers_, km.labels_, convention)


class AlfaMix(Strategy):
    """ALFA-Mix: k-means over the candidates whose prediction flips mixed with labeled anchors (Parvaneh, CVPR 2022).

    Parameters: `alpha_cap` (the cap's step, in (0, 1]); `closed_form` (the authors' closed-form alpha instead of the
    learned one); `iters`, `lr`, `l2_coef` (alpha's Adam steps, learning rate, L2 weight); `n_init` (k-means
    restarts); `convention` (exact: float64 distances to the centres; reference: the authors' float32 ones)."""

    name = "alfa-mix"
    aliases = ("alfamix",)
    needs = frozenset({"embeddings", "labeled_embeddings", "labeled_labels"})
    params = {"alpha_cap": 0.03125, "closed_form": False, "iters": 5, "lr": 0.1, "l2_coef": 0.01, "n_init": 10,
              "convention": "exact"}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        checks = [("alpha_cap", 0 < self.alpha_cap <= 1, "a number in (0, 1]"),
                  ("iters", self.iters >= 1, "a positive integer"), ("lr", self.lr > 0, "a positive number"),
                  ("l2_coef", self.l2_coef >= 0, "a number >= 0"), ("n_init", self.n_init >= 1, "a positive integer"),
                  ("convention", self.convention in ("exact", "reference"), "'exact' or 'reference'")]
        for key, ok, kind in checks:
            if not ok:
                raise UserError(f"The 'alfa-mix.{key}' parameter must be {kind}. Got {getattr(self, key)!r} instead.")

    def select(self, inputs: PoolInputs, k: int) -> np.ndarray:
        emb = inputs.embeddings.detach().float().clone()  # [n, d]; a clone: inference tensors take no gradient
        labeled = inputs.labeled_embeddings.detach().float().clone()  # [L, d]
        generator = torch.Generator(device=emb.device).manual_seed(int(inputs.rng.integers(2**63 - 1)))
        seed = int(inputs.rng.integers(2**31 - 1))
        with torch.enable_grad(), full_precision(emb):  # the head runs in fp32, as the loop's own pass
            candidate = flip_candidates(inputs.model.head, emb, labeled, inputs.labeled_labels.to(emb.device), k,
                                        generator, self.alpha_cap, self.closed_form, self.iters, self.lr,
                                        self.l2_coef)
        pool = candidate.nonzero().flatten().cpu().numpy()  # [m] positions of the flipping candidates
        picks = pool[cluster_picks(emb[candidate], k, seed, self.n_init, self.convention)] \
            if pool.size else pool
        rest = np.setdiff1d(np.arange(inputs.n), picks)  # fewer flips than the budget: the rest at random
        return np.concatenate([picks, inputs.rng.permutation(rest)[:max(0, min(k, inputs.n) - picks.size)]])
