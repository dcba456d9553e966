"""Architecture codes: the groups APTP prunes, JSON round trip, and clear refusals of codes that
do not fit (wrong length, missing or unknown groups, another base model)."""

from __future__ import annotations

import json

import pytest
import torch
from test_prune_expert import TINY_UNET, random_hard_code, tiny_unet

from pruneforget.models.expert import extract_expert, load_expert_unet, save_expert_unet
from pruneforget.models.structure import (
    ArchCode,
    base_fingerprint,
    full_code,
    load_code,
    make_arch_code,
    prunable_groups,
    save_code,
)
from pruneforget.models.tiny import build_unet
from pruneforget.prune.gates import gated


def test_groups_follow_groupnorm_and_paper_granularity():
    unet = tiny_unet()
    groups = {g.name: g for g in prunable_groups(unet, width_groups=32)}
    # a ResNet unit is a whole norm2 group (4 groups of 4 channels at 16 channels)
    r = groups["down_blocks.0.resnets.0:width"]
    assert (r.units, r.unit_size) == (4, 4)
    # feed-forward inner dim 4 * 32 = 128 in 32 groups; heads: 2 heads of 16
    assert (groups["down_blocks.1.attentions.0.transformer_blocks.0.ff:width"].units, groups["down_blocks.1.attentions.0.transformer_blocks.0.ff:width"].unit_size) == (32, 4)
    assert groups["up_blocks.0.attentions.2.transformer_blocks.0.attn2:heads"].units == 2
    # depth: last resnet of every down/up block and last transformer of those that have them
    depth = sorted(n for n, g in groups.items() if g.is_depth)
    assert depth == sorted([
        "down_blocks.0.resnets.1:depth", "down_blocks.1.resnets.1:depth", "down_blocks.1.attentions.1:depth",
        "up_blocks.0.resnets.2:depth", "up_blocks.0.attentions.2:depth", "up_blocks.1.resnets.2:depth",
    ])
    # the mid block is width-pruned but never skipped
    assert "mid_block.resnets.0:width" in groups and not any(n.startswith("mid_block") and g.is_depth for n, g in groups.items())


def test_code_json_round_trip(tmp_path):
    unet = tiny_unet()
    code = random_hard_code(prunable_groups(unet), seed=0)
    save_code(tmp_path / "code.json", make_arch_code(unet, code))
    arch = load_code(tmp_path / "code.json")
    assert arch.base == base_fingerprint(unet) and arch.width_groups == 32
    assert all(torch.equal(arch.masks[k], code[k]) for k in code)
    arch.check_base(unet)


def test_code_of_wrong_length_is_rejected():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    code = full_code(groups)
    name = groups[0].name
    code[name] = torch.ones(groups[0].units + 1)
    with pytest.raises(ValueError, match=f"mask of {name} has shape"):
        extract_expert(unet, code)
    with pytest.raises(ValueError, match="has shape"):
        with gated(unet, code, groups):
            pass


def test_code_with_missing_or_unknown_groups_is_rejected():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    code = full_code(groups)
    del code[groups[1].name]
    code["down_blocks.9.resnets.0:width"] = torch.ones(4)
    with pytest.raises(ValueError, match="1 missing .* 1 unknown"):
        extract_expert(unet, code)


def test_soft_or_out_of_range_code_cannot_be_sliced():
    unet = tiny_unet()
    code = full_code(prunable_groups(unet))
    name = next(iter(code))
    code[name] = torch.full_like(code[name], 0.5)
    with pytest.raises(ValueError, match="not hard"):
        extract_expert(unet, code)
    code[name] = torch.full_like(code[name], 1.5)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        extract_expert(unet, code)


def test_code_for_another_base_model_is_rejected(tmp_path):
    unet = tiny_unet()
    arch = make_arch_code(unet, full_code(prunable_groups(unet)))
    # same group structure, different base (another cross-attention width): the fingerprint differs
    other = build_unet(TINY_UNET, latent_size=8, latent_channels=4, cross_attention_dim=32)
    with pytest.raises(ValueError, match="another base UNet"):
        arch.check_base(other)
    # an expert directory whose code does not belong to its config.json is refused on load
    save_expert_unet(unet, tmp_path / "unet", code=arch.masks)
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    config["cross_attention_dim"] = 32
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="another base UNet"):
        load_expert_unet(tmp_path / "unet")


def test_non_code_json_is_rejected():
    with pytest.raises(ValueError, match="not an architecture code"):
        ArchCode.from_json({"masks": {}})
