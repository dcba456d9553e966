"""Shared fixtures: a tiny pipeline built from config in seconds (random weights, no training)."""

from __future__ import annotations

from pathlib import Path

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


def _start_builds(config, modules: set[str]) -> None:
    """Start the end-to-end builds (the micro builds of tests/test_workflow_micro.py, the sd21
    smoke of tests/test_sd21_smoke_workflow.py) of the selected modules: they take most of CI's
    time, and running beside the rest of the suite, they use the cores its tests leave idle.
    Each starts once per session, whoever asks first (background.py)."""
    import importlib

    import background

    for name in BACKGROUND_BUILDS:
        if name in modules:
            importlib.import_module(name).start_builds(background.directory(config, name))


def _shares_fixture(item) -> bool:
    """Whether the test uses a module- or class-scoped fixture (built once per worker)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info else ()
    return any(fd[-1].scope in ("module", "class", "package") for fd in defs if fd)


def pytest_configure(config):
    """pytest-xdist's loadgroup schedules the largest groups first; here, collection order
    (see pytest_collection_modifyitems), so that waiting for a build comes last."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Before the other hooks: under pytest-xdist (--dist loadgroup), the tests of a module that
    share a module-scoped fixture go to one worker, which builds it once (the end-to-end builds'
    follow-up tests also change their copies in turn). After them, when -m / -k have deselected
    what will not run: start the end-to-end builds, unless this is an xdist worker (the
    controller starts them, pytest_xdist_node_collection_finished)."""
    for item in items:
        if _shares_fixture(item) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # The tests that wait for an end-to-end build last: the workers run every other test while
    # the builds run (xdist then schedules in collection order: pytest_configure).
    items.sort(key=lambda item: item.path.stem in BACKGROUND_BUILDS)
    result = yield
    if not config.option.collectonly and not hasattr(config, "workerinput"):
        _start_builds(config, {item.path.stem for item in items})
    return result


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """The xdist controller starts the builds once the first worker has collected (and
    deselected) the suite."""
    if not node.config.option.collectonly:
        _start_builds(node.config, {Path(i.split("::")[0]).stem for i in ids})
