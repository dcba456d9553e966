"""Experts: a base UNet physically sliced by a hard architecture code, saved and loaded as a model.

An expert's `unet/` directory holds the BASE UNet's `config.json`, the code (`arch_code.json`,
with the base's fingerprint) and the sliced weights (`diffusion_pytorch_model.safetensors`).
Loading builds the base UNet from its config on the meta device, slices it to the code's shapes,
then loads the weights strictly; extraction from a teacher slices weights that are already
loaded (the authors' pruning code sliced before loading the state dict, which pruned random
weights: PAPER_FACTS section 2).
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import DiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from pruneforget.io import atomic_dir
from pruneforget.models.expert_modules import (
    ConstantOutput,
    IdentityTransformer,
    ShortcutResnet,
    copy_sharing_tensors,
    kept_index,
    replace_module,
    slice_conv,
    slice_group_norm,
    slice_linear,
    unshare,
)
from pruneforget.models.structure import (
    ArchCode,
    Code,
    Group,
    arch_code_of,
    enclosing_depth,
    is_pruned,
    load_code,
    make_arch_code,
    mark_pruned,
    save_code,
)

CODE_FILE = "arch_code.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def _slice_resnet(unet, g: Group, mask) -> None:
    resnet = unet.get_submodule(g.module)
    idx = kept_index(mask, g.unit_size)
    if len(idx) == 0:
        replace_module(unet, g.module, ShortcutResnet(resnet.conv_shortcut, resnet.output_scale_factor, resnet.conv2.bias))
        return
    resnet.conv1 = slice_conv(resnet.conv1, out_idx=idx)
    if resnet.time_emb_proj is not None:
        resnet.time_emb_proj = slice_linear(resnet.time_emb_proj, out_idx=idx)
    resnet.norm2 = slice_group_norm(resnet.norm2, idx)
    resnet.conv2 = slice_conv(resnet.conv2, in_idx=idx)


def _slice_attention(unet, g: Group, mask) -> None:
    attn = unet.get_submodule(g.module)
    if attn.residual_connection:
        raise ValueError(f"{g.module}: attention with a residual connection is not supported")
    idx = kept_index(mask, g.unit_size)
    if len(idx) == 0:
        out = attn.to_out[0]
        replace_module(unet, g.module, ConstantOutput(out.out_features, out.bias, attn.rescale_output_factor))
        return
    attn.to_q = slice_linear(attn.to_q, out_idx=idx)
    attn.to_k = slice_linear(attn.to_k, out_idx=idx)
    attn.to_v = slice_linear(attn.to_v, out_idx=idx)
    attn.to_out[0] = slice_linear(attn.to_out[0], in_idx=idx)
    attn.heads = attn.sliceable_head_dim = len(idx) // g.unit_size
    attn.inner_dim = attn.inner_kv_dim = len(idx)


def _slice_ff(unet, g: Group, mask) -> None:
    ff = unet.get_submodule(g.module)
    idx = kept_index(mask, g.unit_size)
    if len(idx) == 0:
        out = ff.net[2]
        replace_module(unet, g.module, ConstantOutput(out.out_features, out.bias))
        return
    inner = ff.net[2].in_features
    # GEGLU's projection holds the value half then the gate half: keep the same units in both.
    ff.net[0].proj = slice_linear(ff.net[0].proj, out_idx=torch.cat([idx, idx + inner]))
    ff.net[2] = slice_linear(ff.net[2], in_idx=idx)


def _skip(unet, g: Group) -> None:
    if g.kind == "depth_resnet":
        resnet = unet.get_submodule(g.module)
        replace_module(unet, g.module, ShortcutResnet(resnet.conv_shortcut, resnet.output_scale_factor))
    else:
        replace_module(unet, g.module, IdentityTransformer())


SLICERS = {"resnet_width": _slice_resnet, "attn_heads": _slice_attention, "ff_width": _slice_ff}


def apply_code(unet: UNet2DConditionModel, arch: ArchCode) -> UNet2DConditionModel:
    """Slice a base UNet in place to the hard code `arch` and mark it as an expert."""
    groups = arch.check_base(unet)
    parent = enclosing_depth(groups)
    off = {g.name for g in groups if g.is_depth and arch.masks[g.name][0] < 0.5}
    for g in groups:
        if not g.is_depth and parent[g.name] not in off:
            SLICERS[g.kind](unet, g, arch.masks[g.name])
    for g in groups:
        if g.name in off:
            _skip(unet, g)
    mark_pruned(unet, arch)
    return unet


def extract_expert(unet: UNet2DConditionModel, code: Code, width_groups: int = 32) -> UNet2DConditionModel:
    """A physically sliced copy of a (weights-loaded) base UNet under the hard `code`; `unet` is unchanged."""
    arch = make_arch_code(unet, code, width_groups)
    # Copy the module tree but not the weights: slicing copies what it keeps, unshare the rest.
    expert = apply_code(copy_sharing_tensors(unet), arch)
    return unshare(expert, unet)


def save_expert_unet(unet: UNet2DConditionModel, out_dir: str | Path, code: Code | None = None, width_groups: int = 32) -> Path:
    """Write an expert's `unet/` directory: base config.json, arch_code.json, sliced safetensors.

    `unet` is an expert (leave `code` None) or the base UNet with the `code` to slice it by."""
    if code is not None:
        unet = extract_expert(unet, code, width_groups)
    arch = arch_code_of(unet)
    if arch is None:
        raise ValueError("save_expert_unet needs an expert (extract_expert) or a base UNet with a code")
    out_dir = Path(out_dir)
    unet.save_pretrained(out_dir, safe_serialization=True)  # config.json is the base's
    save_code(out_dir / CODE_FILE, arch)
    return out_dir


def is_expert_dir(pipeline_dir: str | Path) -> bool:
    """Whether a pipeline directory holds a pruned expert (its UNet has an arch code).

    Such a UNet may leave parameters without a gradient: an attention, feed-forward or ResNet
    whose every unit was pruned ignores its input, so the norm in front of it is never used.
    DDP must then look for unused parameters (`find_unused_parameters`) or it stops the run at
    the first step; the sd21 smoke's 2-process fine-tuning of the 55% expert found this."""
    return (Path(pipeline_dir) / "unet" / CODE_FILE).is_file()


