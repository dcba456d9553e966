"""Where the noisy latent x_t of an unlearning step comes from.

Two sources, both ending in an `EsdBatch` (x_t, its DDPM t, the concept prompt c, the reference):

- partial sampling (ESD as published; PAPER_FACTS section 3): start from Gaussian noise and run
  `stop` of `steps` DDIM steps with classifier-free guidance, using the model being trained and
  the concept prompt, `stop` uniform in 1..steps-1. The latent then sits at the DDIM timestep
  `timesteps[stop]`, which is the DDPM t the loss uses. (ESD's diffusers port does the same; its
  original CompVis script mapped step `s` to a DDPM t near `s * 1000 / steps`, from the wrong end
  of the schedule.) `ConceptPrompts` draws the prompt, noise and stop; `PartialSampler` samples.
- forward noising (the authors' bilevel code, PAPER_FACTS section 1): `NoisedConceptImages`
  forward-noises latents of real images of the concept, t uniform in 0..999.

Both are addressed by sample position like the training loop's other batches (train/batches.py):
everything random about sample p is a function of (seed, p), so a resumed run sees the same
prompts, noise and stopping steps. Only the partial sampling itself depends on the model's
current weights, so it runs inside the loss, at step time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from torch import Tensor

from pruneforget.train.batches import EpochOrder, sample_generator
from pruneforget.unlearn.esd_step import EsdBatch

XT_STREAM = 7  # the seed stream of unlearning batches (train/batches.py uses 0 and 1)


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

    @torch.no_grad()
    def __call__(self, unet: UNet2DConditionModel, cond: Tensor, uncond: Tensor, stop: int, noise: Tensor) -> tuple[Tensor, Tensor]:
        """x_t after `stop` guided DDIM steps of `unet` from `noise`, and its DDPM t (one per sample).

        `cond` / `uncond`: text embeddings (B, L, D) of the concept prompt and of the empty prompt.
        """
        if not 1 <= stop < self.steps:
            raise ValueError(f"stop must be in 1..{self.steps - 1}, got {stop}")
        pipe = StableDiffusionPipeline(**{**self.components, "unet": unet}, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)

        def stop_after(p, i, t, kwargs):
            if i + 1 == stop:
                p._interrupt = True
            return kwargs

        x_t = pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            latents=noise.to(cond.device, cond.dtype),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            output_type="latent",
            callback_on_step_end=stop_after,
        ).images
        t = self.scheduler.timesteps[stop].repeat(cond.shape[0]).to(cond.device)
        return x_t, t

    def realise(self, unet: UNet2DConditionModel, batch: dict[str, Tensor]) -> EsdBatch:
        """An EsdBatch from a `ConceptPrompts` batch: each group of samples that stops at the same
        step is sampled together."""
        x_t, t = torch.empty_like(batch["noise"]), torch.empty(len(batch["stop"]), dtype=torch.long, device=batch["noise"].device)
        for stop in batch["stop"].unique().tolist():
            rows = (batch["stop"] == stop).nonzero().flatten()
            uncond = batch["uncond"][rows]
            x_t[rows], t[rows] = self(unet, batch["cond"][rows], uncond, int(stop), batch["noise"][rows])
        return EsdBatch(x_t, t, batch["cond"], batch["reference"])


@dataclass
class PromptPool:
    """Text embeddings of the concept prompts, one tensor (n_k, L, D) per concept, each prompt
    paired with its reference ("" or its anchor, by the target mode); `uncond` is the empty
    prompt (L, D), the negative prompt of partial sampling."""

    cond: list[Tensor]
    reference: list[Tensor]
    uncond: Tensor

    def __post_init__(self):
        if not self.cond or any(len(c) == 0 for c in self.cond):
            raise ValueError("every concept needs at least one prompt")
        if [len(c) for c in self.cond] != [len(r) for r in self.reference]:
            raise ValueError("every concept prompt needs a reference embedding")


class ConceptPrompts:
    """ESD batches by sample position: a concept uniformly (so each concept gets the same share of
    steps whatever its number of prompts), one of its prompts uniformly, and the initial noise of
    partial sampling; one step to stop at (uniform in 1..steps-1) per batch, drawn from its first
    position, so a batch is one partial-sampling run (ESD draws one t per batch too)."""

    def __init__(self, pool: PromptPool, latent_shape: Sequence[int], sample_steps: int, seed: int):
        self.pool, self.latent_shape, self.sample_steps, self.seed = pool, tuple(latent_shape), sample_steps, seed

    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        cond, reference, noise = [], [], []
        positions = list(positions)
        stop = int(torch.randint(1, self.sample_steps, (1,), generator=sample_generator(self.seed, positions[0], XT_STREAM + 1)))
        for p in positions:
            g = sample_generator(self.seed, p, stream=XT_STREAM)
            k = int(torch.randint(len(self.pool.cond), (1,), generator=g))
            i = int(torch.randint(len(self.pool.cond[k]), (1,), generator=g))
            cond.append(self.pool.cond[k][i])
            reference.append(self.pool.reference[k][i])
            noise.append(torch.randn(self.latent_shape, generator=g))
        n = len(cond)
        return {"cond": torch.stack(cond), "reference": torch.stack(reference), "noise": torch.stack(noise),
                "stop": torch.full((n,), stop), "uncond": self.pool.uncond.expand(n, -1, -1).clone()}


def forward_noise(scheduler: DDPMScheduler, latents: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """q(x_t | x_0): the latents forward-noised to timesteps `t`."""
    return scheduler.add_noise(latents, noise, t)


class NoisedConceptImages:
    """The authors' bilevel batches by sample position: a real image of a concept (a seeded
    permutation per epoch), its latent sampled from the VAE posterior and scaled, forward-noised
    to t uniform in 0..999; its caption is the concept prompt c.

    `mean` / `std`: the VAE posterior of every image (N, C, h, w), unscaled; `cond` / `reference`:
    the embeddings of each image's caption and of its reference (N, L, D)."""

    def __init__(self, scheduler: DDPMScheduler, mean: Tensor, std: Tensor, scaling_factor: float,
                 cond: Tensor, reference: Tensor, seed: int):
        if not len(mean) == len(std) == len(cond) == len(reference):
            raise ValueError("every concept image needs a latent mean, std, caption and reference embedding")
        self.scheduler, self.mean, self.std, self.scale = scheduler, mean, std, scaling_factor
        self.cond, self.reference, self.seed = cond, reference, seed
        self.order = EpochOrder(len(mean), seed)

    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        idx, z, noise, t = [], [], [], []
        for p in positions:
            g = sample_generator(self.seed, p, stream=XT_STREAM)
            idx.append(self.order(p))
            z.append(torch.randn(self.mean.shape[1:], generator=g))
            noise.append(torch.randn(self.mean.shape[1:], generator=g))
            t.append(int(torch.randint(self.scheduler.config.num_train_timesteps, (1,), generator=g)))
        i, t = torch.tensor(idx), torch.tensor(t)
        x0 = (self.mean[i] + self.std[i] * torch.stack(z)) * self.scale
        return {"x_t": forward_noise(self.scheduler, x0, t, torch.stack(noise)), "t": t,
                "cond": self.cond[i], "reference": self.reference[i]}


def esd_batch(batch: dict[str, Tensor], unet: UNet2DConditionModel, sampler: PartialSampler | None) -> EsdBatch:
    """The EsdBatch of a batch from either source (partial sampling runs now, with `unet`)."""
    if "x_t" in batch:
        return EsdBatch(batch["x_t"], batch["t"], batch["cond"], batch["reference"])
    if sampler is None:
        raise ValueError("a ConceptPrompts batch needs a PartialSampler to produce x_t")
    return sampler.realise(unet, batch)
