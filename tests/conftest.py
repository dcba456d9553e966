"""Shared fixtures: a tiny pipeline built from config in seconds (random weights, no training)."""

from __future__ import annotations

import pytest
import torch

from pruneforget.models.tiny import build_pipeline, build_vae

TINY_BASE = {
    "text_encoder": "minilm",
    "max_length": 16,
    "prediction_type": "v_prediction",
    "vae": {"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4},
    "unet": {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_heads": [2, 2], "norm_num_groups": 4},
}


@pytest.fixture(scope="session")
def tiny_base_cfg() -> dict:
    return TINY_BASE


@pytest.fixture()
def tiny_pipe():
    """An untrained tiny pipeline: 16x16 images, 8x8 latents, the real MiniLM text encoder."""
    torch.manual_seed(0)
    vae = build_vae(TINY_BASE["vae"], image_size=16)
    return build_pipeline(TINY_BASE, image_size=16, vae=vae)


# Modules whose end-to-end builds run in the background from the start of the session.
BACKGROUND_BUILDS = ("test_workflow_micro", "test_sd21_smoke_workflow")


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what will not run
def pytest_collection_modifyitems(config, items):
    """Start the end-to-end builds (the micro builds of tests/test_workflow_micro.py, the sd21
    smoke of tests/test_sd21_smoke_workflow.py) right after collection, when a test of theirs is
    selected: they take most of CI's time, and running beside the rest of the suite, they use the
    core its single-threaded tests leave idle."""
    if config.option.collectonly:
        return
    import importlib

    selected = {item.path.stem for item in items}
    for name in BACKGROUND_BUILDS:
        if name in selected:
            importlib.import_module(name).start_builds(config._tmp_path_factory.mktemp(name))
