"""APTP's gates and balanced routing: Gumbel-sigmoid straight-through and Sinkhorn-Knopp."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pruneforget.prune.gumbel import gumbel_sigmoid, hard_gates, logistic_noise
from pruneforget.prune.sinkhorn import balanced_assignment, sinkhorn_knopp


def test_gumbel_sigmoid_forward_is_hard_and_gradient_is_the_soft_sigmoids():
    logits = torch.linspace(-3, 3, 50, requires_grad=True)
    tau = 0.4
    out = gumbel_sigmoid(logits, tau, hard=True, generator=torch.Generator().manual_seed(1))
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.arange(50.0)
    (out * weights).sum().backward()
    # The same noise by hand: soft = sigmoid((l + noise) / tau); d soft / d l = soft (1 - soft) / tau.
    noise = logistic_noise(logits.shape, generator=torch.Generator().manual_seed(1))
    soft = torch.sigmoid((logits.detach() + noise) / tau)
    torch.testing.assert_close(out.detach(), (soft >= 0.5).float())
    torch.testing.assert_close(logits.grad, weights * soft * (1 - soft) / tau)
    assert (logits.grad[1:] != 0).all()


def test_gumbel_sigmoid_keeps_a_gate_with_probability_sigmoid_of_its_logit():
    logits = torch.tensor([-2.0, 0.0, 1.0]).expand(20000, 3)
    kept = gumbel_sigmoid(logits, 0.4, generator=torch.Generator().manual_seed(0)).mean(0)
    torch.testing.assert_close(kept, torch.sigmoid(logits[0]), atol=0.015, rtol=0)


def test_inference_gates_threshold_the_logit_at_zero():
    assert hard_gates(torch.tensor([-0.1, 0.0, 2.0])).tolist() == [0.0, 1.0, 1.0]


def _skewed_batch(b=64, n=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = F.normalize(torch.randn(n, d, generator=g), dim=1)
    x = F.normalize(codes[0] + 0.6 * torch.randn(b, d, generator=g), dim=1)  # every sample near code 0
    return x @ codes.T


def test_sinkhorn_spreads_a_skewed_batch_evenly_over_the_codes():
    scores = _skewed_batch()
    b, n = scores.shape
    assert torch.bincount(scores.argmax(1), minlength=n).max() > b / 2  # plain argmax collapses
    counts = torch.bincount(balanced_assignment(scores, epsilon=0.05, iterations=3), minlength=n)
    assert counts.sum() == b
    assert ((counts >= 0.6 * b / n) & (counts <= 1.4 * b / n)).all(), counts


def test_sinkhorn_rows_are_assignments_and_codes_share_the_mass():
    q = sinkhorn_knopp(_skewed_batch(), epsilon=0.05, iterations=3)
    torch.testing.assert_close(q.sum(1), torch.ones(q.shape[0]))
    # Three iterations end on the sample constraint (exact); the code constraint is approximate.
    torch.testing.assert_close(q.sum(0), torch.full((q.shape[1],), q.shape[0] / q.shape[1]), rtol=0.2, atol=0)
