"""Where the noisy latent x_t of an unlearning step comes from.

Two sources, both returning `(x_t, t)` with `t` a DDPM timestep in 0..999 per sample:

- `PartialSampler` (ESD as published; PAPER_FACTS section 3): start from Gaussian noise and run
  `stop` of `steps` DDIM steps with classifier-free guidance, using the model being trained and
  the concept prompt, with `stop` uniform in 1..steps-1. The latent then sits at the DDIM
  timestep `timesteps[stop]`, which is the DDPM t the losses use. (ESD's diffusers port does
  the same; its original CompVis script mapped step `s` to a DDPM t near `s * 1000 / steps`,
  i.e. from the wrong end of the schedule.)
- `forward_noise` (the authors' bilevel code, PAPER_FACTS section 1): forward-noise latents of
  real images of the concept with t uniform in 0..999.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from torch import Tensor

from pruneforget.unlearn.esd import EsdBatch


class PartialSampler:
    """Partial DDIM sampling with CFG through the pipeline's own loop (interrupted after `stop`
    steps via `callback_on_step_end`, the documented way to stop a diffusers pipeline early)."""

    def __init__(self, pipe: StableDiffusionPipeline, steps: int = 50, guidance: float = 3.0):
        if steps < 2:
            raise ValueError(f"partial sampling needs at least 2 DDIM steps to stop in between, got {steps}")
        config = dict(pipe.scheduler.config)
        config["clip_sample"] = False  # a DDIM built from a DDPM config would clamp latents to [-1, 1]
        self.scheduler = DDIMScheduler.from_config(config)
        self.components = {**pipe.components, "scheduler": self.scheduler}
        self.steps, self.guidance = steps, guidance

    def draw_stop(self, generator: torch.Generator) -> int:
        """The DDIM step to stop at, uniform in 1..steps-1."""
        return int(torch.randint(1, self.steps, (1,), generator=generator))

    @torch.no_grad()
    def __call__(
        self, unet: UNet2DConditionModel, cond: Tensor, uncond: Tensor, stop: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """x_t after `stop` guided DDIM steps of `unet` from seeded noise, and its DDPM t.

        `cond`/`uncond` are text embeddings (B, L, D) of the concept prompt and the empty prompt.
        """
        if not 1 <= stop < self.steps:
            raise ValueError(f"stop must be in 1..{self.steps - 1}, got {stop}")
        pipe = StableDiffusionPipeline(**{**self.components, "unet": unet}, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        size = unet.config.sample_size
        shape = (cond.shape[0], unet.config.in_channels, size, size)
        noise = torch.randn(shape, generator=generator).to(cond.device, cond.dtype)

        def stop_after(p, i, t, kwargs):
            if i + 1 == stop:
                p._interrupt = True
            return kwargs

        x_t = pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            latents=noise,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            output_type="latent",
            callback_on_step_end=stop_after,
        ).images
        t = self.scheduler.timesteps[stop].repeat(cond.shape[0]).to(cond.device)
        return x_t, t


def forward_noise(
    scheduler: DDPMScheduler, latents: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """q(x_t | x_0) for each latent, with t uniform in 0..num_train_timesteps-1."""
    t = torch.randint(scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    t = t.to(latents.device)
    return scheduler.add_noise(latents, noise, t), t


@dataclass
class PromptPool:
    """Text embeddings of the concept prompts, one tensor (n_k, L, D) per concept, each prompt
    paired with its reference ("" or its anchor, by the target mode); `uncond` is the empty
    prompt (1, L, D), the negative prompt of partial sampling."""

    cond: list[Tensor]
    reference: list[Tensor]
    uncond: Tensor

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`n` (prompt, reference) embedding pairs: a concept uniformly, then one of its prompts,
        so every concept gets the same share of steps whatever its number of prompts."""
        concepts = torch.randint(len(self.cond), (n,), generator=generator).tolist()
        picks = [int(torch.randint(len(self.cond[k]), (1,), generator=generator)) for k in concepts]
        cond = torch.stack([self.cond[k][i] for k, i in zip(concepts, picks)])
        reference = torch.stack([self.reference[k][i] for k, i in zip(concepts, picks)])
        return cond, reference


class SampledBatches:
    """ESD's batches: a concept prompt, then x_t by partial sampling with the model being trained."""

    def __init__(self, pool: PromptPool, sampler: PartialSampler, batch_size: int):
        self.pool, self.sampler, self.batch_size = pool, sampler, batch_size

    def __call__(self, unet: UNet2DConditionModel, generator: torch.Generator) -> EsdBatch:
        cond, reference = self.pool.draw(self.batch_size, generator)
        uncond = self.pool.uncond.expand(self.batch_size, -1, -1)
        stop = self.sampler.draw_stop(generator)
        x_t, t = self.sampler(unet, cond, uncond, stop, generator)
        return EsdBatch(x_t, t, cond, reference)


class NoisedImageBatches:
    """The authors' bilevel batches: a real image of a concept, forward-noised; its caption is c.

    `latents` holds the scaled VAE latents' posterior mean and std of every image (N, C, h, w);
    `cond` / `reference` the embeddings of each image's caption and of its reference."""

    def __init__(self, scheduler: DDPMScheduler, mean: Tensor, std: Tensor, cond: Tensor, reference: Tensor, batch_size: int):
        if not len(mean) == len(std) == len(cond) == len(reference):
            raise ValueError("every concept image needs a latent mean, std, caption and reference embedding")
        self.scheduler, self.mean, self.std = scheduler, mean, std
        self.cond, self.reference, self.batch_size = cond, reference, batch_size

    def __call__(self, unet: UNet2DConditionModel, generator: torch.Generator) -> EsdBatch:
        idx = torch.randint(len(self.mean), (self.batch_size,), generator=generator)
        latents = self.mean[idx] + self.std[idx] * torch.randn(self.mean[idx].shape, generator=generator).to(self.mean.device)
        x_t, t = forward_noise(self.scheduler, latents, generator)
        return EsdBatch(x_t, t, self.cond[idx], self.reference[idx])
