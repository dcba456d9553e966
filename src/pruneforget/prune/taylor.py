"""First-order Taylor importance of width units (Molchanov et al. 2019; SPDM's Taylor pruner of
diffusion UNets), and the pruner built on it.

A unit's removal deletes a set of weights W_u (prune/expert slicing, models/expert.py): a ResNet
channel group its `conv1` output channels (weights and bias), `time_emb_proj` rows, `norm2`
scale and shift, and `conv2` input columns; a head its rows of `to_q`/`to_k`/`to_v` (and
biases) and its columns of `to_out[0]`; a feed-forward group its rows of both GEGLU halves of
`net[0].proj` (and biases) and its columns of `net[2]`. Setting W_u to zero changes the loss by

    L(W_u = 0) - L  ~  -sum_{w in W_u} w * dL/dw,

so the unit's score is |sum_{w in W_u} w * G_w|, where G is the gradient of the plain denoising
MSE (the model's own prediction target, models/diffusion.py) SUMMED over the D_f probe batches
before the absolute value: a unit whose first-order effect cancels across batches scores low.

Priority = the score divided by its group's mean score, per MAC of the unit (as magnitude
pruning normalises L1 norms), then the shared greedy removal (prune/greedy.py); depth stays.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from pruneforget.models.structure import Code, Group
from pruneforget.prune.greedy import greedy_code, normalised_priority
from pruneforget.prune.macs import MacTable


def removed_parameters(module: nn.Module, group: Group) -> list[tuple[nn.Parameter, int, int]]:
    """The parameters a unit's removal slices, each as (parameter, unit axis, halves): the unit's
    entries lie along `unit axis`, in `halves` consecutive blocks of `units * unit_size` (2 for
    GEGLU's value and gate halves, else 1)."""
    if group.kind == "resnet_width":
        out = [(module.conv1.weight, 0), (module.conv1.bias, 0), (module.norm2.weight, 0), (module.norm2.bias, 0),
               (module.conv2.weight, 1)]
        if module.time_emb_proj is not None:
            out += [(module.time_emb_proj.weight, 0), (module.time_emb_proj.bias, 0)]
        return [(p, axis, 1) for p, axis in out if p is not None]
    if group.kind == "attn_heads":
        out = [(lin.weight, 0) for lin in (module.to_q, module.to_k, module.to_v)]
        out += [(lin.bias, 0) for lin in (module.to_q, module.to_k, module.to_v) if lin.bias is not None]
        return [(p, axis, 1) for p, axis in out] + [(module.to_out[0].weight, 1, 1)]
    if group.kind == "ff_width":
        proj = module.net[0].proj
        out = [(proj.weight, 0, 2)] + ([(proj.bias, 0, 2)] if proj.bias is not None else [])
        return out + [(module.net[2].weight, 1, 1)]
    raise ValueError(f"{group.name} is not a width group")


def unit_sums(t: Tensor, axis: int, halves: int, units: int) -> Tensor:
    """Sum of `t` over each unit's entries: `(units,)`. Along `axis`, `t` holds `halves` blocks of
    `units` consecutive unit slices; a unit's sum covers its slice in every block."""
    blocks = t.movedim(axis, 0).reshape(halves, units, -1)
    return blocks.sum(dim=(0, 2))


def taylor_group_scores(module: nn.Module, group: Group) -> Tensor:
    """|sum over the unit's removed weights of w * grad| for every unit of one group, from the
    gradients accumulated in the parameters' `.grad` (float64 sums)."""
    total = torch.zeros(group.units, dtype=torch.float64)
    for p, axis, halves in removed_parameters(module, group):
        if p.grad is None:
            raise ValueError(f"{group.name}: no gradient accumulated for a parameter of shape {tuple(p.shape)}")
        product = p.detach().double() * p.grad.detach().double()
        total += unit_sums(product, axis, halves, group.units).cpu()
    return total.abs()


def predict(unet: UNet2DConditionModel, batch: dict[str, Tensor]) -> Tensor:
    """The UNet's prediction for a denoising batch (x_t, t, text), in at least float32 (so that a
    half-precision model's loss is summed in float32 and a float64 one keeps its precision)."""
    param = next(unet.parameters())
    pred = unet(batch["noisy"].to(param.device, param.dtype), batch["timesteps"].to(param.device),
                batch["text"].to(param.device, param.dtype)).sample
    return pred.to(torch.promote_types(pred.dtype, torch.float32))


def denoising_mse(unet: UNet2DConditionModel, batch: dict[str, Tensor]) -> Tensor:
    """The plain denoising loss of one batch: MSE of the UNet's prediction against the batch's
    diffusion target (v or eps, as the scheduler predicts; train/batches.denoising_batch)."""
    pred = predict(unet, batch)
    return F.mse_loss(pred, batch["target"].to(pred.device, pred.dtype))


def taylor_scores(unet: UNet2DConditionModel, groups: Sequence[Group], batches: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Taylor score of every width unit (`(units,)` per width group), gradients summed over `batches`.

    Only the parameters some unit's removal deletes get gradients (the rest are frozen for the
    duration, which saves their gradient memory); the UNet's flags and gradients are restored."""
    width = [g for g in groups if not g.is_depth]
    wanted = {id(p) for g in width for p, _, _ in removed_parameters(unet.get_submodule(g.module), g)}
    flags = {id(p): p.requires_grad for p in unet.parameters()}
    try:
        for p in unet.parameters():
            p.grad = None
            p.requires_grad_(id(p) in wanted)
        n = 0
        for batch in batches:
            denoising_mse(unet, batch).backward()  # .grad accumulates: the sum over batches
            n += 1
        if n == 0:
            raise ValueError("Taylor importance needs at least one probe batch")
        return {g.name: taylor_group_scores(unet.get_submodule(g.module), g).float() for g in width}
    finally:
        for p in unet.parameters():
            p.grad = None
            p.requires_grad_(flags[id(p)])


def taylor_code(unet: UNet2DConditionModel, table: MacTable, batches: Sequence[dict[str, Tensor]], budget: float) -> Code:
    """The Taylor-pruning code of `unet` at a MAC budget: normalised score per MAC, greedy removal."""
    return greedy_code(table, normalised_priority(taylor_scores(unet, table.groups, batches), table), budget)
