"""A Stable Diffusion 2.1 pipeline with random weights: SD 2.1's classes and configs, optionally shrunk.

The components and their config keys are those of `stabilityai/stable-diffusion-2-1`
(packaged under models/configs/sd21_*.json): a v-prediction DDIM scheduler, a UNet with linear
projections and 1024-d cross-attention, the OpenCLIP-H text encoder as a 23-layer `CLIPTextModel`
(the penultimate layer of OpenCLIP's 24, which is what SD 2.1 conditions on), and a
`CLIPTokenizer` padding with "!" to 77 tokens. `shrink=True` keeps every key and class and
narrows widths and depths so that the pipeline runs on a CPU in seconds; `shrink=False` is the
real size (the 865,910,724-parameter UNet) for memory benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pruneforget.io import read_json, write_json
from pruneforget.models.load import packaged_config
from pruneforget.standins.clip_vocab import write_vocab

# Widths and depths of the shrunk pipeline; every other key is SD 2.1's.
# sample_size: the pipeline's default resolution, 64 px instead of SD 2.1's 768 (sampling uses it).
SHRUNK_UNET = {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": [2, 4, 4, 4], "cross_attention_dim": 64,
               "sample_size": 8}
SHRUNK_VAE = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "sample_size": 64}
SHRUNK_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3,
               "projection_dim": 64}
SD21_IMAGE_PROCESSOR = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                        "resample": 3, "size": 224}


def sd21_configs(shrink: bool) -> dict[str, dict]:
    """Configs of the UNet, VAE and text encoder (SD 2.1's, with the shrunk widths if `shrink`)."""
    unet, vae, text = packaged_config("sd21_unet"), packaged_config("sd21_vae"), packaged_config("sd21_text_encoder")
    if shrink:
        unet.update(SHRUNK_UNET)
        vae.update(SHRUNK_VAE)
        text.update(SHRUNK_TEXT)
    return {"unet": unet, "vae": vae, "text_encoder": text}


def build_sd21_pipeline(out_dir: str | Path, corpus: list[str], *, shrink: bool = True, seed: int = 0,
                        merges: int = 600) -> StableDiffusionPipeline:
    """Build, save (`save_pretrained`, safetensors) and return a random SD 2.1 pipeline.

    The tokenizer's vocabulary is learned from `corpus` (clip_vocab.py); the text encoder's
    `vocab_size` and special-token ids follow it. Deterministic for `seed`."""
    out = Path(out_dir)
    configs = sd21_configs(shrink)
    tok_dir = out / "tokenizer"
    size = write_vocab(tok_dir, corpus, merges)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, pad_token="!", model_max_length=77)
    text_cfg = {**configs["text_encoder"], "vocab_size": size, "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    text_cfg.pop("architectures")
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(configs["vae"]),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_config(configs["unet"]),
        scheduler=DDIMScheduler.from_config(packaged_config("sd21_scheduler")),
        safety_checker=None,
        feature_extractor=CLIPImageProcessor(**SD21_IMAGE_PROCESSOR),
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    # Without torchvision, transformers saves the processor as its PIL twin `CLIPImageProcessorPil`;
    # SD 2.1's model_index names `CLIPImageProcessor` (and its preprocessor_config.json already does).
    index = read_json(out / "model_index.json")
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    write_json(out / "model_index.json", index)
    return pipe
