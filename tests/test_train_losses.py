"""Each loss of Eq. 6 / Eq. 8 against a hand computation on tiny tensors."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from pruneforget.models.diffusion import diffusion_target
from pruneforget.models.load import packaged_config
from pruneforget.train.losses import diffusion_loss, eq8_loss, feature_kd, finetune_loss, min_snr_weights, output_kd
from pruneforget.unlearn.esd_step import esd_loss, esd_target


def sd21_scheduler(prediction_type: str) -> DDPMScheduler:
    config = packaged_config("sd21_scheduler")
    config.pop("_class_name")
    config["prediction_type"] = prediction_type
    return DDPMScheduler.from_config(config)


def hand_snr(t: int) -> float:
    # SD 2.1's scaled-linear betas, by hand: beta_i = (sqrt(0.00085) + i/999 (sqrt(0.012) - sqrt(0.00085)))^2
    lo, hi = 0.00085**0.5, 0.012**0.5
    alpha_bar = 1.0
    for i in range(t + 1):
        alpha_bar *= 1 - (lo + i / 999 * (hi - lo)) ** 2
    return alpha_bar / (1 - alpha_bar)


def test_min_snr_weights_for_v_prediction_at_two_timesteps():
    s = sd21_scheduler("v_prediction")
    t = torch.tensor([10, 800])
    snr = [hand_snr(10), hand_snr(800)]
    assert snr[0] > 5 > snr[1]  # one timestep is clipped by gamma, the other is not
    expected = torch.tensor([5 / (snr[0] + 1), snr[1] / (snr[1] + 1)])
    torch.testing.assert_close(min_snr_weights(s, t, 5.0), expected, rtol=1e-4, atol=0)


def test_min_snr_weights_for_epsilon_prediction():
    s = sd21_scheduler("epsilon")
    t = torch.tensor([10, 800])
    snr = [hand_snr(10), hand_snr(800)]
    torch.testing.assert_close(min_snr_weights(s, t, 5.0), torch.tensor([5 / snr[0], 1.0]), rtol=1e-4, atol=0)


def test_min_snr_forms_differ_by_the_authors_plus_one_for_v_prediction():
    s = sd21_scheduler("v_prediction")
    # t 10: SNR > 5, both clip at gamma. t 400: 4 < SNR + 1 < 5... found by hand below. t 800: SNR + 1 < 5.
    t_mid = next(t for t in range(0, 1000, 5) if hand_snr(t) < 5 < hand_snr(t) + 1)
    t = torch.tensor([10, t_mid, 800])
    snr = [hand_snr(int(x)) for x in t]
    diffusers = [min(x, 5) / (x + 1) for x in snr]
    authors = [min(x + 1, 5) / (x + 1) for x in snr]
    torch.testing.assert_close(min_snr_weights(s, t, 5.0, "diffusers"), torch.tensor(diffusers), rtol=1e-4, atol=0)
    torch.testing.assert_close(min_snr_weights(s, t, 5.0, "authors"), torch.tensor(authors), rtol=1e-4, atol=0)
    assert authors[0] == pytest.approx(diffusers[0])      # clipped in both forms: gamma / (SNR + 1)
    assert authors[1] == pytest.approx(5 / (snr[1] + 1)) and diffusers[1] == pytest.approx(snr[1] / (snr[1] + 1))
    assert authors[2] == pytest.approx(1.0) and diffusers[2] < 0.5  # where the authors' weight is 1


def test_min_snr_mean_weight_over_uniform_t_is_the_documented_0_908_and_0_294():
    s = sd21_scheduler("v_prediction")
    t = torch.arange(1000)
    assert min_snr_weights(s, t, 5.0, "authors").mean().item() == pytest.approx(0.908, abs=1e-3)
    assert min_snr_weights(s, t, 5.0, "diffusers").mean().item() == pytest.approx(0.294, abs=1e-3)


def test_min_snr_forms_agree_for_epsilon_prediction_and_reject_unknown_forms():
    s = sd21_scheduler("epsilon")
    t = torch.tensor([10, 800])
    torch.testing.assert_close(min_snr_weights(s, t, 5.0, "authors"), min_snr_weights(s, t, 5.0, "diffusers"))
    with pytest.raises(ValueError, match="not one of"):
        min_snr_weights(s, t, 5.0, "old")


def test_diffusion_loss_passes_its_snr_form_on():
    s = sd21_scheduler("v_prediction")
    t = torch.tensor([800])
    pred, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]])  # MSE 5
    snr = hand_snr(800)
    torch.testing.assert_close(diffusion_loss(pred, target, t, s, 5.0, "authors"), torch.tensor(5.0), rtol=1e-4, atol=0)
    torch.testing.assert_close(diffusion_loss(pred, target, t, s, 5.0, "diffusers"), torch.tensor(5 * snr / (snr + 1)),
                               rtol=1e-4, atol=0)


def test_diffusion_loss_weights_each_sample_then_averages():
    s = sd21_scheduler("v_prediction")
    t = torch.tensor([10, 800])
    pred = torch.zeros(2, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 0.0]]]])  # per-sample MSE: 5 and 2
    snr = [hand_snr(10), hand_snr(800)]
    weighted = (5 * 5 / (snr[0] + 1) + 2 * snr[1] / (snr[1] + 1)) / 2
    torch.testing.assert_close(diffusion_loss(pred, target, t, s, snr_gamma=5.0), torch.tensor(weighted), rtol=1e-4, atol=0)
    torch.testing.assert_close(diffusion_loss(pred, target, t, s, snr_gamma=None), torch.tensor(3.5))


def test_diffusion_target_is_v_or_eps():
    x0, eps, t = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2), torch.tensor([3, 700])
    s = sd21_scheduler("v_prediction")
    a = s.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - s.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(diffusion_target(s, x0, eps, t), a * eps - sigma * x0)
    assert diffusion_target(sd21_scheduler("epsilon"), x0, eps, t) is eps
    with pytest.raises(ValueError, match="sample"):
        diffusion_target(sd21_scheduler("sample"), x0, eps, t)


def test_output_kd_is_mean_squared_difference_without_teacher_gradient():
    teacher = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    student = torch.tensor([0.0, 2.0, 5.0, 4.0], requires_grad=True)
    loss = output_kd(teacher, student)
    assert loss.item() == pytest.approx((1 + 0 + 4 + 0) / 4)
    loss.backward()
    assert teacher.grad is None
    torch.testing.assert_close(student.grad, torch.tensor([-0.5, 0.0, 1.0, 0.0]))


def test_feature_kd_averages_block_mses():
    teacher = [torch.zeros(1, 2), torch.zeros(1, 1, 2, 2)]
    student = [torch.tensor([[1.0, 3.0]]), torch.ones(1, 1, 2, 2) * 2]  # MSEs 5 and 4
    assert feature_kd(teacher, student).item() == pytest.approx(4.5)
    with pytest.raises(ValueError, match="shape"):
        feature_kd([torch.zeros(2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match="equally many"):
        feature_kd(teacher, student[:1])


def test_eq8_weights_terms_and_rejects_unweighted_terms():
    terms = {"diff": torch.tensor(1.5), "out_kd": torch.tensor(0.25), "feat_kd": torch.tensor(4.0)}
    weights = {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}
    assert finetune_loss(terms, weights).item() == pytest.approx(1.5 + 0.5 + 0.4)
    assert eq8_loss({"diff": terms["diff"]}, weights).item() == pytest.approx(1.5)
    with pytest.raises(KeyError, match="outkd"):
        finetune_loss({"outkd": torch.tensor(1.0)}, weights)


def test_esd_target_is_negative_guidance():
    uncond, cond = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    # eta 1: 2 * uncond - cond
    torch.testing.assert_close(esd_target(uncond, cond, 1.0), torch.tensor([-1.0, -4.0]))
    torch.testing.assert_close(esd_target(uncond, cond, 0.5), torch.tensor([0.0, -3.0]))
    pred = torch.tensor([0.0, 0.0], requires_grad=True)
    target = esd_target(uncond, cond, 1.0)
    assert esd_loss(pred, target).item() == pytest.approx((1 + 16) / 2)
