"""MAC counting: the per-module counter agrees with torch's FlopCounterMode, and the MacTable
predicts the counter's total for any expert from its code alone."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import AttnProcessor
from test_prune_expert import inputs, random_hard_code, tiny_unet
from torch.utils.flop_counter import FlopCounterMode

from pruneforget.models.expert import extract_expert
from pruneforget.models.structure import full_code, prunable_groups
from pruneforget.prune.gates import gated
from pruneforget.prune.macs import count_macs, mac_table

TEXT_LEN = 7


def flop_counter_macs(unet) -> int:
    """FlopCounterMode's FLOPs / 2 for one batch-1 forward. The explicit-matmul attention processor
    is used because FlopCounterMode does not count the CPU kernel of scaled_dot_product_attention."""
    unet.set_attn_processor(AttnProcessor())
    x, t, c = inputs(unet, batch=1, text_len=TEXT_LEN)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(x, t, c)
    return counter.get_total_flops() // 2


def test_counter_agrees_with_flop_counter_full_and_pruned():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    table = mac_table(unet, groups, latent_size=8, text_len=TEXT_LEN)
    assert table.full == sum(count_macs(unet, 8, TEXT_LEN).values()) == flop_counter_macs(unet)
    for seed in range(3):
        code = random_hard_code(groups, seed, empty_kinds=("resnet_width", "attn_heads", "ff_width"))
        expert = extract_expert(unet, code)
        counted = flop_counter_macs(expert)
        assert sum(count_macs(expert, 8, TEXT_LEN).values()) == counted
        assert table.macs(code).item() == counted
        assert 0 < table.ratio(code).item() < 1


def test_conv_and_attention_counts_by_hand():
    unet = tiny_unet()
    counts = count_macs(unet, latent_size=8, text_len=TEXT_LEN)
    # conv_in: 4 -> 16 channels, 3x3, on 8x8
    assert counts["conv_in"] == 16 * 4 * 9 * 64
    # cross-attention at 4x4 (16 tokens) with 2 heads of 16: 2 * heads * N_q * N_k * head_dim
    assert counts["down_blocks.1.attentions.0.transformer_blocks.0.attn2#matmul"] == 2 * 2 * 16 * TEXT_LEN * 16
    assert counts["down_blocks.1.attentions.0.transformer_blocks.0.attn1#matmul"] == 2 * 2 * 16 * 16 * 16
    # time embedding: one token per image
    assert counts["time_embedding.linear_1"] == unet.time_embedding.linear_1.in_features * 64


def test_mac_table_is_differentiable_and_linear():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    table = mac_table(unet, groups, latent_size=8, text_len=TEXT_LEN)
    full = full_code(groups)
    assert table.macs(full).item() == table.full
    zero = {k: torch.zeros_like(v) for k, v in full.items()}
    assert table.macs(zero).item() == table.full - table.prunable_full
    assert table.prunable_ratio(zero).item() == 0
    soft = {k: torch.full_like(v, 0.5, requires_grad=True) for k, v in full.items()}
    table.macs(soft).backward()
    width = next(g for g in groups if g.kind == "ff_width" and table.parent[g.name] is None)
    # d MACs / d mask of a unit outside any depth gate = that unit's MACs
    assert torch.allclose(soft[width.name].grad, torch.full((width.units,), float(table.unit_macs[width.name]), dtype=torch.float32))
    depth = next(g for g in groups if g.kind == "depth_attn")
    assert soft[depth.name].grad.item() > 0
    # per-sample masks give one value per sample
    batch = {k: torch.stack([torch.ones_like(v), torch.zeros_like(v)]) for k, v in full.items()}
    per = table.macs(batch)
    assert per.shape == (2,) and per[0].item() == table.full and per[1].item() == table.full - table.prunable_full


def test_per_sample_masks_gate_each_sample():
    """A batch under per-sample hard masks equals each sample run under its own shared mask."""
    unet = tiny_unet()
    groups = prunable_groups(unet)
    codes = [random_hard_code(groups, s) for s in (0, 1)]
    batch = {k: torch.stack([codes[0][k], codes[1][k]]) for k in codes[0]}
    x, t, c = inputs(unet, batch=2)
    with torch.no_grad():
        with gated(unet, batch, groups):
            both = unet(x, t, c).sample
        for i in range(2):
            with gated(unet, codes[i], groups):
                one = unet(x[i : i + 1], t[i : i + 1], c[i : i + 1]).sample
            torch.testing.assert_close(both[i : i + 1], one, atol=1e-5, rtol=1e-5)
        # classifier-free guidance doubles the batch: the masks are tiled to follow it
        with gated(unet, batch, groups):
            doubled = unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, c])).sample
        torch.testing.assert_close(doubled[2:], both, atol=1e-5, rtol=1e-5)
    # hooks are gone: the plain model runs as before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())
