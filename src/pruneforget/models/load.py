"""One loading path for both scales: a diffusers pipeline from a local directory or a hub id.

Nothing downstream knows whether it holds the tiny teacher or Stable Diffusion 2.1: both are
`StableDiffusionPipeline` directories written by `save_pretrained`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "pndm": PNDMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}


def load_pipeline(source: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> StableDiffusionPipeline:
    """Load a text-to-image pipeline from a local directory or a hub id.

    A local directory must hold `model_index.json` (written by `save_pretrained`); otherwise
    `source` is taken as a hub id such as `stabilityai/stable-diffusion-2-1`. A pruned expert
    (`unet/arch_code.json`, written by `pruneforget.models.expert.save_pipeline`) gets its sliced
    UNet rebuilt from the base config and its code.
    """
    path = Path(source)
    if path.exists() and not (path / "model_index.json").exists():
        raise FileNotFoundError(
            f"{path} exists but holds no model_index.json: expected a pipeline saved with save_pretrained"
        )
    kwargs = {"safety_checker": None, "requires_safety_checker": False}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    if (path / "unet" / "arch_code.json").exists():
        from pruneforget.models.expert import load_expert_unet

        kwargs["unet"] = load_expert_unet(path / "unet", dtype=dtype)
    if _is_bert(path / "text_encoder"):
        # The tiny world's MiniLM encoder is saved without BERT's pooler (text.py loads it so);
        # diffusers would add one, initialised at random and unseeded, and every re-saved
        # pipeline would then differ in bytes.
        from transformers import BertModel

        kwargs["text_encoder"] = BertModel.from_pretrained(path / "text_encoder", add_pooling_layer=False, **(
            {"dtype": dtype} if dtype is not None else {}))
    pipe = StableDiffusionPipeline.from_pretrained(str(source), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _is_bert(text_encoder_dir: Path) -> bool:
    config = text_encoder_dir / "config.json"
    return config.exists() and json.loads(config.read_text()).get("model_type") == "bert"


def with_scheduler(pipe: StableDiffusionPipeline, name: str) -> StableDiffusionPipeline:
    """Swap the sampling scheduler, keeping the trained noise schedule and prediction type."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    config = dict(pipe.scheduler.config)
    if name == "ddim":
        # A DDIM built from a DDPM config keeps clip_sample=True, which clamps latents to [-1, 1].
        config["clip_sample"] = False
    pipe.scheduler = SCHEDULERS[name].from_config(config)
    return pipe


def packaged_config(name: str) -> dict:
    """A model configuration shipped with the package (e.g. `sd21_unet`)."""
    text = resources.files("pruneforget.models").joinpath("configs", f"{name}.json").read_text()
    return json.loads(text)


def sd21_unet(sample_size: int | None = None) -> UNet2DConditionModel:
    """The Stable Diffusion 2.1 UNet architecture with random weights (no download)."""
    config = packaged_config("sd21_unet")
    if sample_size is not None:
        config["sample_size"] = sample_size
    return UNet2DConditionModel.from_config(config)
