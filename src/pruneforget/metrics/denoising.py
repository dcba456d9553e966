"""Denoising error on held-out real images: how well a model still does the diffusion task.

    err = mean_{i, j} ||f(x_t, t_ij, c_i) - y(x0_i, eps_ij, t_ij)||^2,   x_t = add_noise(x0_i, eps_ij, t_ij)

with y the model's own regression target (v or eps), x0_i the clean latents of held-out images,
and (t_ij, eps_ij) drawn once from `seed`: the same noisy inputs at every evaluation, so the
numbers along a training run (and between models) are paired comparisons, not noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pruneforget.models.diffusion import diffusion_target


@torch.no_grad()
def denoising_error(unet, scheduler, latents: Tensor, text_embeddings: Tensor, timesteps_per_image: int, seed: int,
                    batch_size: int = 64) -> float:
    """Mean squared error of `unet`'s prediction against the true diffusion target on `latents`
    (N, C, H, W; clean, already scaled by the VAE's scaling factor) with their captions'
    `text_embeddings` (N, L, D), at `timesteps_per_image` seeded timesteps and noises per image.

    Deterministic: timesteps and noise come from one CPU generator seeded with `seed`, whatever
    the device or batch size. `scheduler` supplies the noise schedule and prediction type.
    """
    if len(latents) != len(text_embeddings):
        raise ValueError(f"{len(latents)} latents but {len(text_embeddings)} text embeddings")
    if timesteps_per_image < 1:
        raise ValueError(f"timesteps_per_image must be >= 1, got {timesteps_per_image}")
    generator = torch.Generator().manual_seed(seed)
    n = len(latents) * timesteps_per_image
    image = torch.arange(len(latents)).repeat_interleave(timesteps_per_image)
    t = torch.randint(scheduler.config.num_train_timesteps, (n,), generator=generator)
    noise = torch.randn((n, *latents.shape[1:]), generator=generator)
    device, dtype = unet.device, unet.dtype
    total = 0.0
    for lo in range(0, n, batch_size):
        sl = slice(lo, lo + batch_size)
        x0, eps, tt = latents[image[sl]].cpu().float(), noise[sl], t[sl]
        noisy = scheduler.add_noise(x0, eps, tt)
        target = diffusion_target(scheduler, x0, eps, tt)
        pred = unet(noisy.to(device, dtype), tt.to(device), text_embeddings[image[sl]].to(device, dtype)).sample
        total += float((pred.float().cpu() - target).pow(2).mean(dim=(1, 2, 3)).sum())
    return total / n
