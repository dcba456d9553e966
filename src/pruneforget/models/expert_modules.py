"""Small modules that stand in for pruned-away parts of a sliced expert UNet.

Each computes exactly what the gated (masked) base model computes for that part: a skipped
ResNet keeps its shortcut, a skipped Transformer2DModel is the identity, and a ResNet, attention
or feed-forward whose every unit is removed leaves only its output layer's bias. They are rebuilt
from the architecture code when an expert is loaded (`expert.load_expert_unet`), so their
parameter names are part of the saved format.
"""

from __future__ import annotations

import copy

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import Tensor, nn


def _copy_param(p: nn.Parameter | None) -> nn.Parameter | None:
    return None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)


class ShortcutResnet(nn.Module):
    """A ResnetBlock2D without its residual branch: (shortcut(x) + bias) / output_scale_factor.

    `bias` is None for a skipped ResNet (depth gate off) and `conv2`'s bias for a ResNet whose
    every width group is removed (conv2 then sees only zeros)."""

    def __init__(self, conv_shortcut: nn.Conv2d | None, output_scale_factor: float, bias: nn.Parameter | None = None):
        super().__init__()
        self.conv_shortcut = conv_shortcut
        self.output_scale_factor = output_scale_factor
        self.bias = _copy_param(bias)

    def forward(self, input_tensor: Tensor, temb: Tensor | None = None, *args, **kwargs) -> Tensor:
        x = self.conv_shortcut(input_tensor) if self.conv_shortcut is not None else input_tensor
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return x / self.output_scale_factor


class IdentityTransformer(nn.Module):
    """A skipped Transformer2DModel: returns its input, in the caller's return format."""

    def forward(self, hidden_states: Tensor, *args, return_dict: bool = True, **kwargs):
        if return_dict:
            return Transformer2DModelOutput(sample=hidden_states)
        return (hidden_states,)


class ConstantOutput(nn.Module):
    """An attention or feed-forward with every unit removed: its output layer's bias at every token
    (divided by the attention's `rescale_output_factor`; 1 for a feed-forward)."""

    def __init__(self, dim: int, bias: nn.Parameter | None, rescale_output_factor: float = 1.0):
        super().__init__()
        self.dim = dim
        self.rescale_output_factor = rescale_output_factor
        self.bias = _copy_param(bias)

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        shape = (*hidden_states.shape[:-1], self.dim)
        if self.bias is None:
            return hidden_states.new_zeros(shape)
        return (self.bias / self.rescale_output_factor).to(hidden_states.dtype).expand(shape)


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` at dotted `path` inside `root` (works inside ModuleLists)."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)


def kept_index(mask: Tensor, unit_size: int) -> Tensor:
    """Channel indices of the kept units of a hard `(units,)` mask."""
    units = torch.nonzero(mask.detach().cpu() > 0.5).flatten()
    offsets = torch.arange(unit_size)
    return (units[:, None] * unit_size + offsets[None, :]).flatten()


def _take(t: Tensor, dim: int, idx: Tensor | None) -> Tensor:
    """Entries `idx` of `t` along `dim`, always in new memory (an expert never shares the teacher's)."""
    return t.detach().clone() if idx is None else t.detach().index_select(dim, idx.to(t.device))


def _param(t: Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=like.requires_grad)


def slice_linear(lin: nn.Linear, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Linear:
    """A Linear holding rows `out_idx` and columns `in_idx` of `lin` (no random init is done)."""
    weight = _take(_take(lin.weight, 0, out_idx), 1, in_idx) if in_idx is not None else _take(lin.weight, 0, out_idx)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=lin.bias is not None, device="meta")
    new.weight = _param(weight, lin.weight)
    if lin.bias is not None:
        new.bias = _param(_take(lin.bias, 0, out_idx), lin.bias)
    return new


def slice_conv(conv: nn.Conv2d, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Conv2d:
    """A Conv2d holding output channels `out_idx` and input channels `in_idx` of `conv`."""
    if conv.groups != 1:
        raise ValueError("only ungrouped convolutions are sliced")
    weight = _take(conv.weight, 0, out_idx)
    if in_idx is not None:
        weight = weight.index_select(1, in_idx.to(weight.device))
    new = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device="meta",
    )
    new.weight = _param(weight, conv.weight)
    if conv.bias is not None:
        new.bias = _param(_take(conv.bias, 0, out_idx), conv.bias)
    return new


def slice_group_norm(norm: nn.GroupNorm, idx: Tensor) -> nn.GroupNorm:
    """The GroupNorm over channels `idx` (whole groups): fewer groups of the same size."""
    group_size = norm.num_channels // norm.num_groups
    if len(idx) % group_size:
        raise ValueError(f"{len(idx)} channels are not whole GroupNorm groups of {group_size}")
    new = nn.GroupNorm(len(idx) // group_size, len(idx), eps=norm.eps, affine=norm.affine, device="meta")
    if norm.affine:
        new.weight = _param(_take(norm.weight, 0, idx), norm.weight)
        new.bias = _param(_take(norm.bias, 0, idx), norm.bias)
    return new


def copy_sharing_tensors(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters and buffers are still the original tensors: slicing
    then makes new ones for what it keeps, and `unshare` copies the rest (one copy of each kept weight)."""
    memo = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
    return copy.deepcopy(module, memo)


def unshare(copy_: nn.Module, original: nn.Module) -> nn.Module:
    """Give `copy_` its own copy of every parameter and buffer it still shares with `original`."""
    shared = {id(t) for t in list(original.parameters()) + list(original.buffers())}
    for m in copy_.modules():
        for name, p in list(m._parameters.items()):
            if p is not None and id(p) in shared:
                m._parameters[name] = _param(p.detach().clone(), p)
        for name, b in list(m._buffers.items()):
            if b is not None and id(b) in shared:
                m._buffers[name] = b.clone()
    return copy_
