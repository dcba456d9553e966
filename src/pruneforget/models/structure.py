"""What APTP can prune in a diffusers `UNet2DConditionModel`, and the architecture code that says what it keeps.

Prunable groups (PAPER_FACTS section 2):

- `resnet_width`: output channels of every ResNet's `conv1` in groups; slicing one group removes
  its `conv1` output channels, `time_emb_proj` rows, `norm2` channels and `conv2` input channels.
  A unit is a whole number of `norm2` GroupNorm groups, so the sliced `norm2` is a GroupNorm with
  fewer groups of the same size and normalises the kept channels exactly as before.
- `attn_heads`: heads of `attn1` (self) and `attn2` (cross) of every transformer block
  (rows of `to_q`/`to_k`/`to_v`, columns of `to_out[0]`).
- `ff_width`: the GEGLU feed-forward inner dimension in groups (rows of both halves of
  `ff.net.0.proj`, columns of `ff.net.2`).
- `depth_resnet` / `depth_attn`: the last ResNet and the last Transformer2DModel of every down
  and up block may be skipped (SD 2.1: 14 gates). A skipped ResNet keeps only its shortcut
  (identity or `conv_shortcut`); a skipped Transformer2DModel is the identity.

Block inputs and outputs, `conv_in`/`conv_out`, samplers, shortcuts and `proj_in`/`proj_out` stay
whole, so every block output keeps its shape (feature distillation needs no adapters).

An architecture code (`Code`) maps each group's name to a mask of shape `(units,)` (shared) or
`(batch, units)` (per sample); 1 keeps a unit, 0 removes it; soft values in [0, 1] scale it.
`ArchCode` is a code as saved beside an expert: the hard masks plus the identity of the base
UNet (`base_fingerprint`) and the `width_groups` the groups were built with.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.activations import GEGLU
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

KINDS = ("resnet_width", "attn_heads", "ff_width", "depth_resnet", "depth_attn")
WIDTH_KINDS = ("resnet_width", "attn_heads", "ff_width")
DEPTH_KINDS = ("depth_resnet", "depth_attn")
# name = f"{module}:{tag}"
TAGS = {"resnet_width": "width", "attn_heads": "heads", "ff_width": "width", "depth_resnet": "depth", "depth_attn": "depth"}
CODE_FORMAT = 1

Code = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Group:
    """One set of gates: `units` gates over module `module` (dotted path in the UNet), each
    gating `unit_size` channels (a head's `head_dim` for heads; 1 for a depth gate)."""

    name: str
    kind: str
    module: str
    units: int
    unit_size: int

    @property
    def is_depth(self) -> bool:
        return self.kind in DEPTH_KINDS


def _group(kind: str, module: str, units: int, unit_size: int) -> Group:
    return Group(name=f"{module}:{TAGS[kind]}", kind=kind, module=module, units=units, unit_size=unit_size)


def _resnet_units(resnet: ResnetBlock2D, width_groups: int) -> tuple[int, int]:
    """(units, unit_size) of a ResNet's conv1 channels: whole norm2 groups, at most `width_groups`."""
    channels = resnet.conv1.out_channels
    units = math.gcd(width_groups, resnet.norm2.num_groups)
    return units, channels // units


def _ff_units(inner: int, width_groups: int) -> tuple[int, int]:
    units = math.gcd(width_groups, inner)
    return units, inner // units


def _check_resnet(path: str, resnet: ResnetBlock2D) -> None:
    # Masking at conv2's input equals slicing only for SD's plain ResNet (no scale-shift norm, no
    # resampling inside the block, conv2 reading exactly conv1's channels).
    if resnet.time_embedding_norm != "default" or resnet.upsample is not None or resnet.downsample is not None:
        raise ValueError(f"{path}: only plain ResnetBlock2D (default time embedding norm, no up/down) can be pruned")


def prunable_groups(unet: UNet2DConditionModel, width_groups: int = 32) -> list[Group]:
    """Every prunable group of a base (unpruned) UNet, in module order, depth gates last.

    `width_groups` is the number of groups per ResNet and per feed-forward (paper: 32). A ResNet's
    groups are whole `norm2` GroupNorm groups (gcd(width_groups, norm2.num_groups) of them) so that
    slicing keeps GroupNorm valid; a feed-forward gets gcd(width_groups, inner_dim) groups.
    """
    if width_groups < 1:
        raise ValueError(f"width_groups must be a positive integer, got {width_groups}")
    if arch_code_of(unet) is not None:
        raise ValueError("prunable_groups needs the base UNet, not a pruned expert (its groups are the base's)")
    groups: list[Group] = []
    for path, module in unet.named_modules():
        if isinstance(module, ResnetBlock2D):
            _check_resnet(path, module)
            groups.append(_group("resnet_width", path, *_resnet_units(module, width_groups)))
        elif isinstance(module, BasicTransformerBlock):
            for name in ("attn1", "attn2"):
                attn = getattr(module, name, None)
                if attn is not None:
                    head_dim = attn.to_q.out_features // attn.heads
                    groups.append(_group("attn_heads", f"{path}.{name}", attn.heads, head_dim))
            ff = getattr(module, "ff", None)
            if ff is not None and isinstance(ff.net[0], GEGLU):
                inner = ff.net[2].in_features
                groups.append(_group("ff_width", f"{path}.ff", *_ff_units(inner, width_groups)))
    for kind in ("down_blocks", "up_blocks"):
        for i, block in enumerate(getattr(unet, kind)):
            if len(getattr(block, "resnets", [])) > 0:
                groups.append(_group("depth_resnet", f"{kind}.{i}.resnets.{len(block.resnets) - 1}", 1, 1))
            attentions = getattr(block, "attentions", None)
            if attentions is not None and len(attentions) > 0:
                groups.append(_group("depth_attn", f"{kind}.{i}.attentions.{len(attentions) - 1}", 1, 1))
    return groups


def enclosing_depth(groups: Sequence[Group]) -> dict[str, str | None]:
    """Group name -> name of the depth gate that skips it (None when no depth gate encloses it).

    A depth gate encloses the width groups inside its module: `down_blocks.1.resnets.1:width` lies in
    `down_blocks.1.resnets.1:depth`, a transformer block's heads in its Transformer2DModel's gate.
    """
    depth = [g for g in groups if g.is_depth]
    out: dict[str, str | None] = {}
    for g in groups:
        if g.is_depth:
            out[g.name] = None
            continue
        parent = [d.name for d in depth if g.module == d.module or g.module.startswith(d.module + ".")]
        out[g.name] = parent[0] if parent else None
    return out


def base_fingerprint(unet_or_config) -> str:
    """sha256 of the base UNet config (sorted JSON, private `_` keys left out): the identity a code
    is made for. Accepts a UNet or its config dict."""
    config = getattr(unet_or_config, "config", unet_or_config)
    public = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    text = json.dumps(public, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def full_code(groups: Sequence[Group]) -> Code:
    """The code keeping everything (every mask all ones)."""
    return {g.name: torch.ones(g.units) for g in groups}


def validate_code(code: Code, groups: Sequence[Group], hard: bool = False) -> None:
    """Raise ValueError naming the problem if `code` does not fit `groups`: missing or unknown group
    names, wrong lengths, values outside [0, 1], (with `hard`) values other than 0 and 1 or a batch."""
    names = {g.name for g in groups}
    missing = [g.name for g in groups if g.name not in code]
    unknown = sorted(set(code) - names)
    if missing or unknown:
        raise ValueError(
            f"architecture code does not match this UNet's groups: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unknown)} unknown (e.g. {unknown[:3]}); was it made for another "
            "base model or another width_groups?"
        )
    batch = None
    for g in groups:
        mask = code[g.name]
        if not torch.is_tensor(mask) or mask.dim() not in (1, 2) or mask.shape[-1] != g.units:
            shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
            raise ValueError(f"mask of {g.name} has shape {shape}; expected ({g.units},) or (batch, {g.units})")
        if mask.dim() == 2:
            if hard:
                raise ValueError(f"mask of {g.name} is per-sample {tuple(mask.shape)}; a hard expert code is one mask per group")
            if batch is not None and mask.shape[0] != batch:
                raise ValueError(f"per-sample masks disagree on the batch size ({batch} vs {mask.shape[0]} at {g.name})")
            batch = mask.shape[0]
        with torch.no_grad():
            if ((mask < 0) | (mask > 1)).any():
                raise ValueError(f"mask of {g.name} has values outside [0, 1]")
            if hard and not ((mask == 0) | (mask == 1)).all():
                raise ValueError(f"mask of {g.name} is not hard (values other than 0 and 1)")


@dataclass(frozen=True)
class ArchCode:
    """A hard architecture code as stored with an expert: masks, base identity, width_groups."""

    masks: Code
    base: str
    width_groups: int

    def to_json(self) -> dict:
        return {
            "format": CODE_FORMAT,
            "base_fingerprint": self.base,
            "width_groups": self.width_groups,
            "masks": {name: [int(v) for v in mask.tolist()] for name, mask in sorted(self.masks.items())},
        }

    @classmethod
    def from_json(cls, obj: dict) -> "ArchCode":
        if obj.get("format") != CODE_FORMAT or "masks" not in obj or "base_fingerprint" not in obj:
            raise ValueError(f"not an architecture code (format {CODE_FORMAT}): keys {sorted(obj)}")
        masks = {name: torch.tensor(values, dtype=torch.float32) for name, values in obj["masks"].items()}
        return cls(masks=masks, base=obj["base_fingerprint"], width_groups=int(obj["width_groups"]))

    def check_base(self, unet: UNet2DConditionModel) -> list[Group]:
        """Check this code was made for `unet` (a base UNet) and fits its groups; return the groups."""
        found = base_fingerprint(unet)
        if found != self.base:
            raise ValueError(
                f"architecture code was made for another base UNet (config sha256 {self.base[:12]}..., "
                f"this one is {found[:12]}...): prune this base model again instead"
            )
        groups = prunable_groups(unet, self.width_groups)
        validate_code(self.masks, groups, hard=True)
        return groups


def make_arch_code(unet: UNet2DConditionModel, code: Code, width_groups: int = 32) -> ArchCode:
    """Validate a hard `code` against a base UNet and record the base's identity with it."""
    validate_code(code, prunable_groups(unet, width_groups), hard=True)
    masks = {name: mask.detach().float().cpu() for name, mask in code.items()}
    return ArchCode(masks=masks, base=base_fingerprint(unet), width_groups=width_groups)


def save_code(path: str | Path, arch: ArchCode) -> None:
    Path(path).write_text(json.dumps(arch.to_json(), indent=1, sort_keys=True) + "\n")


def load_code(path: str | Path) -> ArchCode:
    return ArchCode.from_json(json.loads(Path(path).read_text()))


# The record of an expert's code lives on the expert module itself (deep copies keep it).
_CODE_ATTR = "pruneforget_arch_code"


def arch_code_of(unet: nn.Module) -> ArchCode | None:
    """The architecture code an expert was sliced with, or None for an unpruned UNet."""
    return unet.__dict__.get(_CODE_ATTR)


def is_pruned(unet: nn.Module) -> bool:
    """True for a UNet made by `extract_expert` / `load_expert_unet`."""
    return arch_code_of(unet) is not None


def mark_pruned(unet: nn.Module, arch: ArchCode) -> None:
    unet.__dict__[_CODE_ATTR] = arch
