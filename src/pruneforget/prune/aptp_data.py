"""Training batches of APTP: (image, caption) pairs of the world's train split, encoded per batch.

The pruning run sees far fewer samples than the train set holds (tiny: a few thousand of 10,000;
sd21: 5,000 x 64 of COCO's 591,753 captions), so each batch is read and encoded when drawn rather
than the whole set up front: the same code serves both scales.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch import Tensor

from pruneforget.models.diffusion import encode_latents
from pruneforget.train.batches import EpochOrder, denoising_batch, sample_draws, sample_generator


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


class AptpBatches:
    """Sample position p -> one APTP training sample, every draw a function of (seed, p) only
    (train/batches.py): a row of `table` in seeded epoch order, its latent x0 (a posterior sample,
    scaled), noise and timestep, x_t and the diffusion target, the caption's text embedding
    (through `text_cache`) and its prompt-encoder embedding (through `prompt_cache`). A batch
    also carries `gate_seed`, the seed of its gates' Gumbel noise."""

    def __init__(self, pipe, scheduler, table: pd.DataFrame, data_dir: str | Path, size: int, seed: int,
                 text_cache: CaptionCache, prompt_cache: CaptionCache):
        self.pipe, self.scheduler, self.table, self.root, self.size, self.seed = pipe, scheduler, table, Path(data_dir), size, seed
        self.text_cache, self.prompt_cache = text_cache, prompt_cache
        self.order = EpochOrder(len(table), seed)

    @torch.no_grad()
    def __call__(self, positions: Sequence[int]) -> dict:
        rows = self.table.iloc[[self.order(p) for p in positions]]
        captions = rows["caption"].tolist()
        # encode_latents / encode_captions return CPU float32; the noise is drawn there too (seeded).
        mean, std = encode_latents(self.pipe, load_square_images(self.root, rows["image"].tolist(), self.size))
        z, noise, t = [], [], []
        for p in positions:  # no caption dropout: the router learns from every caption
            zi, ni, ti, _ = sample_draws(self.seed, p, mean.shape[1:], self.scheduler.config.num_train_timesteps)
            z.append(zi), noise.append(ni), t.append(ti)
        x0 = (mean + std * torch.stack(z)) * self.pipe.vae.config.scaling_factor
        batch = denoising_batch(self.scheduler, x0, torch.stack(noise), torch.tensor(t), self.text_cache(captions))
        batch["prompts"] = self.prompt_cache(captions).float().cpu()
        batch["gate_seed"] = sample_generator(self.seed, positions[0], stream=2).initial_seed()
        return batch
