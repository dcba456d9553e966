"""ESD: the target is the published formula, each mode produces the target it claims, partial
sampling is the guided DDIM loop stopped early, and only the chosen parameter subset is trained."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from pruneforget.models.tiny import build_unet
from pruneforget.unlearn.esd_step import EsdBatch, esd_goal, esd_step_loss, in_subset, subset_parameters
from pruneforget.unlearn.xt import PartialSampler

UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_heads": [2, 2], "norm_num_groups": 4}


def small_unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(UNET, latent_size=8, latent_channels=4, cross_attention_dim=384).eval()


def random_batch(seed: int = 1) -> EsdBatch:
    g = torch.Generator().manual_seed(seed)
    return EsdBatch(
        x_t=torch.randn(2, 4, 8, 8, generator=g),
        t=torch.tensor([500, 40]),
        cond=torch.randn(2, 6, 384, generator=g),
        reference=torch.randn(2, 6, 384, generator=g),
    )


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_negative_guidance_target_is_the_published_formula(eta):
    frozen, batch = small_unet(), random_batch()
    with torch.no_grad():
        f_ref = frozen(batch.x_t, batch.t, batch.reference).sample
        f_c = frozen(batch.x_t, batch.t, batch.cond).sample
    by_hand = f_ref - eta * (f_c - f_ref)
    for target in ("empty", "anchor_guidance"):  # the formula is the same, only the reference differs
        torch.testing.assert_close(esd_goal(frozen, batch, target, eta), by_hand, rtol=1e-4, atol=1e-5)


def test_anchor_target_is_the_frozen_prediction_for_the_anchor():
    frozen, batch = small_unet(), random_batch()
    with torch.no_grad():
        f_anchor = frozen(batch.x_t, batch.t, batch.reference).sample
    torch.testing.assert_close(esd_goal(frozen, batch, "anchor", eta=1.0), f_anchor)


def test_step_loss_is_mse_to_the_goal_and_only_the_trained_model_gets_gradients():
    unet, frozen, batch = small_unet(0), small_unet(1).requires_grad_(False), random_batch()
    loss = esd_step_loss(unet, frozen, batch, target="empty", eta=1.0)
    with torch.no_grad():
        f_ref = frozen(batch.x_t, batch.t, batch.reference).sample
        f_c = frozen(batch.x_t, batch.t, batch.cond).sample
        pred = unet(batch.x_t, batch.t, batch.cond).sample
    by_hand = ((pred - (2 * f_ref - f_c)) ** 2).mean()
    torch.testing.assert_close(loss.detach(), by_hand, rtol=1e-4, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown ESD target"):
        esd_goal(small_unet(), random_batch(), "negative", 1.0)


def test_parameter_subsets_follow_esd():
    unet = small_unet()
    x = subset_parameters(unet, "xattn")
    u = subset_parameters(unet, "noxattn")
    full = subset_parameters(unet, "full")
    assert x and all(".attn2." in n for n in x)
    assert not any(".attn1." in n for n in x)
    assert not any("attn2" in n or n.startswith(("time_embedding.", "conv_out.", "conv_norm_out.")) for n in u)
    assert any(".attn1." in n for n in u) and any("resnets" in n for n in u)
    assert len(full) == len(list(unet.parameters()))
    assert not set(x) & set(u)
    with pytest.raises(ValueError, match="unknown ESD parameter subset"):
        in_subset("conv_in.weight", "cross")


def test_partial_sampling_is_the_guided_ddim_loop_stopped_early(tiny_pipe):
    unet = tiny_pipe.unet.eval()
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(1, 16, 384, generator=g), torch.randn(1, 16, 384, generator=g)
    sampler = PartialSampler(tiny_pipe, steps=10, guidance=3.0)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    x_t, t = sampler(unet, cond, uncond, stop=4, noise=noise)

    ddim = DDIMScheduler.from_config({**tiny_pipe.scheduler.config, "clip_sample": False})
    ddim.set_timesteps(10)
    x = noise.clone()
    with torch.no_grad():
        for step in ddim.timesteps[:4]:
            f_u = unet(x, step, uncond).sample
            f_c = unet(x, step, cond).sample
            x = ddim.step(f_u + 3.0 * (f_c - f_u), step, x).prev_sample
    torch.testing.assert_close(x_t, x, rtol=1e-4, atol=1e-5)
    assert t.tolist() == [int(ddim.timesteps[4])]
    with pytest.raises(ValueError, match="stop must be in 1..9"):
        sampler(unet, cond, uncond, stop=10, noise=noise)
