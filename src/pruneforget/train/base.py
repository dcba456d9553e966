"""Train the tiny teacher's UNet: the DDPM loss in v- or epsilon-space with caption dropout for CFG.

Latents and text embeddings are computed once (the VAE and text encoder are frozen), which is
what makes a from-scratch teacher affordable on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from tqdm.auto import trange

from pruneforget.models.diffusion import diffusion_target, encode_captions, encode_latents
from pruneforget.train.checkpoint import load_checkpoint, save_checkpoint
from pruneforget.train.metrics_log import CsvLog


def train_teacher(
    pipe: StableDiffusionPipeline, images: np.ndarray, captions: list[str], cfg: dict, seed: int, work_dir: Path
) -> StableDiffusionPipeline:
    """Train `pipe.unet` on (image, caption) pairs for `cfg['steps']` steps, resumable from `work_dir`."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    mean, std = encode_latents(pipe, images)
    vocab = sorted(set(captions) | {""})
    embeddings = encode_captions(pipe, vocab)
    lookup = {c: i for i, c in enumerate(vocab)}
    caption_idx = torch.tensor([lookup[c] for c in captions])
    empty = lookup[""]
    scale = pipe.vae.config.scaling_factor

    unet = pipe.unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=0.0)
    # A short from-scratch budget ends better with a decaying rate (cosine) than a constant one.
    lr_schedule = get_scheduler(
        cfg["lr_schedule"], optimizer, num_warmup_steps=cfg["warmup_steps"], num_training_steps=cfg["steps"]
    )
    ckpt = work_dir / "checkpoint.pt"
    modules = {"unet": unet, "optimizer": optimizer, "lr_schedule": lr_schedule}
    start = load_checkpoint(ckpt, modules, generator) if ckpt.exists() else 0
    log = CsvLog(work_dir / "metrics.csv", ["loss", "lr"], resume_step=start)

    bar = trange(start, cfg["steps"], desc="train teacher", initial=start, total=cfg["steps"])
    for step in bar:
        idx = torch.randint(len(mean), (cfg["batch_size"],), generator=generator)
        eps_z = torch.randn(mean[idx].shape, generator=generator)
        latents = (mean[idx] + std[idx] * eps_z) * scale
        text = caption_idx[idx].clone()
        dropped = torch.rand(len(idx), generator=generator) < cfg["caption_dropout"]
        text[dropped] = empty
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (len(idx),), generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        pred = unet(noisy, t, embeddings[text]).sample
        loss = F.mse_loss(pred, diffusion_target(noise_scheduler, latents, noise, t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % 25 == 0:
            log.log(step + 1, loss=loss.item(), lr=lr_schedule.get_last_lr()[0])
        if (step + 1) % cfg["checkpoint_every"] == 0:
            save_checkpoint(ckpt, step + 1, modules, generator)
    unet.eval()
    return pipe

