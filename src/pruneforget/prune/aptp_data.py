"""Training batches of APTP: (image, caption) pairs of the world's train split, encoded per batch.

The pruning run sees far fewer samples than the train set holds (tiny: a few thousand of 10,000;
sd21: 5,000 x 64 of COCO's 591,753 captions), so each batch is read and encoded when drawn rather
than the whole set up front: the same code serves both scales.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch import Tensor

from pruneforget.models.diffusion import diffusion_target, encode_captions, encode_latents


def load_square_images(data_dir: str | Path, paths: list[str], size: int) -> np.ndarray:
    """Images at `paths` (relative to `data_dir`, or absolute) centre-cropped to a square and
    resized to `size` x `size`: one uint8 array (N, size, size, 3)."""
    root = Path(data_dir)
    out = []
    for p in paths:
        with Image.open(root / p) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
            out.append(np.asarray(img))
    return np.stack(out)


class CaptionCache:
    """Remembers what a frozen encoder made of each caption, up to `max_entries` captions.

    The tiny world has a few thousand distinct captions, so after a few hundred steps every
    caption is encoded once and then looked up; at COCO scale (`max_entries` 0) nothing is kept.
    """

    def __init__(self, encode: Callable[[list[str]], Tensor], max_entries: int):
        self.encode, self.max_entries = encode, max_entries
        self.store: dict[str, Tensor] = {}

    def __call__(self, captions: list[str]) -> Tensor:
        missing = list(dict.fromkeys(c for c in captions if c not in self.store))
        fresh = dict(zip(missing, self.encode(missing))) if missing else {}
        out = torch.stack([self.store[c] if c in self.store else fresh[c] for c in captions])
        for c, e in fresh.items():
            if len(self.store) < self.max_entries:
                self.store[c] = e
        return out


def draw_batch(
    pipe, scheduler, table: pd.DataFrame, data_dir: str | Path, size: int, batch_size: int,
    generator: torch.Generator, text_cache: CaptionCache | None = None,
) -> dict[str, Tensor | list[str]]:
    """One denoising batch (noise from the training `scheduler`): random rows of `table`, their
    latents x0 (a posterior sample, scaled), noise, timesteps, x_t, the diffusion target, the
    text embeddings (through `text_cache` when given) and the captions."""
    idx = torch.randint(len(table), (batch_size,), generator=generator).tolist()
    rows = table.iloc[idx]
    captions = rows["caption"].tolist()
    text = text_cache(captions) if text_cache is not None else encode_captions(pipe, captions)
    # encode_latents / encode_captions return CPU float32; the noise is drawn there too (seeded).
    mean, std = encode_latents(pipe, load_square_images(data_dir, rows["image"].tolist(), size))
    x0 = (mean + std * torch.randn(mean.shape, generator=generator)) * pipe.vae.config.scaling_factor
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
    device, dtype = pipe.unet.device, pipe.unet.dtype
    return {
        "noisy": scheduler.add_noise(x0, noise, t).to(device, dtype),
        "target": diffusion_target(scheduler, x0, noise, t).to(device),
        "timesteps": t.to(device),
        "text": text.to(device, dtype),
        "captions": captions,
    }
