"""Periodic evaluation of a fine-tuning run (eval.csv; paper Fig. 4 / 5: quality vs iterations).

Two numbers per evaluation, both on the held-out `val` images and captions:
- `denoising_error`: the diffusion task on real images at fixed seeded (t, noise)
  (metrics/denoising.py);
- `frechet` (tiny world): Frechet distance, in the ground-truth evaluator's feature space, between
  samples generated from a fixed subset of val captions (few DDIM steps, fixed seeds) and the
  real val images; or `fid` (sd21): clean-fid between the same kind of samples and the real
  val images (metrics/frechet.py `clean_fid_score`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diffusers import DDPMScheduler, StableDiffusionPipeline

from pruneforget.metrics.denoising import denoising_error
from pruneforget.metrics.fid_reference import STATS_FILE, fid_against_reference
from pruneforget.metrics.frechet import clean_fid_score, feature_stats, frechet_distance
from pruneforget.models.diffusion import encode_captions, encode_latents
from pruneforget.models.load import with_scheduler
from pruneforget.sample import generate


@dataclass
class EvalSettings:
    """The `finetune.eval` config section."""

    prompts: int  # val captions sampled for the Frechet distance / FID
    sample_steps: int  # DDIM steps per sample
    guidance: float  # classifier-free guidance scale of the samples
    denoising_images: int  # val images for the denoising error (0: all)
    timesteps_per_image: int  # seeded (t, noise) draws per image for the denoising error
    batch_size: int = 50  # images per sampling call
    seed: int = 0  # seeds of the samples (seed + i) and of the denoising draws

    @classmethod
    def from_config(cls, cfg: dict) -> "EvalSettings":
        return cls(**cfg)


class FinetuneEvaluation:
    """`evaluation(step) -> {"denoising_error": ..., "frechet" or "fid": ...}` for `pipe`, whose
    UNet the training loop updates in place. Real-image statistics are computed once here.

    `denoise_images` (uint8 NHWC at the model's resolution) and `denoise_captions` feed the
    denoising error; `prompts` are the val captions sampled (seeds `settings.seed + i`); the
    samples are compared with `real_images` in `evaluator`'s feature space (tiny world) or, without
    an evaluator, against `fid_reference` (sd21): a statistics directory of rule
    fid_reference_stats, or a folder / stats name for clean-fid.
    """

    def __init__(self, pipe: StableDiffusionPipeline, settings: EvalSettings, *, denoise_images: np.ndarray,
                 denoise_captions: list[str], prompts: list[str], evaluator=None, real_images: np.ndarray | None = None,
                 fid_reference: str | None = None):
        if evaluator is not None and real_images is None:
            raise ValueError("a Frechet distance in the evaluator's feature space needs the real val images")
        if evaluator is None and fid_reference is None:
            raise ValueError("evaluation needs the tiny world's evaluator (Frechet distance) or a FID reference (sd21)")
        self.settings, self.evaluator, self.fid_reference = settings, evaluator, fid_reference
        self.unet = pipe.unet
        # A sampling view of the pipeline: same modules, its own DDIM scheduler (the trained
        # pipeline keeps its scheduler).
        self.sampler = with_scheduler(StableDiffusionPipeline(**pipe.components), "ddim")
        self.sampler.set_progress_bar_config(disable=True)
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        mean, _ = encode_latents(pipe, denoise_images)
        self.val_latents = mean * pipe.vae.config.scaling_factor
        self.val_text = encode_captions(pipe, list(denoise_captions))
        self.prompts = list(prompts)
        self.seeds = [settings.seed + i for i in range(len(self.prompts))]
        self.real_stats = feature_stats(evaluator.features(real_images)) if evaluator is not None else None

    def samples(self) -> list:
        """The evaluation samples (PIL), deterministic given the UNet's weights."""
        s, images = self.settings, []
        for lo in range(0, len(self.prompts), s.batch_size):
            hi = lo + s.batch_size
            images += generate(self.sampler, self.prompts[lo:hi], self.seeds[lo:hi], s.guidance, s.sample_steps)
        return images

    def __call__(self, step: int) -> dict[str, float]:
        s = self.settings
        row = {"denoising_error": denoising_error(self.unet, self.noise_scheduler, self.val_latents, self.val_text,
                                                  s.timesteps_per_image, s.seed)}
        images = self.samples()
        if self.evaluator is not None:
            fake = feature_stats(self.evaluator.features(images))
            row["frechet"] = frechet_distance(*fake, *self.real_stats)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                for i, image in enumerate(images):
                    image.save(Path(tmp) / f"{i:05d}.png")
                files = sorted(Path(tmp).iterdir())
                # A statistics directory of rule fid_reference_stats carries its own extractor;
                # anything else is a folder or stats name for clean-fid.
                row["fid"] = (fid_against_reference(files, self.fid_reference)
                              if (Path(self.fid_reference) / STATS_FILE).is_file()
                              else clean_fid_score(tmp, self.fid_reference))
        return row

