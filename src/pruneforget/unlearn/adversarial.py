"""The inner maximisation of adversarial unlearning (AdvUnlearn, Zhang et al., NeurIPS 2024): the
worst-case perturbation of a concept prompt's text embedding within a per-token L2 ball.

    max_{delta: ||delta_l|| <= eps * ||c_l|| for every token l}  ESD(c + delta)

solved by projected gradient ascent (PGD) from delta = 0: each step moves every token's delta by
`alpha` along its own normalised gradient (the L2 analogue of FGSM's sign step), then projects
each token back into its ball. alpha = 2.5 eps ||c_l|| / steps (Madry et al., ICLR 2018: large
enough to reach the boundary and move along it within the steps). The radius is relative to
each token's own norm, so one epsilon means the same at the tiny world's 384-d MiniLM and SD 2.1's
1024-d OpenCLIP embeddings, whose norms differ. AdvUnlearn searches discrete prompt tokens; a
continuous, bounded embedding perturbation is its differentiable relaxation (Table 2's attacks work
through the text embedding too: Ring-A-Bell adds a concept direction found in embedding space,
MMA-Diffusion searches tokens whose embedding matches a forbidden prompt's).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

PGD_STEP = 2.5  # alpha = PGD_STEP * radius / steps (Madry et al.)


def project_per_token(delta: Tensor, radius: Tensor) -> Tensor:
    """`delta` (..., D) with every token's vector scaled down onto its ball ||delta_l|| <= radius_l
    (radius (..., 1)); vectors already inside are unchanged."""
    norm = delta.norm(dim=-1, keepdim=True)
    return delta * (radius / norm.clamp_min(1e-12)).clamp(max=1.0)


def adversarial_condition(loss_of: Callable[[Tensor], Tensor], cond: Tensor, steps: int, epsilon: float) -> Tensor:
    """`cond` + the PGD perturbation that (locally) maximises `loss_of(cond + delta)` under the
    per-token bound ||delta_l|| <= epsilon ||cond_l|| (see the module docstring). Detached: the
    outer step trains the model on it, not the perturbation. `steps` 0 returns `cond` itself."""
    if steps == 0 or epsilon == 0:
        return cond
    cond = cond.detach()
    radius = epsilon * cond.norm(dim=-1, keepdim=True)
    alpha = PGD_STEP * radius / steps
    delta = torch.zeros_like(cond)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(cond + delta), delta)
        # Ascent: the concept's prediction moves away from the erased target, i.e. the model
        # produces the concept again; each token along its own unit gradient.
        step = alpha * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        delta = project_per_token(delta.detach() + step, radius)
    return cond + delta
