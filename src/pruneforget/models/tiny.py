"""Build the tiny Stable-Diffusion-shaped pipeline from config (no downloads).

The UNet keeps SD's structure where later stages need it: two layers per block, several
attention heads per transformer, GEGLU feed-forward, GroupNorm groups and cross-attention,
so that pruning has heads, channel groups and depth to remove and unlearning has
cross-attention to edit.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from pruneforget.models.load import packaged_config
from pruneforget.models.text import load_text_encoder


def build_vae(cfg: dict, image_size: int) -> AutoencoderKL:
    """An AutoencoderKL downsampling by 2**(len(block_out_channels) - 1)."""
    n = len(cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=1,
        latent_channels=cfg["latent_channels"],
        norm_num_groups=cfg["norm_num_groups"],
        sample_size=image_size,
        # Textures are local: the mid-block self-attention roughly doubled the step time on a
        # CPU without helping reconstruction at 32x32.
        mid_block_add_attention=False,
    )


def build_unet(cfg: dict, latent_size: int, latent_channels: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """A UNet2DConditionModel shaped like SD 2.1's: cross-attention at all but the top resolution."""
    n = len(cfg["block_out_channels"])
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=down,
        up_block_types=up,
        # diffusers reads `attention_head_dim` as the number of heads (as in SD 2.1's config).
        attention_head_dim=tuple(cfg["attention_heads"]),
        norm_num_groups=cfg["norm_num_groups"],
        cross_attention_dim=cross_attention_dim,
        use_linear_projection=True,
    )


def build_scheduler(prediction_type: str) -> DDIMScheduler:
    """SD 2.1's noise schedule (scaled-linear betas 0.00085..0.012, 1000 steps) for the tiny world."""
    config = packaged_config("sd21_scheduler")
    config.pop("_class_name")
    config["prediction_type"] = prediction_type
    return DDIMScheduler.from_config(config)


def build_pipeline(base_cfg: dict, image_size: int, vae: AutoencoderKL) -> StableDiffusionPipeline:
    """Assemble the tiny pipeline around a trained VAE with a freshly initialised UNet."""
    tokenizer, text_encoder = load_text_encoder(base_cfg["text_encoder"], base_cfg["max_length"])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    unet = build_unet(
        base_cfg["unet"],
        latent_size=image_size // factor,
        latent_channels=vae.config.latent_channels,
        cross_attention_dim=text_encoder.config.hidden_size,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(base_cfg["prediction_type"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
