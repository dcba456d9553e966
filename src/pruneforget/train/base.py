"""Train the tiny teacher's UNet: the DDPM loss in v- or epsilon-space with caption dropout for CFG,
as one objective ("teacher") of the training loop (train/loop.py: accelerate checkpoints, DDP,
mixed precision, the cost record).

Latents and text embeddings are computed once (the VAE and text encoder are frozen), which is
what makes a from-scratch teacher affordable on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from diffusers import DDPMScheduler, StableDiffusionPipeline

from pruneforget.train.data import precomputed_pairs
from pruneforget.train.losses import diffusion_loss
from pruneforget.train.loop import train
from pruneforget.train.objective import Objective, constant_schedule, scratch_settings


def teacher_objective(unet, batches, scheduler, cfg: dict) -> Objective:
    """Every UNet parameter, the plain DDPM loss (no Min-SNR: the teacher is trained as SD was),
    AdamW without weight decay; a short from-scratch budget ends better with a decaying rate
    (`lr_schedule: cosine`) than a constant one."""

    def loss(models, batch):
        pred = models["unet"](batch["noisy"], batch["timesteps"], batch["text"]).sample
        return {"total": diffusion_loss(pred, batch["target"], batch["timesteps"], scheduler)}

    return Objective(name="teacher", params=list(unet.parameters()), loss=loss, batches=batches, lr=cfg["lr"],
                     warmup_steps=cfg["warmup_steps"], lr_schedule=cfg["lr_schedule"])


def train_teacher(
    pipe: StableDiffusionPipeline, images: np.ndarray, captions: list[str], cfg: dict, seed: int, work_dir: Path,
    progress: bool = True,
) -> StableDiffusionPipeline:
    """Train `pipe.unet` on (image, caption) pairs for `cfg['steps']` steps, resumable from the
    checkpoints in `work_dir` (which also gets metrics.csv and cost.json)."""
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batches = precomputed_pairs(pipe, images, captions, scheduler, seed, cfg["caption_dropout"])
    objective = teacher_objective(pipe.unet, batches, scheduler, cfg)
    train([objective], constant_schedule("teacher"), {"unet": pipe.unet}, scratch_settings(cfg, progress=progress),
          work_dir)
    return pipe
