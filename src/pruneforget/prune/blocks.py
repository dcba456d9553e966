"""Block removal (BK-SDM style): whole ResNets and Transformer2DModels out, by measured importance,
then magnitude width pruning to the exact budget.

The removable blocks are APTP's depth gates (models/structure.py: the last ResNet and the last
Transformer2DModel of every down and up block; a removed ResNet keeps its shortcut, a removed
Transformer2DModel is the identity). Each block is measured once, alone: its importance is the
mean squared change of the UNet's output on the D_f probe batches when that block alone is
removed, divided by the MACs its removal saves. Blocks go lowest importance first; a block whose
removal would take the MACs more than `slack` below the budget is skipped (removing it would
overshoot and width pruning cannot add MACs back). Magnitude width pruning (prune/static.py)
then removes units of the blocks that remain until the budget is met.

How low block removal alone can go (every removable block out; MACs at each config's
`prune.latent_size` and `prune.text_len`; tests/test_prune_taylor_blocks.py checks these):

    config/config.yaml (tiny)    0.678 of the full MACs
    config/micro.yaml            0.533
    config/sd21.yaml (SD 2.1)    0.667   (402.1 GMACs full at 64x64 latents, 77 tokens)
    config/sd21_smoke.yaml       0.669

So at the 0.8 budget blocks can carry the whole cut, and at 0.55 width pruning has to finish it
(everywhere but micro, whose small UNet is mostly removable blocks).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from pruneforget.models.structure import Code, full_code
from pruneforget.prune.gates import gated
from pruneforget.prune.greedy import check_budget, greedy_code
from pruneforget.prune.macs import MacTable
from pruneforget.prune.static import magnitude_priority
from pruneforget.prune.taylor import predict


@torch.no_grad()
def block_output_change(unet: UNet2DConditionModel, table: MacTable, batches: Iterable[dict[str, Tensor]]) -> dict[str, float]:
    """Depth gate name -> mean squared change of the UNet's output, over `batches` (each batch's
    mean over its elements, averaged over batches), when that block alone is removed."""
    depth = [g for g in table.groups if g.is_depth]
    sums = {d.name: 0.0 for d in depth}
    n = 0
    for batch in batches:
        full = predict(unet, batch)
        for d in depth:
            code = full_code(table.groups)
            code[d.name] = torch.zeros(1)
            with gated(unet, code, table.groups):
                sums[d.name] += float(((predict(unet, batch) - full) ** 2).mean())
        n += 1
    if n == 0:
        raise ValueError("block importance needs at least one probe batch")
    return {name: s / n for name, s in sums.items()}


def block_macs_saved(table: MacTable) -> dict[str, float]:
    """Depth gate name -> MACs saved by removing that block alone from the full UNet."""
    out = {}
    for d in (g for g in table.groups if g.is_depth):
        code = full_code(table.groups)
        code[d.name] = torch.zeros(1)
        out[d.name] = float(table.full - table.macs(code))
    return out


def block_importance(change: dict[str, float], saved: dict[str, float]) -> dict[str, float]:
    """A block's importance: the output change its removal causes per MAC it saves."""
    return {name: change[name] / saved[name] for name in change}


def blocks_only_floor(table: MacTable) -> float:
    """The MAC ratio with every removable block removed and all width kept."""
    code = full_code(table.groups)
    for g in table.groups:
        if g.is_depth:
            code[g.name] = torch.zeros(1)
    return float(table.ratio(code))


def remove_blocks(table: MacTable, importance: dict[str, float], budget: float, slack: float) -> Code:
    """Depth gates off, lowest `importance` (output change per MAC saved) first, until the MAC ratio
    is at most `budget`; a block whose removal would end below `budget - slack` is skipped."""
    budget = check_budget(budget)
    code = full_code(table.groups)
    ratio = 1.0
    for name in sorted(importance, key=lambda k: (importance[k], k)):
        if ratio <= budget:
            break
        trial = {**code, name: torch.zeros(1)}
        trial_ratio = float(table.ratio(trial))
        if trial_ratio < budget - slack:
            continue
        code, ratio = trial, trial_ratio
    return code


def blocks_code(unet: UNet2DConditionModel, table: MacTable, batches: Sequence[dict[str, Tensor]], budget: float,
                slack: float) -> tuple[Code, dict]:
    """The block-removal code at a MAC budget, and a record of the measurement (each block's output
    change, MACs saved and importance, and the blocks removed, in removal order)."""
    return code_from_change(unet, table, block_output_change(unet, table, batches), budget, slack)


def code_from_change(unet: UNet2DConditionModel, table: MacTable, change: dict[str, float], budget: float,
                     slack: float) -> tuple[Code, dict]:
    """`blocks_code` from measured output changes: blocks by change per MAC, then magnitude width."""
    saved = block_macs_saved(table)
    importance = block_importance(change, saved)
    code = remove_blocks(table, importance, budget, slack)
    removed = sorted((name for name in importance if float(code[name][0]) == 0.0), key=lambda k: (importance[k], k))
    if float(table.ratio(code)) > budget:
        code = greedy_code(table, magnitude_priority(unet, table), budget, start=code)
    record = {"removed_blocks": removed, "blocks": {
        name: {"output_change": change[name], "macs_saved": saved[name], "importance": importance[name]} for name in change}}
    return code, record
