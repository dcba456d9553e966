"""The greedy removal every static pruner ends with: width units go lowest priority first until
the code's MACs are within the budget.

It may start from a code that already removed whole blocks (block removal, prune/blocks.py):
width groups inside a removed block cost nothing any more, so they are left as they are, and
the MACs are counted from the starting code. Every width group that still computes keeps its
best unit (a group with no unit left would leave only its output bias, which the greedy never
aims for).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pruneforget.models.structure import Code, full_code
from pruneforget.prune.macs import MacTable


def check_budget(budget: float) -> float:
    """A MAC budget is a share of the full UNet's MACs in (0, 1]."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a share of the full MACs in (0, 1], got {budget} (expert-80 is 0.8)")
    return float(budget)


def active_width_groups(table: MacTable, code: Code) -> list[str]:
    """Names of the width groups whose units still cost MACs under `code` (not inside a removed block)."""
    return [g.name for g in table.groups
            if not g.is_depth and (table.parent[g.name] is None or float(code[table.parent[g.name]][0]) == 1.0)]


def greedy_code(table: MacTable, priority: dict[str, Tensor], budget: float, start: Code | None = None) -> Code:
    """Remove width units lowest priority first until the code's MAC ratio is at most `budget`.

    Starts from `start` (default: the full code) and never touches its depth gates; groups inside
    a removed block are skipped (`priority` needs entries only for the others). Every remaining
    width group keeps its best kept unit. Raises if the budget is below what width pruning from
    `start` can reach."""
    budget = check_budget(budget)
    code = {k: v.clone() for k, v in (start or full_code(table.groups)).items()}
    active = active_width_groups(table, code)
    macs = float(table.macs(code))
    kept = {name: code[name].bool() for name in active}
    floor = macs - sum(table.unit_macs[name] * (int(kept[name].sum()) - 1) for name in active)
    if floor / table.full > budget:
        raise ValueError(
            f"budget {budget} is below the {floor / table.full:.3f} of the full MACs that width pruning "
            "can reach (one unit kept per group, depth kept); choose a larger budget"
        )
    candidates = []
    for name in active:
        order = [j for j in torch.argsort(priority[name], descending=True, stable=True).tolist() if kept[name][j]]
        for j in order[1:]:  # the group's best kept unit is never removed
            candidates.append((float(priority[name][j]), name, j))
    candidates.sort(key=lambda c: c[0])
    for _, name, j in candidates:
        if macs <= budget * table.full:
            break
        code[name][j] = 0.0
        macs -= table.unit_macs[name]
    return code


def normalised_priority(scores: dict[str, Tensor], table: MacTable) -> dict[str, Tensor]:
    """Importance per MAC: each group's scores divided by their mean (so that layers of different
    fan-in or gradient scale compare), then by the MACs of one of its units."""
    return {name: (s / s.mean().clamp_min(1e-12)) / table.unit_macs[name] for name, s in scores.items()}
