"""Static pruners by name (`pruneforget.prune.METHODS`): the code each makes at a MAC budget.

magnitude and random are data-free (prune/static.py); taylor (prune/taylor.py) and blocks
(prune/blocks.py) measure importance on D_f probe batches (prune/probe.py), the methods of
`pruneforget.prune.NEEDS_DATA`.
"""

from __future__ import annotations

from typing import Sequence

from diffusers import UNet2DConditionModel
from torch import Tensor

from pruneforget.models.structure import Code
from pruneforget.prune import METHODS, NEEDS_DATA
from pruneforget.prune.blocks import blocks_code
from pruneforget.prune.greedy import check_budget
from pruneforget.prune.macs import MacTable
from pruneforget.prune.static import magnitude_code, random_code
from pruneforget.prune.taylor import taylor_code


def prune_code(method: str, unet: UNet2DConditionModel, table: MacTable, budget: float, *, seed: int = 0,
               batches: Sequence[dict[str, Tensor]] | None = None, slack: float = 0.0) -> tuple[Code, dict]:
    """The code of static pruner `method` at a MAC budget, and what the pruner records about it.

    `seed` seeds random pruning; `batches` are the probe batches of the NEEDS_DATA methods;
    `slack` is how far below the budget block removal may land (blocks only)."""
    if method not in METHODS:
        raise ValueError(f"unknown static pruning method {method!r}; choose one of {METHODS}")
    check_budget(budget)
    if method in NEEDS_DATA and not batches:
        raise ValueError(f"{method} measures importance on probe batches of D_f; pass them (prune-static --data)")
    if method == "magnitude":
        return magnitude_code(unet, table, budget), {}
    if method == "random":
        return random_code(table, budget, seed), {"seed": seed}
    if method == "taylor":
        return taylor_code(unet, table, batches, budget), {}
    return blocks_code(unet, table, batches, budget, slack)
