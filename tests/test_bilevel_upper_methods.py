"""Upper levels beyond ESD in the bilevel run: `uce` (UCE's closed-form edit as the upper step) and
`esd-adversarial` (ESD at the worst-case concept embedding). The edit lands exactly on UCE's normal-
equation solution from the weights before the step; the embedding perturbation stays in its per-token
ball and raises the ESD loss (the ascent's sign); zero PGD steps is esdall; both run end to end
through the `bilevel` command on the micro config's bilevel section."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from test_bilevel import FT, loop, parts, settings  # noqa: F401  (parts is a fixture)
from test_bilevel_command import UNLEARN, bilevel_command, workspace  # noqa: F401  (a fixture)
from torch import nn

from pruneforget.bilevel.algorithm import BilevelInputError, train_bilevel
from pruneforget.unlearn.adversarial import adversarial_condition, project_per_token
from pruneforget.unlearn.concepts import ConceptSet
from pruneforget.unlearn.esd_step import esd_loss
from pruneforget.unlearn.uce import uce_edit
from pruneforget.unlearn.upper import build_upper, uce_projections

UCE = {"lam": 0.5, "erase_scale": 1.0, "preserve_scale": None, "preserve_empty": True}
CONCEPTS = ConceptSet(erase=("stripes",), guide="plain", preserve=("waves",))
MICRO = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/micro.yaml").read_text())


def hand_uce(w0: torch.Tensor, ce: torch.Tensor, cg: torch.Tensor, cp: torch.Tensor, lam: float, es: float,
             sp: float) -> torch.Tensor:
    """UCE's closed form from its sums, column by column (float64):
    W* [lam I + es sum_e c_e c_e^T + sp sum_p c_p c_p^T] = lam W0 + es sum_e (W0 c_g) c_e^T + sp sum_p (W0 c_p) c_p^T."""
    w0, ce, cg, cp = (x.double() for x in (w0, ce, cg, cp))
    a = lam * torch.eye(w0.shape[1], dtype=torch.float64)
    b = lam * w0.clone()
    for c_e, c_g in zip(ce, cg):
        a += es * torch.outer(c_e, c_e)
        b += es * torch.outer(w0 @ c_g, c_e)
    for c_p in cp:
        a += sp * torch.outer(c_p, c_p)
        b += sp * torch.outer(w0 @ c_p, c_p)
    return torch.linalg.solve(a, b.T).T  # a is symmetric: W* a = b <=> a W*^T = b^T


def test_uce_upper_step_sets_keys_and_values_to_the_normal_equation_solution_of_the_pre_step_weights(parts, tmp_path):
    """K = 1, lambda 0: step 1 fine-tunes, step 2 is the edit alone. After it every attn2 to_k / to_v
    is UCE's solution from its weights after step 1, and nothing else moved in step 2."""
    pipe, theta = parts["pipe"], parts["theta"]
    edit = uce_edit(pipe, CONCEPTS, UCE)
    ctx = dataclasses.replace(parts["ctx"], edit=edit)
    snapshots = []
    train_bilevel(settings(lam=0.0, k=1, steps=2, upper={"method": "uce"}), theta, parts["teacher"], ctx, {},
                  parts["ft"], parts["scheduler"], FT, loop(2), tmp_path,
                  on_step_end=lambda step, row: snapshots.append({n: p.detach().clone() for n, p in theta.named_parameters()}))
    before, after = snapshots
    edited = uce_projections(theta)
    assert len(edited) >= 4 and all(".attn2.to_" in n for n in edited)
    sp = max(0.1, 1 / 2)  # the empty prompt and waves are preserved
    assert edit.preserve_scale == sp
    for name in edited:
        expected = hand_uce(before[name], edit.erase, edit.guide, edit.preserve, 0.5, 1.0, sp)
        torch.testing.assert_close(after[name].double(), expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(after[name], before[name])  # the edit did something
    assert all(torch.equal(after[n], before[n]) for n in before if n not in edited)  # lambda 0: the edit alone

    # The logged upper term is UCE's erase residual before the edit: sum es ||W0 (c_e - c_g)||^2.
    residual = sum(float((before[n].double() @ (edit.erase - edit.guide).double().T).pow(2).sum()) for n in edited)
    logged = pd.read_csv(tmp_path / "metrics.csv").set_index("step").loc[2]
    assert logged["objective"] == "upper" and logged["upper"] == pytest.approx(residual, rel=1e-5)


def test_uce_upper_step_with_a_penalty_edits_after_the_gradient_step(parts, tmp_path):
    """lambda > 0: the upper step is a gradient step on lambda L_ft over to_k / to_v, then the edit
    from the weights that step left: only to_k / to_v move, and not to the edit of the pre-step
    weights (the gradient step counted)."""
    pipe, theta = parts["pipe"], parts["theta"]
    edit = uce_edit(pipe, CONCEPTS, UCE)
    ctx = dataclasses.replace(parts["ctx"], edit=edit)
    snapshots = []
    train_bilevel(settings(lam=10.0, k=1, steps=2, upper={"method": "uce"}), theta, parts["teacher"], ctx, {},
                  parts["ft"], parts["scheduler"], FT, loop(2), tmp_path,
                  on_step_end=lambda step, row: snapshots.append({n: p.detach().clone() for n, p in theta.named_parameters()}))
    before, after = snapshots
    edited = uce_projections(theta)
    assert all(torch.equal(after[n], before[n]) for n in before if n not in edited)
    name = next(iter(edited))
    pure_edit = hand_uce(before[name], edit.erase, edit.guide, edit.preserve, 0.5, 1.0, edit.preserve_scale)
    assert not torch.allclose(after[name].double(), pure_edit, rtol=1e-5, atol=1e-6)  # the gradient step counted


class ToyUNet(nn.Module):
    """A UNet-shaped toy: the prediction depends nonlinearly on the text embedding."""

    def __init__(self, d: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.text = nn.Linear(d, 4)

    def forward(self, x, t, cond):
        gate = torch.tanh(self.text(cond)).mean(dim=1)  # (B, 4)
        return SimpleNamespace(sample=x * gate[:, :, None, None] + gate[:, :, None, None] ** 2)


def toy_problem():
    g = torch.Generator().manual_seed(1)
    model = ToyUNet()
    x, cond = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 5, 8, generator=g)
    goal = model(x, None, cond).sample.detach() + 0.05 * torch.randn(2, 4, 3, 3, generator=g)
    return lambda c: esd_loss(model(x, None, c).sample, goal), cond


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_perturbation_stays_inside_each_tokens_l2_ball(steps):
    loss_of, cond = toy_problem()
    eps = 0.1
    delta = adversarial_condition(loss_of, cond, steps, eps) - cond
    bound = eps * cond.norm(dim=-1)
    assert (delta.norm(dim=-1) <= bound * (1 + 1e-5)).all()
    assert (delta.norm(dim=-1) > 0.5 * bound).all()  # it does move: alpha = 2.5 r / steps reaches the shell
    inside = 0.5 * torch.ones(3, 4) / 2  # norm 0.5, radius 1: unchanged
    torch.testing.assert_close(project_per_token(inside, torch.ones(3, 1)), inside)


def test_inner_steps_increase_the_esd_loss_on_a_toy_model():
    """Gradient ascent: the perturbed embedding's ESD loss exceeds the clean one and grows with the
    radius; with the sign flipped it would fall below."""
    loss_of, cond = toy_problem()
    clean = float(loss_of(cond).detach())
    losses = [float(loss_of(adversarial_condition(loss_of, cond, 3, eps)).detach()) for eps in (0.02, 0.05, 0.1)]
    assert clean < losses[0] < losses[1] < losses[2]


def test_adversarial_esd_raises_the_esd_loss_of_the_tiny_unet_and_with_zero_steps_is_esdall(parts):
    theta, ctx = parts["theta"], parts["ctx"]
    batch = ctx.batches(range(2))
    base = build_upper("esdall", theta, ctx, {})
    zero = build_upper("esd-adversarial", theta, ctx, {"adversarial_steps": 0, "adversarial_epsilon": 0.1})
    assert zero.params.keys() == base.params.keys()
    params = list(base.params.values())
    l_base, l_zero = base.loss(theta, batch), zero.loss(theta, batch)
    assert torch.equal(l_base, l_zero)
    for a, b in zip(torch.autograd.grad(l_base, params), torch.autograd.grad(l_zero, params)):
        assert torch.equal(a, b)
    adversarial = build_upper("esd-adversarial", theta, ctx, {"adversarial_steps": 3, "adversarial_epsilon": 0.1})
    assert float(adversarial.loss(theta, batch).detach()) > float(l_base.detach())


@pytest.mark.parametrize("upper, match", [
    ({"method": "esd-adversarial", "adversarial_steps": -1, "adversarial_epsilon": 0.1}, "bilevel.upper.adversarial_steps"),
    ({"method": "esd-adversarial", "adversarial_steps": 2, "adversarial_epsilon": -0.5}, "bilevel.upper.adversarial_epsilon"),
])
def test_bad_adversarial_settings_are_rejected_naming_the_key(upper, match):
    with pytest.raises(BilevelInputError, match=match):
        settings(upper=upper)


def test_missing_adversarial_settings_are_named_when_the_upper_level_is_built(parts):
    with pytest.raises(ValueError, match="bilevel.upper.adversarial_steps is missing"):
        build_upper("esd-adversarial", parts["theta"], parts["ctx"], {"adversarial_epsilon": 0.1})


@pytest.mark.parametrize("method", ["uce", "esd-adversarial"])
def test_bilevel_command_runs_each_new_upper_method_on_the_micro_config(workspace, method):  # noqa: F811
    params = {**MICRO["bilevel"], "upper": {**MICRO["bilevel"]["upper"], "method": method}}
    unlearn = {**UNLEARN, "uce": MICRO["unlearn"]["uce"]}
    bilevel_command(workspace, "run", params, "--unlearn", json.dumps(unlearn), "--no-eval")
    out = workspace / "run"
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["objective"].tolist() == ["lower", "lower", "upper"]
    assert metrics.loc[2, ["upper", "ft_theta", "G"]].notna().all()  # micro lambda 10: the penalty term too
    assert json.loads((out / "run_config.json").read_text())["params"]["upper"]["method"] == method


def test_uce_upper_method_without_the_uce_section_fails_before_anything_is_written(workspace):  # noqa: F811
    params = {**MICRO["bilevel"], "upper": {**MICRO["bilevel"]["upper"], "method": "uce"}}
    with pytest.raises(SystemExit, match="'uce' entry of the unlearn section"):
        bilevel_command(workspace, "bad", params)
    assert not (workspace / "bad").exists() and not (workspace / ".bad.work").exists()
