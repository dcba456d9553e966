"""Gumbel-sigmoid gates with a straight-through hard mask (APTP's gates; PAPER_FACTS section 2).

A gate logit l becomes a binary keep/drop decision. During pruning the decision is sampled,
hard = 1[sigmoid((l + g1 - g2) / tau) >= 0.5] with g1, g2 ~ Gumbel(0, 1), and the gradient
flows through the soft value (straight-through: forward hard, backward soft). At inference the
gate is deterministic: 1[l >= 0], the same threshold without the noise.

The authors' code (pdm/utils/estimation_utils.py; `noise="authors"`) adds ONE Gumbel sample
instead, g = -log(-log u), whose mean is Euler's 0.577 rather than 0: their gates open more often
than sigmoid(l) says. Their depth gates come from `importance_logits` (a cumulative softmax), and a
width group never closes every unit (`keep_one_unit`); prune/router.py composes these.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def logistic_noise(shape: torch.Size, generator: torch.Generator | None = None, device=None) -> Tensor:
    """g1 - g2 for independent Gumbel(0, 1) samples: a standard logistic sample, log(u / (1 - u)).
    Drawn on the CPU (where a seeded training generator lives) and moved to `device`."""
    u = torch.rand(shape, generator=generator).clamp_(1e-6, 1 - 1e-6).to(device)
    return torch.log(u) - torch.log1p(-u)


NOISES = ("logistic", "authors")


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None = None, device=None) -> Tensor:
    """One Gumbel(0, 1) sample -log(-log(u + 1e-20) + 1e-20), as the authors' `sample_gumbel`
    (mean 0.577). Drawn on the CPU like `logistic_noise`."""
    u = torch.rand(shape, generator=generator).to(device)
    return -torch.log(-torch.log(u + 1e-20) + 1e-20)


def gate_noise(shape: torch.Size, noise: str, generator: torch.Generator | None = None, device=None) -> Tensor:
    """The gates' noise: `logistic` (g1 - g2) or `authors` (one Gumbel)."""
    if noise == "logistic":
        return logistic_noise(shape, generator=generator, device=device)
    if noise == "authors":
        return gumbel_noise(shape, generator=generator, device=device)
    raise ValueError(f"gate noise {noise!r} is not one of {NOISES}")


def importance_logits(depth_logits: Tensor, order: Sequence[int] | None = None) -> Tensor:
    """The authors' depth-gate logits (`importance_gumbel_softmax_sample` before its noise):
    p = softmax over the depth logits, c_r = p_0 + ... + p_(n-1-r) (the flipped cumulative sum, so
    rank 0 has c = 1 and is always kept, the last rank the least mass), then logit(c) with their
    eps 1e-6. Rank r lands on depth gate `order[r] mod n` (identity when `order` is None).

    (B, n) -> (B, n) in gate order."""
    n = depth_logits.shape[-1]
    x = torch.flip(torch.cumsum(torch.softmax(depth_logits, dim=-1), dim=-1), dims=[-1])
    eps = 1e-6
    ranked = torch.log(x + eps) - torch.log1p(-(x - eps))
    if order is None:
        return ranked
    index = [i % n for i in order]
    if sorted(index) != list(range(n)):
        raise ValueError(f"depth_order {list(order)} is not a permutation of the {n} depth gates (indices mod {n})")
    out = torch.empty_like(ranked)
    out[..., index] = ranked
    return out


def keep_one_unit(soft: Tensor) -> Tensor:
    """The authors' `force_width_non_zero`: a row of a width group's soft gates (B, units) whose
    hard mask would close every unit gets 0.5 added to its first unit, which then opens."""
    empty = (soft >= 0.5).sum(dim=-1) == 0
    if not empty.any():
        return soft
    bump = torch.zeros_like(soft)
    bump[empty, 0] = 0.5
    return soft + bump


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """`hard` in the forward pass, the gradient of `soft` in the backward pass."""
    return hard + (soft - soft.detach())


def gumbel_sigmoid(
    logits: Tensor, temperature: float, hard: bool = True, generator: torch.Generator | None = None,
    noise_scale: float = 1.0, noise: str = "logistic",
) -> Tensor:
    """Sample gates from `logits`: soft sigmoid((l + noise) / tau), or its straight-through
    hard mask (x >= 0.5) when `hard`. `temperature` only scales the gradient of the hard mask;
    `noise_scale` multiplies the noise (1: Gumbel-sigmoid; 0: the inference gates, with the
    straight-through gradient still flowing); `noise` is `gate_noise`'s kind."""
    sample = noise_scale * gate_noise(logits.shape, noise, generator=generator, device=logits.device)
    soft = torch.sigmoid((logits + sample) / temperature)
    if not hard:
        return soft
    return straight_through((soft >= 0.5).to(soft.dtype), soft)


def hard_gates(logits: Tensor) -> Tensor:
    """The deterministic inference gates 1[sigmoid(l) >= 0.5] = 1[l >= 0] (no noise, no gradient)."""
    return (logits >= 0).to(logits.dtype)
