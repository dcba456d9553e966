"""Train the tiny world's AutoencoderKL: pixel MSE plus a tiny KL term (SD's VAE objective minus GAN/LPIPS).

A perceptual or adversarial loss would need pretrained weights; at 32x32 with textures of a few
pixels, MSE alone reconstructs well enough that the evaluator cannot tell reconstructions apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from tqdm.auto import trange

from pruneforget.images import to_tensor_range
from pruneforget.train.checkpoint import load_checkpoint, save_checkpoint
from pruneforget.train.metrics_log import CsvLog


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Reconstruction MSE of a posterior sample plus `kl_weight` * KL(q(z|x) || N(0, I))."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    mse = F.mse_loss(recon, x)
    kl = posterior.kl().mean()
    return mse + kl_weight * kl, {"mse": mse.item(), "kl": kl.item()}


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, images: np.ndarray, n: int = 2048) -> float:
    """1 / std of the latents, so the diffusion model sees unit-variance latents (SD's 0.18215)."""
    x = to_tensor_range(images[:n])
    z = torch.cat([vae.encode(b).latent_dist.mean for b in x.split(256)])
    return float(1.0 / z.std())


def train_vae(vae: AutoencoderKL, images: np.ndarray, cfg: dict, seed: int, work_dir: Path) -> AutoencoderKL:
    """Train `vae` on uint8 NHWC `images` for `cfg['steps']` steps, resumable from `work_dir`."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], weight_decay=0.0)
    lr_schedule = get_scheduler(cfg["lr_schedule"], optimizer, num_warmup_steps=0, num_training_steps=cfg["steps"])
    ckpt = work_dir / "checkpoint.pt"
    modules = {"vae": vae, "optimizer": optimizer, "lr_schedule": lr_schedule}
    start = load_checkpoint(ckpt, modules, generator) if ckpt.exists() else 0
    log = CsvLog(work_dir / "metrics.csv", ["loss", "mse", "kl"], resume_step=start)
    data = to_tensor_range(images)
    vae.train()
    bar = trange(start, cfg["steps"], desc="train vae", initial=start, total=cfg["steps"])
    for step in bar:
        idx = torch.randint(len(data), (cfg["batch_size"],), generator=generator)
        loss, parts = vae_loss(vae, data[idx], cfg["kl_weight"], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        bar.set_postfix(mse=f"{parts['mse']:.4f}")
        if (step + 1) % 50 == 0:
            log.log(step + 1, loss=loss.item(), **parts)
        if (step + 1) % cfg.get("checkpoint_every", 500) == 0:
            save_checkpoint(ckpt, step + 1, modules, generator)
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, images))
    return vae
