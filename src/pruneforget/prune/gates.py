"""Apply an architecture code to a full UNet with forward hooks: the masked (gated) model.

With hard masks the gated model computes exactly what the physically sliced expert computes
(`expert.extract_expert`), up to float summation order; with soft masks it is differentiable in
the masks (APTP trains router and codes through it). Where each mask acts, and why there:

- ResNet width: on the input of `conv2` (after norm2 and the nonlinearity). A unit is a whole
  number of norm2 GroupNorm groups, and GroupNorm normalises each group on its own, so the kept
  channels see the same statistics as in the sliced ResNet; zeroing the removed channels at
  conv2's input then removes exactly their contribution. (Masking before norm2 would be wrong:
  the normalisation would undo the scale.)
- Attention heads: on the input of `to_out[0]` (the concatenated per-head outputs).
- Feed-forward: on the input of `ff.net[2]` (the GEGLU output).
- Depth: the block's output becomes `g * block(x) + (1 - g) * shortcut(x)`, where the shortcut of
  a ResNet is `conv_shortcut(x)` (or x) divided by its output scale factor and that of a
  Transformer2DModel is x.

Per-sample masks `(B, units)` follow the batch; when the UNet's batch is a multiple k of B
(classifier-free guidance concatenates [uncond; cond]), the masks are tiled k times to match.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import Tensor

from pruneforget.models.structure import Code, Group, prunable_groups, validate_code


def unit_mask(mask: Tensor, unit_size: int, batch: int, like: Tensor) -> Tensor:
    """Expand a `(units,)` or `(B, units)` mask to channels: `(channels,)` or `(batch, channels)`."""
    mask = mask.to(device=like.device, dtype=like.dtype)
    if mask.dim() == 2 and mask.shape[0] != batch:
        if batch % mask.shape[0]:
            raise ValueError(f"per-sample masks for a batch of {mask.shape[0]} cannot gate a batch of {batch}")
        mask = mask.repeat(batch // mask.shape[0], 1)
    return mask.repeat_interleave(unit_size, dim=-1)


def _channel_hook(group: Group, mask: Tensor, channel_dim: int):
    """Forward pre-hook multiplying the module's input channels (dim `channel_dim`) by the mask."""

    def hook(module, args):
        x = args[0]
        m = unit_mask(mask, group.unit_size, x.shape[0], x)
        if m.dim() == 2:
            # (B, C) -> broadcast over the other dims of x
            shape = [x.shape[0]] + [1] * (x.dim() - 1)
            shape[channel_dim] = m.shape[1]
            m = m.view(shape)
        elif channel_dim == 1 and x.dim() == 4:
            m = m.view(-1, 1, 1)
        return (x * m,) + tuple(args[1:])

    return hook


def _depth_gate(mask: Tensor, x: Tensor) -> Tensor:
    g = unit_mask(mask, 1, x.shape[0], x)  # (1,) or (B, 1)
    return g.reshape(-1, *([1] * (x.dim() - 1))) if g.dim() == 2 else g.reshape([1] * x.dim())


def _resnet_depth_hook(mask: Tensor):
    def hook(resnet, args, kwargs, output):
        x = args[0] if args else kwargs["input_tensor"]
        shortcut = resnet.conv_shortcut(x) if resnet.conv_shortcut is not None else x
        shortcut = shortcut / resnet.output_scale_factor
        g = _depth_gate(mask, output)
        return g * output + (1 - g) * shortcut

    return hook


def _transformer_depth_hook(mask: Tensor):
    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["hidden_states"]
        out = output.sample if isinstance(output, Transformer2DModelOutput) else output[0]
        g = _depth_gate(mask, out)
        gated = g * out + (1 - g) * x
        if isinstance(output, Transformer2DModelOutput):
            return Transformer2DModelOutput(sample=gated)
        return (gated,) + tuple(output[1:])

    return hook


@contextmanager
def gated(
    unet: UNet2DConditionModel,
    masks: Code,
    groups: Sequence[Group] | None = None,
    width_groups: int = 32,
) -> Iterator[UNet2DConditionModel]:
    """Run `unet` under an architecture code (hard or soft, shared or per-sample); the hooks are
    removed on exit, leaving `unet` unchanged. `groups` defaults to `prunable_groups(unet, width_groups)`.
    Groups absent from `masks` raise; pass `full_code(groups)` entries to keep them whole."""
    groups = prunable_groups(unet, width_groups) if groups is None else list(groups)
    validate_code(masks, groups)
    handles = []
    try:
        for g in groups:
            module = unet.get_submodule(g.module)
            mask = masks[g.name]
            if g.kind == "resnet_width":
                handles.append(module.conv2.register_forward_pre_hook(_channel_hook(g, mask, channel_dim=1)))
            elif g.kind == "attn_heads":
                handles.append(module.to_out[0].register_forward_pre_hook(_channel_hook(g, mask, channel_dim=-1)))
            elif g.kind == "ff_width":
                handles.append(module.net[2].register_forward_pre_hook(_channel_hook(g, mask, channel_dim=-1)))
            elif g.kind == "depth_resnet":
                handles.append(module.register_forward_hook(_resnet_depth_hook(mask), with_kwargs=True))
            elif g.kind == "depth_attn":
                handles.append(module.register_forward_hook(_transformer_depth_hook(mask), with_kwargs=True))
            else:
                raise ValueError(f"unknown group kind {g.kind!r}")
        yield unet
    finally:
        for handle in handles:
            handle.remove()
