"""Train the tiny world's AutoencoderKL: pixel MSE plus a tiny KL term (SD's VAE objective minus
GAN/LPIPS), as one objective ("vae") of the training loop (train/loop.py).

A perceptual or adversarial loss would need pretrained weights; at 32x32 with textures of a few
pixels, MSE alone reconstructs well enough that the evaluator cannot tell reconstructions apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

from pruneforget.images import to_tensor_range
from pruneforget.train.batches import EpochOrder, sample_generator
from pruneforget.train.loop import train
from pruneforget.train.objective import Objective, constant_schedule, scratch_settings


class ImageBatches:
    """Sample position p -> (image, posterior noise): the image of a seeded per-epoch order, and
    the standard normal noise of its posterior sample, both functions of (seed, p) only."""

    def __init__(self, images: Tensor, latent_shape: tuple[int, ...], seed: int):
        self.images, self.latent_shape, self.seed = images, latent_shape, seed
        self.order = EpochOrder(len(images), seed)

    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        index = torch.tensor([self.order(p) for p in positions])
        eps = torch.stack([torch.randn(self.latent_shape, generator=sample_generator(self.seed, p)) for p in positions])
        return {"pixels": self.images[index], "eps": eps}


class Reconstruction(nn.Module):
    """Encode, sample the posterior as mean + std * eps, decode: one forward, so that DDP (which
    hooks `forward`) can wrap the VAE. Returns (reconstruction, KL(q(z|x) || N(0, I)))."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.mean + posterior.std * eps).sample, posterior.kl().mean()


def vae_loss(model: nn.Module, x: Tensor, eps: Tensor, kl_weight: float) -> dict[str, Tensor]:
    """Reconstruction MSE plus `kl_weight` * KL for a `Reconstruction` (possibly DDP-wrapped);
    `total` is what is minimised."""
    recon, kl = model(x, eps)
    mse = F.mse_loss(recon.float(), x.float())
    return {"mse": mse, "kl": kl, "total": mse + kl_weight * kl}


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, images: np.ndarray, n: int = 2048) -> float:
    """1 / std of the latents, so the diffusion model sees unit-variance latents (SD's 0.18215)."""
    x = to_tensor_range(images[:n])
    z = torch.cat([vae.encode(b).latent_dist.mean for b in x.split(256)])
    return float(1.0 / z.std())


def train_vae(vae: AutoencoderKL, images: np.ndarray, cfg: dict, seed: int, work_dir: Path,
              progress: bool = True) -> AutoencoderKL:
    """Train `vae` on uint8 NHWC `images` for `cfg['steps']` steps, resumable from the checkpoints
    in `work_dir` (which also gets metrics.csv and cost.json); then set its latent scaling factor."""
    data = to_tensor_range(images)
    with torch.no_grad():
        latent_shape = tuple(vae.encode(data[:1]).latent_dist.mean.shape[1:])
    objective = Objective(
        name="vae", params=list(vae.parameters()), batches=ImageBatches(data, latent_shape, seed),
        loss=lambda models, batch: vae_loss(models["vae"], batch["pixels"], batch["eps"], cfg["kl_weight"]),
        lr=cfg["lr"], lr_schedule=cfg["lr_schedule"], terms=("total", "mse", "kl"),
    )
    train([objective], constant_schedule("vae"), {"vae": Reconstruction(vae)}, scratch_settings(cfg, log_every=50, progress=progress),
          work_dir)
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, images))
    return vae
