"""APTP's gates and balanced routing: Gumbel-sigmoid straight-through (logistic and the authors'
sampler) and Sinkhorn-Knopp."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pruneforget.prune.gumbel import gumbel_noise, gumbel_sigmoid, hard_gates, importance_logits, keep_one_unit, logistic_noise
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


# The authors' gate sampler (prune.aptp.gumbel: authors; pdm/utils/estimation_utils.py).

def test_authors_noise_is_one_gumbel_sample_with_mean_euler_gamma():
    g = gumbel_noise(torch.Size([200000]), generator=torch.Generator().manual_seed(0))
    assert g.mean().item() == pytest.approx(0.5772, abs=0.01)  # Euler's constant; logistic noise has mean 0
    assert logistic_noise(torch.Size([200000]), generator=torch.Generator().manual_seed(0)).mean().abs() < 0.02


def test_authors_gate_opens_with_the_gumbel_probability_not_sigmoid():
    # P(l + g >= 0) = P(g >= -l) = 1 - exp(-exp(l)) for g ~ Gumbel(0, 1): 0.632 at l = 0, against sigmoid's 0.5.
    logits = torch.tensor([-2.0, 0.0, 1.0]).expand(20000, 3)
    kept = gumbel_sigmoid(logits, 0.4, generator=torch.Generator().manual_seed(0), noise="authors").mean(0)
    torch.testing.assert_close(kept, 1 - torch.exp(-torch.exp(logits[0])), atol=0.015, rtol=0)
    with pytest.raises(ValueError, match="not one of"):
        gumbel_sigmoid(logits, 0.4, noise="uniform")


def test_importance_logits_are_the_flipped_cumulative_softmax_placed_by_depth_order():
    z = torch.tensor([[0.0, math.log(2.0), math.log(5.0)]])  # softmax: 1/8, 2/8, 5/8
    c = [1.0, 3 / 8, 1 / 8]  # ranks 0, 1, 2: p0 + p1 + p2, p0 + p1, p0
    eps = 1e-6
    ranked = [math.log(x + eps) - math.log1p(-(x - eps)) for x in c]
    # rank 0's logit(1 - eps) ~ 13.8 is sensitive to float32 rounding of the cumulative sum
    torch.testing.assert_close(importance_logits(z), torch.tensor([ranked]), rtol=2e-3, atol=1e-5)
    # order [-1, 0, 1] (mod 3: 2, 0, 1): rank 0 on gate 2, rank 1 on gate 0, rank 2 on gate 1
    torch.testing.assert_close(importance_logits(z, [-1, 0, 1]), torch.tensor([[ranked[1], ranked[2], ranked[0]]]),
                               rtol=2e-3, atol=1e-5)
    with pytest.raises(ValueError, match="permutation"):
        importance_logits(z, [0, 0, 1])


def test_keep_one_unit_opens_the_first_unit_of_an_all_closed_row_only():
    soft = torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.7, 0.3]])
    out = keep_one_unit(soft)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.2, 0.3], [0.1, 0.7, 0.3]]))


def test_authors_router_extracts_with_seed_zero_noise_keeps_rank_zero_and_a_unit_per_group():
    from pruneforget.prune.router import GateLayout, Router, RouterConfig

    layout = GateLayout(width=(("attn", 2), ("resnet", 8)), depth=(("skip0", 1), ("skip1", 1)))
    authors = Router(RouterConfig(layout, 6, 2, "minilm", gumbel="authors", depth_order=(1, 0)), seed=0)
    logistic = Router(RouterConfig(layout, 6, 2, "minilm"), seed=0)
    closed = torch.full((layout.dim,), -50.0)  # every width gate far below -offset; depth logits equal
    for r in (authors, logistic):
        with torch.no_grad():
            r.codes[0] = closed
    a, b = authors.code_masks(0), logistic.code_masks(0)
    assert b["attn"].sum() == 0 and b["resnet"].sum() == 0   # the noise-free gates close every unit
    assert a["attn"].tolist() == [1.0, 0.0] and a["resnet"].tolist() == [1.0] + [0.0] * 7  # one unit kept
    assert a["skip1"].item() == 1.0  # depth_order (1, 0): rank 0, logit(1) + offset, sits on gate skip1
    # equal depth logits: rank 1 has c = 1/2, logit 0, so skip0 is open iff offset + g >= 0 for seed 0's g
    g = gumbel_noise(torch.Size([1, layout.dim]), generator=torch.Generator().manual_seed(0))[0, -2]
    assert a["skip0"].item() == float(authors.config.offset + g >= 0)
    assert all(torch.equal(a[k], authors.code_masks(0)[k]) for k in a)  # seed 0: the same expert every time
    assert RouterConfig.from_json(authors.config.to_json()) == authors.config


def test_router_config_refuses_a_depth_order_that_is_not_a_permutation():
    from pruneforget.prune.router import GateLayout, RouterConfig

    layout = GateLayout(width=(("attn", 2),), depth=(("skip0", 1), ("skip1", 1)))
    with pytest.raises(ValueError, match="permutation"):
        RouterConfig(layout, 6, 2, "minilm", gumbel="authors", depth_order=(0, 2))
