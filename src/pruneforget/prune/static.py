"""Data-free static pruners (PAPER_FACTS section 5, open question 1): one code for every prompt.

Both work at APTP's granularity (ResNet channel groups, attention heads, feed-forward groups)
and remove units greedily, lowest priority first, until the code's MACs are within the budget
(prune/greedy.py); every width group keeps at least one unit and every depth gate stays on.

- magnitude: a unit's score is the L1 norm of the weights that produce it (ResNet group: its
  `conv1` output channels; head: its rows of `to_q`, `to_k`, `to_v`; feed-forward group: its rows
  of both GEGLU halves), divided by the mean score of its group's units so that layers of
  different fan-in compare; priority = normalised score per MAC of the unit, so cheap important
  units are kept before costly unimportant ones. Within a group, units go in order of L1 norm.
- random: priority uniform at random (seeded); same greedy removal.

The pruners that measure importance on data (taylor, blocks) live in prune/taylor.py and
prune/blocks.py; prune/select.py dispatches by name.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from pruneforget.models.structure import Code, Group
from pruneforget.prune.greedy import check_budget, greedy_code, normalised_priority
from pruneforget.prune.macs import MacTable

__all__ = ["check_budget", "greedy_code", "magnitude_code", "magnitude_priority", "magnitude_scores", "random_code"]


def _unit_l1(weight: Tensor, unit_size: int) -> Tensor:
    """L1 norm of each unit's rows of `weight` (rows grouped `unit_size` at a time)."""
    per_row = weight.detach().abs().flatten(1).sum(1).float()
    return per_row.view(-1, unit_size).sum(1)


def magnitude_scores(unet: UNet2DConditionModel, groups: Sequence[Group]) -> dict[str, Tensor]:
    """L1 norm of each unit's producing weights, per width group (`(units,)` each)."""
    scores = {}
    for g in groups:
        m = unet.get_submodule(g.module)
        if g.kind == "resnet_width":
            scores[g.name] = _unit_l1(m.conv1.weight, g.unit_size)
        elif g.kind == "attn_heads":
            scores[g.name] = sum(_unit_l1(lin.weight, g.unit_size) for lin in (m.to_q, m.to_k, m.to_v))
        elif g.kind == "ff_width":
            value, gate = m.net[0].proj.weight.chunk(2, dim=0)
            scores[g.name] = _unit_l1(value, g.unit_size) + _unit_l1(gate, g.unit_size)
    return scores


def magnitude_code(unet: UNet2DConditionModel, table: MacTable, budget: float) -> Code:
    """The magnitude-pruning code of `unet` at a MAC budget (a share of the full MACs)."""
    return greedy_code(table, magnitude_priority(unet, table), budget)


def magnitude_priority(unet: UNet2DConditionModel, table: MacTable) -> dict[str, Tensor]:
    """Normalised L1 score per MAC of every width unit (the magnitude pruner's priority)."""
    return normalised_priority(magnitude_scores(unet, table.groups), table)


def random_code(table: MacTable, budget: float, seed: int) -> Code:
    """A random code at the same granularity: units removed in a seeded random order."""
    gen = torch.Generator().manual_seed(seed)
    priority = {g.name: torch.rand(g.units, generator=gen) for g in table.groups if not g.is_depth}
    return greedy_code(table, priority, budget)
