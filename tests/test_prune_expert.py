"""Experts: the physically sliced UNet computes what the gated (masked) base UNet computes, and
survives saving and loading, alone and inside a pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from sd21_random import random_sd21_unet

from pruneforget.models.expert import extract_expert, load_expert_unet, save_expert_unet, save_pipeline
from pruneforget.models.expert_modules import ConstantOutput, IdentityTransformer, ShortcutResnet
from pruneforget.models.load import load_pipeline
from pruneforget.models.structure import arch_code_of, base_fingerprint, full_code, is_pruned, prunable_groups
from pruneforget.models.tiny import build_unet
from pruneforget.prune.gates import gated

TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 2, "attention_heads": [2, 2], "norm_num_groups": 4}


def tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(TINY_UNET, latent_size=8, latent_channels=4, cross_attention_dim=24).eval()


def random_hard_code(groups, seed: int, empty_kinds=()):
    """Units off at random (about 40%) in every kind, every other depth gate off; each kind in
    `empty_kinds` also gets one group with every unit off."""
    gen = torch.Generator().manual_seed(seed)
    code = {}
    for g in groups:
        mask = (torch.rand(g.units, generator=gen) > 0.4).float()
        if g.units > 1 and mask.sum() == g.units:
            mask[0] = 0
        if g.units > 1 and mask.sum() == 0:
            mask[-1] = 1
        code[g.name] = mask
    depth = [g for g in groups if g.is_depth]
    for i, g in enumerate(depth):
        code[g.name] = torch.tensor([float(i % 2)])
    parent_off = {g.module for g in depth if code[g.name][0] == 0}
    for kind in empty_kinds:
        live = [g for g in groups if g.kind == kind and not any(g.module.startswith(m + ".") or g.module == m for m in parent_off)]
        code[live[0].name] = torch.zeros(live[0].units)
    return code


def inputs(unet, batch: int = 2, text_len: int = 7, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    c = torch.randn(batch, text_len, unet.config.cross_attention_dim, generator=gen)
    return x, t, c


def test_sliced_expert_matches_masked_model():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    assert {g.kind for g in groups} == {"resnet_width", "attn_heads", "ff_width", "depth_resnet", "depth_attn"}
    x, t, c = inputs(unet)
    for seed in range(3):
        code = random_hard_code(groups, seed, empty_kinds=("resnet_width", "attn_heads", "ff_width"))
        with torch.no_grad():
            with gated(unet, code, groups):
                masked = unet(x, t, c).sample
            expert = extract_expert(unet, code)
            sliced = expert(x, t, c).sample
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=1e-5)
        assert sum(p.numel() for p in expert.parameters()) < sum(p.numel() for p in unet.parameters())
        kinds = {type(m) for m in expert.modules()}
        assert {ShortcutResnet, IdentityTransformer, ConstantOutput} <= kinds
    # the base UNet is untouched by gating and extraction
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, c).sample, tiny_unet()(x, t, c).sample, atol=0, rtol=0)
    assert not is_pruned(unet)


def test_full_code_expert_equals_base():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    x, t, c = inputs(unet)
    with torch.no_grad():
        expert = extract_expert(unet, full_code(groups))
        torch.testing.assert_close(expert(x, t, c).sample, unet(x, t, c).sample, atol=0, rtol=0)


def test_sliced_expert_matches_masked_model_sd21():
    """Same property on the paper's architecture (SD 2.1 config, random weights, 8x8 latents)."""
    unet = random_sd21_unet(sample_size=8)
    groups = prunable_groups(unet)
    assert sum(g.is_depth for g in groups) == 14
    code = random_hard_code(groups, seed=0)
    x, t, c = inputs(unet, batch=1, text_len=77)
    with torch.no_grad():
        with gated(unet, code, groups):
            masked = unet(x, t, c).sample
        expert = extract_expert(unet, code)
        del unet
        sliced = expert(x, t, c).sample
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=1e-5)


def test_saved_expert_loads_back_exactly(tmp_path):
    unet = tiny_unet()
    groups = prunable_groups(unet)
    code = random_hard_code(groups, seed=5, empty_kinds=("attn_heads",))
    expert = extract_expert(unet, code)
    save_expert_unet(expert, tmp_path / "unet")
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["block_out_channels"] == [16, 32]
    loaded = load_expert_unet(tmp_path / "unet")
    x, t, c = inputs(unet)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, c).sample, expert(x, t, c).sample, atol=0, rtol=0)
    assert arch_code_of(loaded).base == base_fingerprint(unet)
    for name in code:
        assert torch.equal(arch_code_of(loaded).masks[name], code[name])
    # the base UNet plus the code is the same artifact
    save_expert_unet(unet, tmp_path / "unet2", code=code)
    with torch.no_grad():
        torch.testing.assert_close(load_expert_unet(tmp_path / "unet2")(x, t, c).sample, expert(x, t, c).sample, atol=0, rtol=0)


def test_pruned_pipeline_round_trip(tiny_pipe, tmp_path):
    groups = prunable_groups(tiny_pipe.unet)
    tiny_pipe.unet = extract_expert(tiny_pipe.unet, random_hard_code(groups, seed=2))
    save_pipeline(tiny_pipe, tmp_path / "expert")
    assert (tmp_path / "expert" / "unet" / "arch_code.json").exists()
    loaded = load_pipeline(tmp_path / "expert")
    assert is_pruned(loaded.unet)
    kw = dict(num_inference_steps=2, height=16, width=16, output_type="np")
    a = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).images
    b = loaded("a red circle", generator=torch.Generator().manual_seed(0), **kw).images
    assert (a == b).all()


def test_unpruned_pipeline_round_trip(tiny_pipe, tmp_path):
    save_pipeline(tiny_pipe, tmp_path / "base")
    loaded = load_pipeline(tmp_path / "base")
    assert not is_pruned(loaded.unet)
    for (name, p), (_, q) in zip(tiny_pipe.unet.state_dict().items(), loaded.unet.state_dict().items()):
        assert torch.equal(p, q), name


def test_expert_of_an_expert_is_refused():
    unet = tiny_unet()
    expert = extract_expert(unet, full_code(prunable_groups(unet)))
    with pytest.raises(ValueError, match="base UNet"):
        prunable_groups(expert)
