"""What a training run is made of: objectives (one kind of optimizer step each, with its own
optimizer), the loop's settings, and schedules that say which objective takes each global step.
train/loop.py runs them; fine-tuning, ESD and the bilevel method only build these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

Batch = Mapping[str, Tensor]
LossFn = Callable[[Mapping[str, nn.Module], Batch], Mapping[str, Tensor]]


@dataclass
class Objective:
    """One kind of optimizer step.

    `loss(models, batch)` gets the prepared (possibly DDP-wrapped) trainable models by name and a
    batch on the device, and returns named scalar terms including `total`. `batches(positions)`
    returns the batch for those sample positions (CPU tensors; deterministic in the positions).
    `terms` names the terms logged to metrics.csv.
    """

    name: str
    params: Sequence[nn.Parameter]
    loss: LossFn
    batches: Callable[[Sequence[int]], Batch]
    lr: float
    warmup_steps: int = 0
    lr_schedule: str = "constant_with_warmup"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    optimizer: str = "adamw"  # adamw (the paper's; weight_decay 0 is Adam) | sgd (plain gradient steps, for tests)
    terms: Sequence[str] = ("total",)
    # (parameter, 0/1 mask) pairs: the gradient is multiplied by the mask before the optimizer
    # step, so entries outside it are never updated by this objective (a saliency-masked upper
    # level, unlearn/upper.py); other objectives' steps are unaffected.
    grad_masks: Sequence[tuple[nn.Parameter, Tensor]] = ()
    # A closed-form part of the step (a UCE edit as the bilevel upper level): `apply(models)` runs
    # without gradients after the optimizer step, whose loss may then have no gradient at all (the
    # step is the edit alone). It must be deterministic; the loop broadcasts `params` from the main
    # process afterwards so that DDP replicas stay identical.
    apply: Callable[[Mapping[str, nn.Module]], None] | None = None


@dataclass
class LoopSettings:
    """How the loop runs (the parts of a config section that are not the objectives)."""

    steps: int
    micro_batch_size: int
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0  # 0: no checkpoints
    keep_checkpoints: int = 1
    eval_every: int = 0  # 0: no periodic evaluation
    log_every: int = 1
    find_unused_parameters: bool = False
    progress: bool = True


def scratch_settings(cfg: dict, log_every: int = 25, progress: bool = True) -> LoopSettings:
    """The loop settings of a from-scratch trainer's config section (`base.unet`, `base.vae`,
    `evaluator`): `batch_size` per step on one process, optional `mixed_precision` (default no),
    `checkpoint_every` (default 500) and `log_every` (default: the trainer's)."""
    return LoopSettings(steps=cfg["steps"], micro_batch_size=cfg["batch_size"],
                        mixed_precision=cfg.get("mixed_precision", "no"),
                        checkpoint_every=cfg.get("checkpoint_every", 500), log_every=cfg.get("log_every", log_every),
                        progress=progress)


def constant_schedule(name: str) -> Callable[[int], str]:
    """Every step is the same objective (fine-tuning, ESD)."""
    return lambda step: name


def cycle_schedule(lower: str, upper: str, k: int) -> Callable[[int], str]:
    """Algorithm 1's alternation: K `lower` steps, then one `upper` step, repeated
    (the authors' code is K = 10)."""
    if k < 1:
        raise ValueError(f"a cycle needs K >= 1 lower steps, got {k}")
    return lambda step: upper if step % (k + 1) == k else lower


def objective_step_counts(schedule: Callable[[int], str], start: int, stop: int) -> dict[str, int]:
    """How many of steps start..stop-1 each objective takes."""
    counts: dict[str, int] = {}
    for s in range(start, stop):
        counts[schedule(s)] = counts.get(schedule(s), 0) + 1
    return counts


def make_optimizer(objective: Objective) -> torch.optim.Optimizer:
    """The objective's optimizer: AdamW (paper: betas 0.9 / 0.999, no weight decay) or plain SGD."""
    if objective.optimizer == "adamw":
        return torch.optim.AdamW(objective.params, lr=objective.lr, betas=tuple(objective.betas),
                                 weight_decay=objective.weight_decay)
    if objective.optimizer == "sgd":
        return torch.optim.SGD(objective.params, lr=objective.lr, weight_decay=objective.weight_decay)
    raise ValueError(f"objective {objective.name!r}: unknown optimizer {objective.optimizer!r} (adamw or sgd)")


def trajectory_settings(settings: LoopSettings) -> dict:
    """The settings a resumed run must share with the checkpoint to continue the same trajectory
    (evaluation, logging and checkpoint frequency may change between attempts)."""
    keys = ("steps", "micro_batch_size", "gradient_accumulation_steps", "mixed_precision")
    return {k: getattr(settings, k) for k in keys}
