"""APTP's resource and contrastive losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from pruneforget.prune.aptp_losses import aptp_objective, contrastive_loss, prunable_target, resource_loss


def test_resource_loss_is_abs_log_of_mean_ratio_over_target():
    ratios = torch.tensor([0.6, 0.8])
    assert resource_loss(ratios, 0.5).item() == pytest.approx(math.log(0.7 / 0.5))
    assert resource_loss(ratios, 0.875).item() == pytest.approx(abs(math.log(0.7 / 0.875)))
    assert resource_loss(torch.tensor([0.5, 0.5]), 0.5).item() == pytest.approx(0.0)


def test_resource_loss_gradient_pushes_the_ratio_towards_the_target():
    r = torch.tensor([0.9, 0.9], requires_grad=True)
    resource_loss(r, 0.8).backward()
    assert (r.grad > 0).all()  # above the target: descending lowers the ratio


def test_prunable_target_converts_a_budget_of_all_macs_to_a_share_of_prunable_macs():
    # 100 MACs, 80 prunable: keeping 80 in all means keeping 60 of the 80 prunable ones.
    assert prunable_target(0.8, 100.0, 80.0) == pytest.approx(0.75)
    assert prunable_target(1.0, 100.0, 80.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unprunable share"):
        prunable_target(0.1, 100.0, 80.0)
    for bad in (0.0, 1.2, -0.5):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            prunable_target(bad, 100.0, 80.0)


def test_contrastive_loss_matches_hand_computed_cross_entropy():
    tau = 0.5
    # Two prompts at cosine 0.6, two architectures at cosine 0.8 (unit vectors in 2-D).
    prompts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    archs = torch.tensor([[1.0, 0.0], [0.8, 0.6]]) * 3.0  # the loss normalises
    target = [math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0.6 / tau)), math.exp(0.6 / tau) / (math.exp(1 / tau) + math.exp(0.6 / tau))]
    pred = [math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0.8 / tau)), math.exp(0.8 / tau) / (math.exp(1 / tau) + math.exp(0.8 / tau))]
    row = -(target[0] * math.log(pred[0]) + target[1] * math.log(pred[1]))  # both rows are the same by symmetry
    assert contrastive_loss(archs, prompts, tau, "cross_entropy").item() == pytest.approx(row, rel=1e-5)
    # The authors' element-wise BCE on the same matrices: mean over the 4 entries (2 per row, rows alike).
    bce = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for t, q in zip(target, pred)) / 2
    assert contrastive_loss(archs, prompts, tau, "bce").item() == pytest.approx(bce, rel=1e-5)
    assert contrastive_loss(archs, prompts, tau).item() == pytest.approx(bce, rel=1e-5)  # the default


def test_contrastive_bce_gradient_is_far_smaller_than_cross_entropy_at_the_start():
    # At the start every architecture is nearly the same (all gates open at the offset), so A is
    # near uniform; prompts are correlated sentence embeddings. Batch 16, as the tiny run.
    g = torch.Generator().manual_seed(0)
    prompts = torch.randn(1, 8, generator=g) + 0.7 * torch.randn(16, 8, generator=g)
    grads = {}
    for form in ("bce", "cross_entropy"):
        archs = (torch.ones(1, 8) + 0.05 * torch.randn(16, 8, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
        contrastive_loss(archs, prompts, 0.03, form).backward()
        grads[form] = archs.grad.norm().item()
    assert grads["cross_entropy"] > 10 * grads["bce"]  # PAPER_FACTS section 2: 10-50x at batch 16-64
    with pytest.raises(ValueError, match="not one of"):
        contrastive_loss(archs, prompts, 0.03, "infonce")


def test_contrastive_loss_prefers_architectures_as_similar_as_their_prompts():
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05]])
    aligned = prompts.clone()
    crossed = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0]])
    for form in ("bce", "cross_entropy"):
        assert contrastive_loss(aligned, prompts, 0.03, form) < contrastive_loss(crossed, prompts, 0.03, form)


def test_objective_weights_each_term():
    terms = {k: torch.tensor(v) for k, v in dict(diffusion=1.0, resource=0.5, contrastive=0.01, output_kd=2.0, block_kd=3.0).items()}
    weights = {"resource": 2.0, "contrastive": 100.0, "output_kd": 0.2, "block_kd": 0.2}
    assert aptp_objective(terms, weights).item() == pytest.approx(1.0 + 1.0 + 1.0 + 0.4 + 0.6)