def load_expert_unet(unet_dir: str | Path, dtype: torch.dtype | None = None) -> UNet2DConditionModel:
    """Rebuild an expert saved by `save_expert_unet`: base UNet from config (no weights), sliced to
    the code's shapes, then the sliced weights loaded strictly."""
    unet_dir = Path(unet_dir)
    for name in ("config.json", CODE_FILE, WEIGHTS_FILE):
        if not (unet_dir / name).exists():
            raise FileNotFoundError(f"{unet_dir} has no {name}: not an expert UNet directory written by save_expert_unet")
    config = UNet2DConditionModel.load_config(unet_dir)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    apply_code(unet, load_code(unet_dir / CODE_FILE))
    state = load_file(unet_dir / WEIGHTS_FILE)
    unet.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in list(unet.named_parameters()) + list(unet.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{unet_dir}: weights missing for {left[:3]}")
    if dtype is not None:
        unet = unet.to(dtype)
    return unet.eval()


def write_pipeline(pipe: DiffusionPipeline, directory: str | Path) -> Path:
    """Write any pipeline, pruned or not, into `directory` (not atomic: for use inside `atomic_dir`)."""
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    if is_pruned(pipe.unet):
        save_code(directory / "unet" / CODE_FILE, arch_code_of(pipe.unet))
    return directory


def save_pipeline(pipe: DiffusionPipeline, out_dir: str | Path) -> Path:
    """Save any pipeline, pruned or not, atomically, so `models.load.load_pipeline(out_dir)` loads it."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_pipeline(pipe, tmp)
    return out_dir
