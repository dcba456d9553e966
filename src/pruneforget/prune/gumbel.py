"""Gumbel-sigmoid gates with a straight-through hard mask (APTP's gates; PAPER_FACTS section 2).

A gate logit l becomes a binary keep/drop decision. During pruning the decision is sampled,
hard = 1[sigmoid((l + g1 - g2) / tau) >= 0.5] with g1, g2 ~ Gumbel(0, 1), and the gradient
flows through the soft value (straight-through: forward hard, backward soft). At inference the
gate is deterministic: 1[l >= 0], the same threshold without the noise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def logistic_noise(shape: torch.Size, generator: torch.Generator | None = None, device=None) -> Tensor:
    """g1 - g2 for independent Gumbel(0, 1) samples: a standard logistic sample, log(u / (1 - u)).
    Drawn on the CPU (where a seeded training generator lives) and moved to `device`."""
    u = torch.rand(shape, generator=generator).clamp_(1e-6, 1 - 1e-6).to(device)
    return torch.log(u) - torch.log1p(-u)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """`hard` in the forward pass, the gradient of `soft` in the backward pass."""
    return hard + (soft - soft.detach())


def gumbel_sigmoid(
    logits: Tensor, temperature: float, hard: bool = True, generator: torch.Generator | None = None,
    noise_scale: float = 1.0,
) -> Tensor:
    """Sample gates from `logits`: soft sigmoid((l + noise) / tau), or its straight-through
    hard mask (x >= 0.5) when `hard`. `temperature` only scales the gradient of the hard mask;
    `noise_scale` multiplies the logistic noise (1: Gumbel-sigmoid; 0: the inference gates,
    with the straight-through gradient still flowing)."""
    noise = noise_scale * logistic_noise(logits.shape, generator=generator, device=logits.device)
    soft = torch.sigmoid((logits + noise) / temperature)
    if not hard:
        return soft
    return straight_through((soft >= 0.5).to(soft.dtype), soft)


def hard_gates(logits: Tensor) -> Tensor:
    """The deterministic inference gates 1[sigmoid(l) >= 0.5] = 1[l >= 0] (no noise, no gradient)."""
    return (logits >= 0).to(logits.dtype)
