"""The loading path, the shipped SD 2.1 configuration and the tiny pipeline's format."""

from __future__ import annotations

import torch
from sd21_random import random_sd21_unet

from pruneforget.models.load import load_pipeline, with_scheduler


def test_sd21_unet_config_has_865910724_parameters_and_denoises_a_small_latent():
    unet = random_sd21_unet()  # sd21_unet's configuration, random weights filled fast
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724
    latent = torch.randn(1, 4, 16, 16)
    text = torch.randn(1, 8, unet.config.cross_attention_dim)
    with torch.no_grad():
        out = unet(latent, torch.tensor([500]), text).sample
    assert out.shape == latent.shape and torch.isfinite(out).all()


def test_tiny_pipeline_round_trips_through_save_pretrained(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "model")
    loaded = load_pipeline(tmp_path / "model")
    assert type(loaded.text_encoder) is type(tiny_pipe.text_encoder)
    assert loaded.tokenizer.model_max_length == 16
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    for (name, a), (_, b) in zip(tiny_pipe.unet.state_dict().items(), loaded.unet.state_dict().items()):
        assert torch.equal(a, b), name


def test_ddim_swap_never_clips_latents(tiny_pipe):
    tiny_pipe.scheduler.register_to_config(clip_sample=True)
    assert with_scheduler(tiny_pipe, "ddim").scheduler.config.clip_sample is False


def test_load_pipeline_rejects_a_directory_without_model_index(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(tmp_path)
