"""Multiply-accumulate (MAC) counts of a UNet and of its architecture codes.

Counting convention (per image, i.e. batch 1, one UNet evaluation):
- `nn.Conv2d`: out_channels * (in_channels / groups) * kh * kw * H_out * W_out.
- `nn.Linear`: in_features * out_features per token (time-embedding layers: one token per image).
- Attention matmuls: QK^T and AV, 2 * heads * N_q * N_k * head_dim, where N_q = latent tokens at
  that resolution and N_k = N_q (self-attention) or the text length (cross-attention); recorded
  under the key `{attention module}#matmul`.
- Not counted: biases, GroupNorm/LayerNorm, activations, softmax, residual additions, resampling
  without convolution: elementwise work, under 1% of the total.
This is what `torch.utils.flop_counter.FlopCounterMode` reports for a forward pass divided by 2
(it counts 2 FLOPs per MAC for convolutions, matmuls and scaled-dot-product attention).

The counts come from one forward pass under `FakeTensorMode` (shapes only, no arithmetic), so
counting SD 2.1 at 64x64 latents takes about a second on a CPU.

`MacTable` turns the per-module counts into a differentiable function of an architecture code.
Every prunable group's MACs are linear in its kept units (a unit's share of its modules' MACs);
a depth gate multiplies the MACs of everything inside its block (width groups and the block's
unprunable layers, e.g. proj_in/proj_out), except the ResNet shortcut, which a skipped ResNet
still computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

from pruneforget.models.structure import Code, Group, enclosing_depth, validate_code


def _conv_macs(module: nn.Conv2d, output: Tensor) -> int:
    kh, kw = module.kernel_size
    per_position = module.out_channels * (module.in_channels // module.groups) * kh * kw
    return per_position * output.shape[-2] * output.shape[-1]


def _linear_macs(module: nn.Linear, output: Tensor) -> int:
    tokens = output.numel() // output.shape[-1]  # batch 1
    return module.in_features * module.out_features * tokens


def _attention_macs(attn: Attention, args, kwargs) -> int:
    """QK^T plus AV: 2 * heads * N_q * N_k * head_dim."""
    x = args[0] if args else kwargs["hidden_states"]
    context = kwargs.get("encoder_hidden_states")
    if context is None and len(args) > 1:
        context = args[1]
    n_q = x.shape[1] if x.dim() == 3 else x.shape[-2] * x.shape[-1]
    n_k = n_q if context is None else context.shape[1]
    head_dim = attn.to_q.out_features // attn.heads
    return 2 * attn.heads * n_q * n_k * head_dim


def count_macs(unet: nn.Module, latent_size: int, text_len: int) -> dict[str, int]:
    """MACs per module of one UNet evaluation on a `latent_size` x `latent_size` latent with a
    `text_len`-token prompt (batch 1), by the convention of this module's docstring. Works on a
    base UNet and on a sliced expert alike."""
    counts: dict[str, int] = {}
    handles = []

    def leaf_hook(name):
        def hook(module, args, output):
            if isinstance(module, nn.Conv2d):
                counts[name] = counts.get(name, 0) + _conv_macs(module, output)
            else:
                counts[name] = counts.get(name, 0) + _linear_macs(module, output)

        return hook

    def attention_hook(name):
        def hook(module, args, kwargs, output):
            key = f"{name}#matmul"
            counts[key] = counts.get(key, 0) + _attention_macs(module, args, kwargs)

        return hook

    for name, module in unet.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(leaf_hook(name)))
        elif isinstance(module, Attention):
            handles.append(module.register_forward_hook(attention_hook(name), with_kwargs=True))
    config = unet.config
    param = next(unet.parameters())
    try:
        # Shapes only: real parameters meet fake inputs, no arithmetic is done.
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            sample = torch.empty(1, config.in_channels, latent_size, latent_size, dtype=param.dtype, device=param.device)
            context = torch.empty(1, text_len, config.cross_attention_dim, dtype=param.dtype, device=param.device)
            unet(sample, torch.tensor([1], device=param.device), context)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _module_macs(counts: dict[str, int], module: str) -> int:
    """MACs of everything at or inside a dotted module path."""
    return sum(v for k, v in counts.items() if k == module or k.startswith(module + ".") or k.startswith(module + "#"))


def _group_macs(counts: dict[str, int], group: Group) -> int:
    """MACs removed when every unit of a width group is removed."""
    m = group.module
    if group.kind == "resnet_width":
        keys = [f"{m}.conv1", f"{m}.time_emb_proj", f"{m}.conv2"]
    elif group.kind == "attn_heads":
        keys = [f"{m}.to_q", f"{m}.to_k", f"{m}.to_v", f"{m}.to_out.0", f"{m}#matmul"]
    elif group.kind == "ff_width":
        keys = [f"{m}.net.0.proj", f"{m}.net.2"]
    else:
        raise ValueError(f"{group.name} is not a width group")
    return sum(counts.get(k, 0) for k in keys)


@dataclass
class MacTable:
    """MACs of a base UNet under any architecture code, differentiable in soft masks.

    `full`: MACs of the full UNet. `prunable_full`: the part any code can remove. For a width group,
    `unit_macs[name]` is one unit's MACs; for a depth gate, `fixed_macs[name]` is what its block
    costs besides its width groups and the ResNet shortcut.
    """

    groups: list[Group]
    full: int
    prunable_full: int
    unit_macs: dict[str, int]
    fixed_macs: dict[str, int]
    parent: dict[str, str | None]

    def prunable_macs(self, masks: Code) -> Tensor:
        """Prunable MACs kept by `masks`: a scalar for shared masks, `(B,)` for per-sample ones.
        Exact for hard masks; linear in each width mask and in each depth gate otherwise."""
        validate_code(masks, self.groups)
        inside: dict[str | None, Tensor] = {}
        for g in self.groups:
            if g.is_depth:
                continue
            m = masks[g.name].to(torch.float64)
            kept = m.sum(-1) * self.unit_macs[g.name]
            key = self.parent[g.name]
            inside[key] = inside[key] + kept if key in inside else kept
        total = inside.pop(None, torch.zeros((), dtype=torch.float64))
        for g in self.groups:
            if not g.is_depth:
                continue
            d = masks[g.name].to(torch.float64)[..., 0]
            block = inside.get(g.name, torch.zeros((), dtype=torch.float64)) + self.fixed_macs[g.name]
            total = total + d * block
        return total

    def macs(self, masks: Code) -> Tensor:
        """Total UNet MACs under `masks` (float64; `(B,)` for per-sample masks)."""
        return (self.full - self.prunable_full) + self.prunable_macs(masks)

    def ratio(self, masks: Code) -> Tensor:
        """MACs under `masks` as a share of the full UNet's: the budget measure (expert-80 = 0.8)."""
        return self.macs(masks) / self.full

    def prunable_ratio(self, masks: Code) -> Tensor:
        """Kept share of the prunable MACs (the `r` of APTP's resource loss in the authors' code)."""
        return self.prunable_macs(masks) / self.prunable_full


