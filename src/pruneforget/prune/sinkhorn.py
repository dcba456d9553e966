"""Balanced assignment of a batch of prompts to architecture codes (SwAV's Sinkhorn-Knopp).

APTP routes prompts to codes during pruning with this balanced assignment, so that every expert
receives prompts and none collapses; at inference the router takes the plain argmax
(PAPER_FACTS section 2: Q = exp(cos / 0.05), 3 iterations).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft balanced assignment Q (B, N) of B samples to N codes from similarities `scores` (B, N).

    Q starts as exp(scores / epsilon) and alternately rescales so that every code holds 1/N of
    the mass and every sample 1/B; the returned rows sum to 1 (each row is an assignment).
    The exponent is shifted by its maximum first (a constant factor Sinkhorn removes anyway),
    so that small epsilons cannot overflow.
    """
    q = torch.exp((scores - scores.max()) / epsilon).T  # (N, B), as in SwAV's notation
    n, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)  # each code: total mass 1/N
        q /= n
        q /= q.sum(dim=0, keepdim=True)  # each sample: total mass 1/B
        q /= b
    return (q * b).T


def balanced_assignment(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Code index (B,) of each sample: the argmax of its Sinkhorn-Knopp row (training routing)."""
    return sinkhorn_knopp(scores, epsilon, iterations).argmax(dim=1)
