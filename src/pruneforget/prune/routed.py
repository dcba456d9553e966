"""APTP as a mixture of experts: each prompt is sampled by the expert its router picks (argmax).

The experts are physically sliced UNets (one per code, extracted when first needed); the VAE,
text encoder, tokenizer and scheduler are the teacher pipeline's, shared by every expert.

    routed = load_routed_pipeline("results/tiny/aptp-80", "results/tiny/base")
    images = routed(prompts, generator=[torch.Generator().manual_seed(s) for s in seeds]).images
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

from pruneforget.models.expert import extract_expert
from pruneforget.models.structure import load_code
from pruneforget.prune.router import PromptEncoder, Router, load_router


class RoutedPipeline:
    """A teacher pipeline whose UNet is chosen per prompt by an APTP router."""

    def __init__(self, pipe: StableDiffusionPipeline, router: Router, encoder: PromptEncoder, codes: dict):
        """`codes`: code index -> ArchCode (from the APTP run's codes/ directory)."""
        self.pipe, self.router, self.encoder, self.codes = pipe, router.eval(), encoder, codes
        self._experts: dict[int, StableDiffusionPipeline] = {}

    def route(self, prompts: list[str]) -> list[int]:
        """The expert (code index) of each prompt: the router's deterministic argmax."""
        embeddings = self.encoder(prompts).to(self.router.codes.device)
        return self.router.route(embeddings).tolist()

    def expert(self, index: int) -> StableDiffusionPipeline:
        """The pipeline of expert `index`: the teacher's components around the sliced UNet."""
        if index not in self._experts:
            arch = self.codes[index]
            unet = extract_expert(self.pipe.unet, arch.masks, arch.width_groups)
            pipe = StableDiffusionPipeline(**{**self.pipe.components, "unet": unet})
            pipe.set_progress_bar_config(disable=True)
            self._experts[index] = pipe
        return self._experts[index]

    def __call__(self, prompt: list[str], generator: list[torch.Generator] | None = None, **kwargs) -> StableDiffusionPipelineOutput:
        """Sample `prompt` (one image per prompt), each with its expert; `kwargs` go to every call
        (guidance_scale, num_inference_steps, output_type, ...). Images come back in prompt order."""
        if isinstance(prompt, str):
            prompt = [prompt]
        if generator is not None and len(generator) != len(prompt):
            raise ValueError(f"{len(generator)} generators for {len(prompt)} prompts; pass one per prompt")
        routes = self.route(prompt)
        images: list = [None] * len(prompt)
        for index in sorted(set(routes)):
            members = [i for i, r in enumerate(routes) if r == index]
            gens = [generator[i] for i in members] if generator is not None else None
            out = self.expert(index)([prompt[i] for i in members], generator=gens, **kwargs).images
            for i, image in zip(members, out):
                images[i] = image
        if kwargs.get("output_type") == "pt":
            images = torch.stack(images)
        elif kwargs.get("output_type") == "np":
            images = np.stack(images)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)


def load_routed_pipeline(aptp_dir: str | Path, base_dir: str | Path, device: str | torch.device = "cpu") -> RoutedPipeline:
    """The routed pipeline of an APTP run (prune-aptp output) over its teacher."""
    from pruneforget.models.load import load_pipeline

    aptp_dir = Path(aptp_dir)
    router = load_router(aptp_dir).to(device)
    pipe = load_pipeline(base_dir, device=device)
    codes = {i: load_code(aptp_dir / "codes" / f"code-{i}.json") for i in range(router.config.n_codes)}
    for arch in codes.values():
        arch.check_base(pipe.unet)
    encoder = PromptEncoder(router.config.prompt_encoder).to(device)
    return RoutedPipeline(pipe, router, encoder, codes)
