"""Probe batches of D_f for the pruners that measure importance (taylor, blocks): a few seeded
denoising batches of the fine-tuning set (finetune.csv of the data directory).

They are drawn as fine-tuning draws its batches (train/data.StreamedPairs: example, latent sample,
noise and timestep are functions of (seed, sample position) only; no caption dropout), so the
same `prune.importance` settings give the same batches at every scale and on every device. Their
pixel size is where the budget is measured (`prune.latent_size` latent pixels times the VAE's
downsampling: 512 px at sd21), so importance and MACs describe the same UNet evaluation.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import DDPMScheduler, StableDiffusionPipeline
from torch import Tensor

from pruneforget.train.data import StreamedPairs
from pruneforget.world.tables import read_split

IMPORTANCE_KEYS = ("batches", "batch_size", "seed")


def probe_resolution(pipe: StableDiffusionPipeline, latent_size: int) -> int:
    """Pixel size of the probe images: the MAC-measurement latent size times the VAE's factor."""
    return int(latent_size) * int(pipe.vae_scale_factor)


def probe_batches(pipe: StableDiffusionPipeline, data_dir: str | Path, latent_size: int, batches: int, batch_size: int,
                  seed: int) -> list[dict[str, Tensor]]:
    """`batches` denoising batches of `batch_size` D_f samples (positions 0 .. batches * batch_size - 1
    of the seeded order), encoded with the pipeline's own VAE and text encoder; CPU tensors."""
    if batches < 1 or batch_size < 1:
        raise ValueError(f"importance needs at least one probe batch of at least one sample (got {batches} x {batch_size})")
    table = read_split(data_dir, "finetune")
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    pairs = StreamedPairs(pipe, data_dir, table, probe_resolution(pipe, latent_size), scheduler, seed, caption_dropout=0.0)
    return [pairs(range(i * batch_size, (i + 1) * batch_size)) for i in range(batches)]
