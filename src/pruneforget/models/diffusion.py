"""What training, unlearning and metrics all ask of a diffusion pipeline: its latents and caption
embeddings as sampling computes them, the denoising target of its prediction type, and the pixel
size its UNet works at."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from torch import Tensor

from pruneforget.images import to_tensor_range


@torch.no_grad()
def encode_latents(pipe: StableDiffusionPipeline, images: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image, unscaled (sampled and scaled per step); encoded on
    the VAE's device, returned on the CPU in float32."""
    means, stds = [], []
    vae = pipe.vae
    for x in to_tensor_range(images).split(batch):
        dist = vae.encode(x.to(vae.device, vae.dtype)).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_captions(pipe: StableDiffusionPipeline, captions: list[str], batch: int = 256) -> torch.Tensor:
    """Text embeddings exactly as the pipeline computes them at sampling time (on the text
    encoder's device), returned on the CPU in float32."""
    device = pipe.text_encoder.device
    chunks = [pipe.encode_prompt(captions[i : i + batch], device, 1, False)[0].float().cpu()
              for i in range(0, len(captions), batch)]
    return torch.cat(chunks)


def diffusion_target(scheduler, latents: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The regression target of the denoising loss: v = alpha_t * eps - sigma_t * x0
    (v-prediction, SD 2.1) or eps (epsilon-prediction), per `scheduler.config.prediction_type`."""
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    if kind == "epsilon":
        return noise
    raise ValueError(f"prediction_type {kind!r} is not supported (epsilon or v_prediction)")


def pipeline_resolution(pipe: StableDiffusionPipeline) -> int:
    """Pixel size the pipeline's UNet works at (latent size x the VAE's downsampling)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