def mac_table(unet: UNet2DConditionModel, groups: Sequence[Group], latent_size: int, text_len: int) -> MacTable:
    """Count the base UNet once and tabulate the MACs each group's units and depth gates control."""
    counts = count_macs(unet, latent_size, text_len)
    groups = list(groups)
    parent = enclosing_depth(groups)
    unit_macs: dict[str, int] = {}
    for g in groups:
        if not g.is_depth:
            total = _group_macs(counts, g)
            if total % g.units:
                raise ValueError(f"{g.name}: {total} MACs do not split into {g.units} equal units")
            unit_macs[g.name] = total // g.units
    fixed_macs: dict[str, int] = {}
    for d in groups:
        if d.is_depth:
            block = _module_macs(counts, d.module)
            if d.kind == "depth_resnet":
                block -= counts.get(f"{d.module}.conv_shortcut", 0)  # a skipped ResNet still computes it
            widths = sum(unit_macs[g.name] * g.units for g in groups if parent[g.name] == d.name)
            fixed_macs[d.name] = block - widths
    full = sum(counts.values())
    outside = sum(unit_macs[g.name] * g.units for g in groups if not g.is_depth and parent[g.name] is None)
    prunable_full = outside + sum(
        fixed_macs[d.name] + sum(unit_macs[g.name] * g.units for g in groups if parent[g.name] == d.name)
        for d in groups
        if d.is_depth
    )
    return MacTable(groups, full, prunable_full, unit_macs, fixed_macs, parent)
