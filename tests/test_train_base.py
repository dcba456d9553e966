"""Training the tiny base model: resume continues exactly, and the losses really fall."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pruneforget.models.diffusion import diffusion_target
from pruneforget.train.base import train_teacher
from pruneforget.train.vae import train_vae

UNET = {"lr_schedule": "cosine", "steps": 6, "batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "caption_dropout": 0.5, "checkpoint_every": 3}
VAE = {"lr_schedule": "cosine", "steps": 6, "batch_size": 4, "lr": 1e-3, "kl_weight": 1e-6, "checkpoint_every": 3}


def _data(n=16, size=16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    captions = [f"a {c} circle" for c in ["red", "blue"] * (n // 2)]
    return images, captions


class Crash(Exception):
    pass


def crash_after_first_checkpoint(monkeypatch, module):
    """Make training die right after its first checkpoint, as a killed job would."""
    original = module.save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(module, "save_checkpoint", save_then_crash)


def test_teacher_resume_reproduces_uninterrupted_run(tiny_pipe, tmp_path, monkeypatch):
    import pruneforget.train.loop as loop

    images, captions = _data()
    state = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    train_teacher(tiny_pipe, images, captions, UNET, seed=1, work_dir=tmp_path / "full", progress=False)
    full = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}

    tiny_pipe.unet.load_state_dict(state)
    with monkeypatch.context() as m:
        crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            train_teacher(tiny_pipe, images, captions, UNET, seed=1, work_dir=tmp_path / "cut")
    tiny_pipe.unet.load_state_dict(state)  # a fresh process: weights come from the checkpoint
    train_teacher(tiny_pipe, images, captions, UNET, seed=1, work_dir=tmp_path / "cut")
    for k in full:
        torch.testing.assert_close(tiny_pipe.unet.state_dict()[k], full[k], rtol=0, atol=0)
    assert any(not torch.equal(full[k], state[k]) for k in full)


def test_vae_resume_reproduces_uninterrupted_run_and_sets_scaling_factor(tiny_pipe, tmp_path, monkeypatch):
    import pruneforget.train.loop as loop

    images, _ = _data()
    vae = tiny_pipe.vae
    state = {k: v.clone() for k, v in vae.state_dict().items()}
    train_vae(vae, images, VAE, seed=2, work_dir=tmp_path / "full")
    full = {k: v.clone() for k, v in vae.state_dict().items()}
    vae.load_state_dict(state)
    with monkeypatch.context() as m:
        crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            train_vae(vae, images, VAE, seed=2, work_dir=tmp_path / "cut")
    vae.load_state_dict(state)
    train_vae(vae, images, VAE, seed=2, work_dir=tmp_path / "cut")
    for k in full:
        torch.testing.assert_close(vae.state_dict()[k], full[k], rtol=0, atol=0)
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 16, 16)).latent_dist.mean
    assert vae.config.scaling_factor > 0 and z.shape == (1, 4, 8, 8)


def test_teacher_loss_falls_on_a_fixed_pair(tiny_pipe, tmp_path):
    images, captions = _data(n=4)
    cfg = dict(UNET, steps=60, caption_dropout=0.0, checkpoint_every=1000, lr=3e-3, batch_size=8, log_every=1)
    train_teacher(tiny_pipe, images, captions, cfg, seed=0, work_dir=tmp_path)
    import pandas as pd

    log = pd.read_csv(tmp_path / "metrics.csv")
    assert list(log["objective"].unique()) == ["teacher"] and list(log["step"]) == list(range(1, 61))
    assert log["total"].iloc[-15:].mean() < 0.8 * log["total"].iloc[:15].mean()
    assert json.loads((tmp_path / "cost.json").read_text())["objectives"]["teacher"]["steps"] == 60


def test_v_prediction_target_matches_its_definition(tiny_pipe):
    from diffusers import DDPMScheduler

    s = DDPMScheduler.from_config(tiny_pipe.scheduler.config)
    x0, eps, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    a = s.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - s.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(diffusion_target(s, x0, eps, t), a * eps - sigma * x0)
