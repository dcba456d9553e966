"""The bilevel method (paper Eq. 11-14, Algorithm 1): concept unlearning (upper level) during
fine-tuning (lower level, Eq. 8), as two objectives of the one training loop.

    G(theta, vartheta) = upper(theta) + lambda * (L_ft(theta) - L_ft(vartheta))

    repeat: K lower steps   vartheta <- vartheta - eta_low * grad L_ft(vartheta)       objective "lower"
            one upper step  theta <- theta - zeta * [grad upper(theta) + lambda * grad L_ft(theta)]   "upper"

vartheta enters the upper step only through the value of G: its gradient w.r.t. theta is
grad upper(theta) + lambda * grad L_ft(theta). Total iterations count lower and upper steps
together (`counting: paper`; 20,000 with K = 20, i.e. 19,048 lower and 952 upper steps); the
authors' code counts lower steps alone, with an upper step after every K-th (`counting: authors`:
50,000 iterations = 50,000 lower + 5,000 upper at K = 10).

Modes (the paper: "theta and vartheta may be the same or different parameter sets"):
- shared: vartheta is theta; the lower steps fine-tune the model that the upper steps unlearn.
- separate: vartheta is a second copy, trained by the lower steps only; theta gets only upper
  steps. The penalty L_ft(theta) - L_ft(vartheta), logged at every upper step on the upper step's
  fine-tuning batch, stays >= 0 up to noise while vartheta is the better fine-tuner.

The authors' code is a configuration, not another implementation (PAPER_FACTS section 1):
lambda 0 (no penalty term), K 10, x_t from forward-noised real images of the concept, the target
from the unpruned teacher, every parameter trained (`upper.method: esdall`), their Min-SNR form
(`snr_form: authors`) and their step counting (`counting: authors`).

The upper level is any objective of unlearn/upper.py's registry (ESD-x, ESD-u, all-parameter ESD,
saliency-masked ESD, adversarial ESD), with any ESD target mode, or UCE's closed-form edit. A
closed-form upper level (`Upper.apply`) makes the upper step a proximal-style one (UCE's lam ||W - W0||^2
keeps the edit near the weights it starts from): the gradient step on
lambda L_ft(theta) (none when lambda is 0: the edit replaces the optimizer step), then the edit
from the weights that step left, on every process alike (the loop broadcasts the result from
the main process, so DDP replicas cannot drift apart by solver rounding).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from accelerate.utils import extract_model_from_parallel
from torch import Tensor, nn

from pruneforget.train.finetune import FT_TERMS, distillation_terms
from pruneforget.train.loop import train
from pruneforget.train.objective import LoopSettings, Objective, cycle_schedule, objective_step_counts
from pruneforget.unlearn.upper import UPPER, Upper, UpperContext, build_upper, check_settings

MODES = ("shared", "separate")
XT_SOURCES = ("sample", "images")
TARGET_MODELS = ("teacher", "initial")
COUNTINGS = ("paper", "authors")
SNR_FORMS = ("diffusers", "authors")  # train/losses.py's Min-SNR forms
UPPER_TERMS = ("upper", "ft_theta", "ft_vartheta", "penalty", "G", "total")
# The fine-tuning batch of an upper step is drawn at positions this far from the lower steps' own
# (positions 0, 1, 2, ...), so an upper step never reuses a lower step's samples.
UPPER_FT_OFFSET = 1 << 40


class BilevelInputError(ValueError):
    """A bilevel setting that cannot work; the message names the key and the fix."""


@dataclass(frozen=True)
class BilevelSettings:
    """The algorithm's own settings (the `bilevel` config section, variant applied)."""

    mode: str
    k: int
    lam: float
    steps: int
    lower_lr: float
    upper_lr: float
    warmup_steps: int
    upper_method: str
    x_t: str
    target_model: str
    snr_form: str = "diffusers"
    counting: str = "paper"

    @classmethod
    def from_config(cls, cfg: dict) -> "BilevelSettings":
        upper = cfg["upper"]
        settings = cls(mode=cfg["mode"], k=cfg["k"], lam=cfg["lam"], steps=cfg["steps"], lower_lr=cfg["lower_lr"],
                       upper_lr=cfg["upper_lr"], warmup_steps=cfg["warmup_steps"], upper_method=upper["method"],
                       x_t=upper["x_t"], target_model=upper["target_model"], snr_form=cfg["snr_form"],
                       counting=cfg["counting"])
        settings.check()
        try:
            check_settings(settings.upper_method, upper, require=False)  # present keys; build_upper checks the rest
        except ValueError as exc:
            raise BilevelInputError(str(exc)) from exc
        return settings

    def check(self) -> None:
        """Fail naming the key and the fix (before any model is loaded)."""
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise BilevelInputError(f"bilevel.k: {self.k!r}; K is the number of lower steps per upper step, an integer >= 1")
        if not isinstance(self.lam, (int, float)) or isinstance(self.lam, bool) or self.lam < 0:
            raise BilevelInputError(f"bilevel.lam: {self.lam!r}; lambda weighs the penalty L_ft(theta) - L_ft(vartheta) and "
                                    "must be >= 0 (0: no penalty, as the authors' code)")
        if self.mode not in MODES:
            raise BilevelInputError(f"bilevel.mode: {self.mode!r} is not one of {MODES}")
        if self.upper_method not in UPPER:
            raise BilevelInputError(f"bilevel.upper.method: {self.upper_method!r} is not an upper-level method; "
                                    f"choose one of {sorted(UPPER)} (unlearn/upper.py)")
        if self.x_t not in XT_SOURCES:
            raise BilevelInputError(f"bilevel.upper.x_t: {self.x_t!r} is not one of {XT_SOURCES}")
        if self.target_model not in TARGET_MODELS:
            raise BilevelInputError(f"bilevel.upper.target_model: {self.target_model!r} is not one of {TARGET_MODELS}")
        if self.counting not in COUNTINGS:
            raise BilevelInputError(f"bilevel.counting: {self.counting!r} is not one of {COUNTINGS}")
        if self.snr_form not in SNR_FORMS:
            raise BilevelInputError(f"bilevel.snr_form: {self.snr_form!r} is not one of {SNR_FORMS}")
        if not isinstance(self.steps, int) or self.loop_steps < self.k + 1:
            raise BilevelInputError(f"bilevel.steps: {self.steps!r} total iterations cannot hold one cycle of K = {self.k} "
                                    f"lower steps and an upper step; use at least {self.k + 1}")
        for key in ("lower_lr", "upper_lr"):
            if not getattr(self, key) > 0:
                raise BilevelInputError(f"bilevel.{key} must be > 0, got {getattr(self, key)!r}")

    @property
    def loop_steps(self) -> int:
        """Steps of the training loop, lower and upper: `steps` (counting paper), or `steps` lower
        steps plus one upper step after every K-th, steps + floor(steps / K) (counting authors)."""
        if self.counting == "authors":
            return self.steps + self.steps // self.k
        return self.steps


