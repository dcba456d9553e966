"""APTP's pruning objective (PAPER_FACTS section 2): resource and contrastive losses and their sum.

    L = L_DDPM + w_res * L_res + w_con * L_con + w_out * L_outKD + w_block * L_blockKD
    paper weights: w_res 2.0, w_con 100, w_out 0.2, w_block 0.2

The two small diversity terms of the authors' code (max and std of the batch's ratios) are not
part of this objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prunable_target(budget: float, full_macs: float, prunable_macs: float) -> float:
    """p': the share of the PRUNABLE MACs to keep so that the whole UNet keeps `budget` of its MACs.

    The budget counts every MAC of the UNet, but gates only reach the prunable part:
    budget * full = (full - prunable) + p' * prunable.
    """
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1] (a share of the full UNet's MACs), got {budget}")
    fixed = full_macs - prunable_macs
    target = (budget * full_macs - fixed) / prunable_macs
    if target <= 0:
        raise ValueError(
            f"budget {budget} is below the UNet's unprunable share {fixed / full_macs:.3f} of its MACs: "
            "no gate setting can reach it; choose a larger budget"
        )
    return min(target, 1.0)


def resource_loss(ratios: Tensor, target: float) -> Tensor:
    """|log(mean_r / p')|, r = gated prunable MACs / full prunable MACs of each sample (APTP)."""
    return torch.log(ratios.mean().clamp(min=1e-6) / target).abs()


CONTRASTIVE_FORMS = ("bce", "cross_entropy")


def contrastive_loss(arch_embeddings: Tensor, prompt_embeddings: Tensor, temperature: float = 0.03,
                     form: str = "bce") -> Tensor:
    """APTP's contrastive loss between the batch's architecture and prompt similarity distributions.

    A = softmax(cos(arch_i, arch_j) / tau) and P = softmax(cos(prompt_i, prompt_j) / tau), row-wise;
    A must match P, so that similar prompts get similar architectures. The prompt side carries no
    gradient (its encoder is frozen). `form`:

    - `bce` (the authors' pdm/losses/contrastive_loss.py): element-wise binary cross-entropy
      -[P_ij log A_ij + (1 - P_ij) log(1 - A_ij)] averaged over all B^2 entries (logs clamped at
      -100, as torch's). The paper gives this term weight 100, the authors' setting for this form.
    - `cross_entropy`: row-wise -sum_j P_ij log A_ij averaged over rows; its gradient is 10-50x
      larger at batch 16-64 (PAPER_FACTS section 2) and would dominate the other terms at weight 100.
    """
    a = F.normalize(arch_embeddings, dim=-1)
    p = F.normalize(prompt_embeddings, dim=-1).detach()
    target = F.softmax(p @ p.T / temperature, dim=-1)
    if form == "bce":
        return F.binary_cross_entropy(F.softmax(a @ a.T / temperature, dim=-1), target, reduction="mean")
    if form == "cross_entropy":
        log_pred = F.log_softmax(a @ a.T / temperature, dim=-1)
        return -(target * log_pred).sum(dim=-1).mean()
    raise ValueError(f"contrastive loss form {form!r} is not one of {CONTRASTIVE_FORMS}")


def aptp_objective(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """L_DDPM + sum_k weights[k] * terms[k] over resource, contrastive, output_kd, block_kd."""
    total = terms["diffusion"]
    for name in ("resource", "contrastive", "output_kd", "block_kd"):
        total = total + weights[name] * terms[name]
    return total
