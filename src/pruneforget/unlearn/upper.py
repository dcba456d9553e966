"""Unlearning objectives: the upper level of the bilevel method (Algorithm 1) and two-stage ESD.

A registry of objectives with one signature, so the bilevel method can swap its upper level:

    UPPER[name](unet, ctx, cfg) -> Upper(params, loss, grad_masks)

- `esdx`, `esdu`, `esdall`: the ESD loss (`unlearn.esd_step.esd_step_loss`) on the cross-attention
  parameters, on everything but cross-attention, or on every parameter, with any target mode.
- `esd-saliency`: the ESD loss on every parameter, but each update touches only the top
  `saliency_fraction` of weights by gradient saliency |d ESD / d w| on the concepts, measured once
  at the start over `saliency_batches` batches (SalUn's weight saliency, Fan et al., ICLR 2024).

`Upper.loss(unet, batch)` takes the trained (possibly DDP-wrapped) UNet and a batch on its
device from `ctx.batches` and returns the scalar loss; x_t is produced inside it when the batch
asks for partial sampling (`unlearn.xt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from accelerate.utils import extract_model_from_parallel
from torch import Tensor, nn

from pruneforget.unlearn.esd_step import TARGETS, esd_step_loss, subset_parameters
from pruneforget.unlearn.xt import PartialSampler, esd_batch

# Sample positions of the saliency batches: far from any training position (0, 1, 2, ...).
SALIENCY_POSITIONS = 1 << 41


@dataclass
class UpperContext:
    """What every upper objective is built from: the frozen model giving the target (the teacher,
    or a frozen copy of the model being unlearned), the target mode and eta, the partial sampler
    (None when x_t comes from forward-noised images) and the position-addressed batches."""

    frozen: nn.Module
    target: str
    eta: float
    batches: Callable[[Sequence[int]], Mapping[str, Tensor]]
    sampler: PartialSampler | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown ESD target mode {self.target!r}; choose one of {TARGETS}")


@dataclass
class Upper:
    """An upper-level objective: the parameters it updates, its loss, and optional gradient masks
    (parameter, 0/1 tensor on the parameter's device) applied before each of its optimizer steps."""

    params: dict[str, nn.Parameter]
    loss: Callable[[nn.Module, Mapping[str, Tensor]], Tensor]
    grad_masks: list[tuple[nn.Parameter, Tensor]] = field(default_factory=list)


def esd_objective(subset: str) -> Callable[[nn.Module, UpperContext, dict], Upper]:
    """The ESD loss on the parameters of ESD's `subset` (xattn, noxattn or full)."""

    def build(unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
        # ESD-u's parameter set has two forms (unlearn.esd.noxattn_form); the other subsets have one.
        params = subset_parameters(unet, subset, cfg["noxattn_form"] if subset == "noxattn" else "compvis")

        def loss(trained: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
            b = esd_batch(dict(batch), extract_model_from_parallel(trained), ctx.sampler)
            return esd_step_loss(trained, ctx.frozen, b, target=ctx.target, eta=ctx.eta)

        return Upper(params, loss)

    return build


def saliency_masks(unet: nn.Module, upper: Upper, batches: Callable[[Sequence[int]], Mapping[str, Tensor]],
                   fraction: float, n_batches: int, batch_size: int) -> list[tuple[nn.Parameter, Tensor]]:
    """Masks keeping the `fraction` of `upper.params`' entries with the largest accumulated
    |gradient| of `upper.loss` over `n_batches` batches (one global threshold across all
    parameters, as SalUn). The model's weights are not changed."""
    if not 0 < fraction <= 1:
        raise ValueError(f"saliency_fraction must be in (0, 1], got {fraction}")
    device = next(unet.parameters()).device
    params = list(upper.params.values())
    saliency = [torch.zeros_like(p) for p in params]
    for i in range(n_batches):
        positions = range(SALIENCY_POSITIONS + i * batch_size, SALIENCY_POSITIONS + (i + 1) * batch_size)
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batches(positions).items()}
        grads = torch.autograd.grad(upper.loss(unet, batch), params, allow_unused=True)
        for s, g in zip(saliency, grads):
            if g is not None:
                s.add_(g.abs())
    flat = torch.cat([s.flatten() for s in saliency])
    keep = max(1, round(fraction * flat.numel()))
    threshold = torch.topk(flat, keep, sorted=True).values[-1]
    return [(p, (s >= threshold).to(p.dtype)) for p, s in zip(params, saliency)]


def esd_saliency(unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
    """ESD on every parameter, each update restricted to the salient weights (see module docstring)."""
    upper = esd_objective("full")(unet, ctx, cfg)
    upper.grad_masks = saliency_masks(unet, upper, ctx.batches, cfg["saliency_fraction"], cfg["saliency_batches"],
                                      cfg["batch_size"])
    return upper


UPPER: dict[str, Callable[[nn.Module, UpperContext, dict], Upper]] = {
    "esdx": esd_objective("xattn"),
    "esdu": esd_objective("noxattn"),
    "esdall": esd_objective("full"),
    "esd-saliency": esd_saliency,
}


def build_upper(name: str, unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
    """The upper objective `name` of UPPER for `unet`."""
    if name not in UPPER:
        raise ValueError(f"unknown upper-level method {name!r}; choose one of {sorted(UPPER)}")
    return UPPER[name](unet, ctx, cfg)