def schedule(k: int) -> Callable[[int], str]:
    """Algorithm 1's alternation: steps 0..K-1 of each cycle are "lower", step K is "upper"."""
    return cycle_schedule("lower", "upper", k)


FtLoss = Callable[[nn.Module, Mapping[str, Tensor]], Mapping[str, Tensor]]


def penalised_upper_terms(theta: nn.Module, vartheta: nn.Module | None, upper: Upper, ft_loss: FtLoss, lam: float,
                          upper_batch: Mapping[str, Tensor], ft_batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The terms of one upper step; `total` = upper(theta) + lambda * L_ft(theta), whose gradient
    w.r.t. theta is grad_theta G (vartheta only enters G's value: `penalty` and `G`).

    `vartheta` is None in shared mode (vartheta is theta, the penalty is 0)."""
    value = upper.loss(theta, upper_batch)
    terms = {"upper": value}
    if lam > 0:
        ft_theta = ft_loss(theta, ft_batch)["total"]
        total = value + lam * ft_theta
    else:
        total = value
        ft_theta = None
        if vartheta is not None:  # still log the penalty, without a graph
            with torch.no_grad():
                ft_theta = ft_loss(theta, ft_batch)["total"]
    if ft_theta is not None:
        terms["ft_theta"] = ft_theta.detach()
    if vartheta is not None:
        with torch.no_grad():
            ft_vartheta = ft_loss(vartheta, ft_batch)["total"]
        terms["ft_vartheta"] = ft_vartheta
        terms["penalty"] = ft_theta.detach() - ft_vartheta
        terms["G"] = value.detach() + lam * terms["penalty"]
    else:
        terms["G"] = value.detach()
    terms["total"] = total
    return terms


def split_batch(batch: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


def upper_batches(upper_source: Callable[[Sequence[int]], Mapping[str, Tensor]],
                  ft_source: Callable[[Sequence[int]], Mapping[str, Tensor]], upper_batch_size: int | None,
                  with_ft: bool) -> Callable[[Sequence[int]], dict[str, Tensor]]:
    """An upper step's batch: the unlearning batch (the first `upper_batch_size` positions of the
    micro-batch; all when None) under keys `u.*`, and a fine-tuning batch under `ft.*`."""
    def batches(positions: Sequence[int]) -> dict[str, Tensor]:
        positions = list(positions)
        u = upper_source(positions[:upper_batch_size] if upper_batch_size else positions)
        out = {f"u.{k}": v for k, v in u.items()}
        if with_ft:
            out.update({f"ft.{k}": v for k, v in ft_source([p + UPPER_FT_OFFSET for p in positions]).items()})
        return out
    return batches


def bilevel_objectives(settings: BilevelSettings, theta: nn.Module, vartheta: nn.Module | None, teacher: nn.Module,
                       upper: Upper, upper_source, ft_batches, scheduler, ft_cfg: dict,
                       upper_batch_size: int | None = None) -> list[Objective]:
    """The "lower" and "upper" objectives of Algorithm 1 for the training loop.

    The loop's models are {"unet": theta} (shared) or {"unet": theta, "vartheta": vartheta}
    (separate). Lower: AdamW at `lower_lr` on all of vartheta's parameters (theta's when shared),
    Eq. 8 with the teacher. Upper: AdamW at `upper_lr` on the upper method's parameters of theta,
    the penalised loss, the method's gradient masks.
    """
    separate = settings.mode == "separate"
    if separate != (vartheta is not None):
        raise BilevelInputError(f"mode {settings.mode!r} needs vartheta {'a second copy' if separate else 'to be theta'}")

    def ft_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        return distillation_terms(model, teacher, batch, scheduler, ft_cfg["snr_gamma"], ft_cfg["loss_weights"],
                                  settings.snr_form)

    def lower_loss(models, batch):
        return ft_loss(models["vartheta" if separate else "unet"], batch)

    def upper_loss(models, batch):
        return penalised_upper_terms(models["unet"], models.get("vartheta"), upper, ft_loss, settings.lam,
                                     split_batch(batch, "u."), split_batch(batch, "ft."))

    common = dict(warmup_steps=settings.warmup_steps, lr_schedule=ft_cfg["lr_schedule"], betas=tuple(ft_cfg["betas"]),
                  weight_decay=ft_cfg["weight_decay"], max_grad_norm=ft_cfg.get("max_grad_norm"))
    lower = Objective(name="lower", params=list((vartheta if separate else theta).parameters()), loss=lower_loss,
                      batches=ft_batches, lr=settings.lower_lr, terms=FT_TERMS, **common)
    with_ft = settings.lam > 0 or separate
    apply = None
    if upper.apply is not None:
        def apply(models):
            upper.apply(extract_model_from_parallel(models["unet"]))
    upper_objective = Objective(name="upper", params=list(upper.params.values()), loss=upper_loss,
                                batches=upper_batches(upper_source, ft_batches, upper_batch_size, with_ft),
                                lr=settings.upper_lr, terms=UPPER_TERMS, grad_masks=upper.grad_masks, apply=apply,
                                **common)
    return [lower, upper_objective]


def train_bilevel(settings: BilevelSettings, theta: nn.Module, teacher: nn.Module, ctx: UpperContext, upper_cfg: dict,
                  ft_batches, scheduler, ft_cfg: dict, loop: LoopSettings, work_dir: Path, *, evaluate=None,
                  accelerator=None, fingerprint: dict | None = None, on_step_end=None) -> dict:
    """Run Algorithm 1 for `loop.steps` = `settings.loop_steps` iterations on `theta` (in place),
    resuming from `work_dir`'s checkpoints. Returns the loop's cost summary (also cost.json).

    `ctx` gives the upper objective's frozen target model, batches and sampler (and UCE's columns
    for `uce`); `upper_cfg` the method's own settings (batch_size; saliency_fraction and
    saliency_batches for esd-saliency; adversarial_steps and adversarial_epsilon for
    esd-adversarial)."""
    if loop.steps != settings.loop_steps:
        raise BilevelInputError(f"the loop runs {loop.steps} steps but bilevel.steps is {settings.steps} "
                                f"(counting {settings.counting}: {settings.loop_steps} loop steps)")
    teacher.requires_grad_(False).eval()
    theta.requires_grad_(True)
    vartheta = copy.deepcopy(theta) if settings.mode == "separate" else None
    upper = build_upper(settings.upper_method, theta, ctx, upper_cfg)
    objectives = bilevel_objectives(settings, theta, vartheta, teacher, upper, ctx.batches, ft_batches, scheduler,
                                    ft_cfg, upper_cfg.get("batch_size"))
    models = {"unet": theta} if vartheta is None else {"unet": theta, "vartheta": vartheta}
    print_counts = objective_step_counts(schedule(settings.k), 0, settings.loop_steps)
    print(f"bilevel ({settings.mode}): {settings.loop_steps} loop steps = {print_counts.get('lower', 0)} lower + "
          f"{print_counts.get('upper', 0)} upper (K = {settings.k}, lambda = {settings.lam}, upper {settings.upper_method}, "
          f"counting {settings.counting}, Min-SNR {settings.snr_form})")
    fingerprint = {**(fingerprint or {}), "mode": settings.mode, "k": settings.k, "lam": settings.lam,
                   "upper": settings.upper_method, "upper_settings": upper.settings, "snr_form": settings.snr_form,
                   "counting": settings.counting}
    return train(objectives, schedule(settings.k), models, loop, work_dir, evaluate=evaluate,
                 accelerator=accelerator, fingerprint=fingerprint, on_step_end=on_step_end)
