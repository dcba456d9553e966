"""Fine-tuning data D_f and held-out images as the training loop and evaluation need them.

Two batch sources with the same per-position randomness (train/batches.py), so they give the
same batches where both apply:
- `LatentTextPairs` (batches.py): every image and caption encoded once up front (tiny world);
- `StreamedPairs`: images read, resized and encoded per micro-batch (MS-COCO at sd21, where
  591,753 captions and 118k images at 512 px do not fit in memory as latents).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from torch import Tensor

from pruneforget.images import to_tensor_range
from pruneforget.models.diffusion import encode_captions, encode_latents
from pruneforget.train.batches import EpochOrder, LatentTextPairs, denoising_batch, sample_draws
from pruneforget.world.tables import load_image_at


def precomputed_pairs(pipe: StableDiffusionPipeline, images: np.ndarray, captions: Sequence[str], scheduler,
                      seed: int, caption_dropout: float) -> LatentTextPairs:
    """Encode every image and distinct caption once (plus "" for caption dropout)."""
    mean, std = encode_latents(pipe, images)
    vocab = sorted(set(captions) | {""})
    lookup = {c: i for i, c in enumerate(vocab)}
    return LatentTextPairs(mean, std, torch.tensor([lookup[c] for c in captions]), encode_captions(pipe, vocab),
                           lookup[""], pipe.vae.config.scaling_factor, scheduler, seed, caption_dropout)


class StreamedPairs:
    """Denoising batches encoded on the fly: sample position p draws exactly what
    `LatentTextPairs` draws (example, latent sample, noise, t, caption dropout), then reads and
    encodes only the images and captions of the micro-batch with the pipeline's frozen VAE and
    text encoder."""

    def __init__(self, pipe: StableDiffusionPipeline, data_dir: str | os.PathLike, table: pd.DataFrame, size: int,
                 scheduler, seed: int, caption_dropout: float = 0.0):
        self.pipe, self.root, self.size = pipe, Path(data_dir), size
        self.paths, self.captions = table["image"].tolist(), table["caption"].tolist()
        self.scheduler, self.seed, self.caption_dropout = scheduler, seed, caption_dropout
        self.order = EpochOrder(len(table), seed)
        f = int(pipe.vae_scale_factor)
        self.latent_shape = (pipe.vae.config.latent_channels, size // f, size // f)

    def __len__(self) -> int:
        return len(self.paths)

    @torch.no_grad()
    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        idx, z, noise, t, captions = [], [], [], [], []
        for p in positions:
            i = self.order(p)
            idx.append(i)
            zi, ni, ti, dropped = sample_draws(self.seed, p, self.latent_shape, self.scheduler.config.num_train_timesteps,
                                               self.caption_dropout)
            z.append(zi), noise.append(ni), t.append(ti)
            captions.append("" if dropped else self.captions[i])
        pixels = to_tensor_range(np.stack([load_image_at(self.root / self.paths[i], self.size) for i in idx]))
        vae, device = self.pipe.vae, self.pipe.vae.device
        dist = vae.encode(pixels.to(device, vae.dtype)).latent_dist
        x0 = (dist.mean.float().cpu() + dist.std.float().cpu() * torch.stack(z)) * vae.config.scaling_factor
        text = self.pipe.encode_prompt(captions, self.pipe.text_encoder.device, 1, False)[0].float().cpu()
        return denoising_batch(self.scheduler, x0, torch.stack(noise), torch.tensor(t), text)
