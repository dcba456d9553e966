"""Static pruning baselines (PAPER_FACTS section 5, open question 1): one code for every prompt.

Both pruners work at APTP's granularity (ResNet channel groups, attention heads, feed-forward
groups) and remove units greedily, lowest priority first, until the code's MACs are within the
budget; every width group keeps at least one unit and every depth gate stays on (static pruners
only remove width, so depth pruning remains APTP's).

- magnitude: a unit's score is the L1 norm of the weights that produce it (ResNet group: its
  `conv1` output channels; head: its rows of `to_q`, `to_k`, `to_v`; feed-forward group: its rows
  of both GEGLU halves), divided by the mean score of its group's units so that layers of
  different fan-in compare; priority = normalised score per MAC of the unit, so cheap important
  units are kept before costly unimportant ones. Within a group, units go in order of L1 norm.
- random: priority uniform at random (seeded); same greedy removal.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from pruneforget.models.structure import Code, Group, full_code
from pruneforget.prune.macs import MacTable

METHODS = ("magnitude", "random")


def check_budget(budget: float) -> float:
    """A MAC budget is a share of the full UNet's MACs in (0, 1]."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a share of the full MACs in (0, 1], got {budget} (expert-80 is 0.8)")
    return float(budget)


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


def greedy_code(table: MacTable, priority: dict[str, Tensor], budget: float) -> Code:
    """Remove width units lowest priority first until the code's MAC ratio is at most `budget`.

    Every width group keeps its best unit; depth gates stay on. Raises if the budget is below
    what width pruning alone can reach."""
    budget = check_budget(budget)
    code = full_code(table.groups)
    width = [g for g in table.groups if not g.is_depth]
    floor = table.full - sum(table.unit_macs[g.name] * (g.units - 1) for g in width)
    if floor / table.full > budget:
        raise ValueError(
            f"budget {budget} is below the {floor / table.full:.3f} of the full MACs that width pruning "
            "can reach (one unit kept per group, depth kept); choose a larger budget"
        )
    candidates = []
    for g in width:
        order = torch.argsort(priority[g.name], descending=True, stable=True).tolist()
        for j in order[1:]:  # the group's best unit is never removed
            candidates.append((float(priority[g.name][j]), g.name, j))
    candidates.sort(key=lambda c: c[0])
    macs = float(table.full)
    for _, name, j in candidates:
        if macs <= budget * table.full:
            break
        code[name][j] = 0.0
        macs -= table.unit_macs[name]
    return code


def magnitude_code(unet: UNet2DConditionModel, table: MacTable, budget: float) -> Code:
    """The magnitude-pruning code of `unet` at a MAC budget (a share of the full MACs)."""
    scores = magnitude_scores(unet, table.groups)
    priority = {}
    for name, s in scores.items():
        normalised = s / s.mean().clamp_min(1e-12)
        priority[name] = normalised / table.unit_macs[name]
    return greedy_code(table, priority, budget)


def random_code(table: MacTable, budget: float, seed: int) -> Code:
    """A random code at the same granularity: units removed in a seeded random order."""
    gen = torch.Generator().manual_seed(seed)
    priority = {g.name: torch.rand(g.units, generator=gen) for g in table.groups if not g.is_depth}
    return greedy_code(table, priority, budget)


def static_code(method: str, unet: UNet2DConditionModel, table: MacTable, budget: float, seed: int = 0) -> Code:
    """Dispatch to a static pruner by name (`magnitude` or `random`)."""
    if method == "magnitude":
        return magnitude_code(unet, table, budget)
    if method == "random":
        return random_code(table, budget, seed)
    raise ValueError(f"unknown static pruning method {method!r}; choose one of {METHODS}")
