"""Unlearning objectives: the upper level of the bilevel method (Algorithm 1) and two-stage ESD.

A registry of objectives with one signature, so the bilevel method can swap its upper level:

    UPPER[name](unet, ctx, cfg) -> Upper(params, loss, grad_masks)

- `esdx`, `esdu`, `esdall`: the ESD loss (`unlearn.esd_step.esd_step_loss`) on the cross-attention
  parameters, on everything but cross-attention, or on every parameter, with any target mode.
- `esd-saliency`: the ESD loss on every parameter, but each update touches only the top
  `saliency_fraction` of weights by gradient saliency |d ESD / d w| on the concepts, measured once
  at the start over `saliency_batches` batches (SalUn's weight saliency, Fan et al., ICLR 2024).
- `esd-adversarial`: the ESD loss on every parameter, with the concept prompt's embedding replaced
  by its worst case within a per-token L2 ball (`adversarial_steps` PGD steps, radius
  `adversarial_epsilon` times each token's norm; unlearn/adversarial.py), AdvUnlearn's min-max.
  The target still comes from the unperturbed prompt: every prompt near the concept must lead
  away from it. Chosen over ConceptPrune in the loop because ConceptPrune is no objective the
  upper step can descend: it zeroes individual weights once, which the lower steps would regrow
  unless a fixed mask pinned them (and pinning them is pruning, prune/'s business, on top of the
  expert's own structure), while robustness to adversarial prompts is where the paper's bilevel
  run trails ConceptPrune (Table 2: MMA 91.60 vs 94.12, Ring-A-Bell 94.32 vs 97.72).
- `uce`: no gradient objective but UCE's closed-form edit of the cross-attention keys and values
  (unlearn/uce.py, from the weights as they are at that step), re-applied at every upper step
  (`Upper.apply`), the lower steps fine-tuning in between. Its `loss` is a diagnostic without a
  gradient: UCE's erase residual sum_e es ||W c_e - W c_guide||^2 over every to_k / to_v before
  the edit (how far fine-tuning has moved the concepts' keys and values off the guide's).

`Upper.loss(unet, batch)` takes the trained (possibly DDP-wrapped) UNet and a batch on its
device from `ctx.batches` and returns the scalar loss; x_t is produced inside it when the batch
asks for partial sampling (`unlearn.xt`). `Upper.apply(unet)`, when present, is a closed-form
step the training loop runs after the upper step's (possibly empty) gradient step: a proximal
step on the penalised problem, whose lambda L_ft(theta) part still takes its gradient step.
`Upper.settings` are the method's own settings that change the result (the run's fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from accelerate.utils import extract_model_from_parallel
from torch import Tensor, nn

from pruneforget.unlearn.adversarial import adversarial_condition
from pruneforget.unlearn.concepts import cross_attention_layers
from pruneforget.unlearn.esd_step import TARGETS, esd_goal, esd_loss, esd_step_loss, subset_parameters
from pruneforget.unlearn.uce import UceEdit, edit_cross_attention
from pruneforget.unlearn.xt import PartialSampler, esd_batch

# Sample positions of the saliency batches: far from any training position (0, 1, 2, ...).
SALIENCY_POSITIONS = 1 << 41


@dataclass
class UpperContext:
    """What every upper objective is built from: the frozen model giving the target (the teacher,
    or a frozen copy of the model being unlearned), the target mode and eta, the partial sampler
    (None when x_t comes from forward-noised images) and the position-addressed batches; for
    `uce`, UCE's columns and scalars (`edit`)."""

    frozen: nn.Module
    target: str
    eta: float
    batches: Callable[[Sequence[int]], Mapping[str, Tensor]]
    sampler: PartialSampler | None = None
    edit: UceEdit | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown ESD target mode {self.target!r}; choose one of {TARGETS}")


@dataclass
class Upper:
    """An upper-level objective: the parameters it updates, its loss, optional gradient masks
    (parameter, 0/1 tensor on the parameter's device) applied before each of its optimizer steps,
    an optional closed-form step `apply(unet)` on the unwrapped UNet (deterministic: every
    process applies the same), and the settings that define it."""

    params: dict[str, nn.Parameter]
    loss: Callable[[nn.Module, Mapping[str, Tensor]], Tensor]
    grad_masks: list[tuple[nn.Parameter, Tensor]] = field(default_factory=list)
    apply: Callable[[nn.Module], object] | None = None
    settings: dict = field(default_factory=dict)


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
    upper.settings = {k: cfg[k] for k in SETTINGS["esd-saliency"]}
    return upper


def esd_adversarial(unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
    """ESD on every parameter at the worst-case concept embedding (see the module docstring);
    with `adversarial_steps` 0 it is `esdall` exactly."""
    steps, epsilon = cfg["adversarial_steps"], cfg["adversarial_epsilon"]

    def loss(trained: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        model = extract_model_from_parallel(trained)
        b = esd_batch(dict(batch), model, ctx.sampler)
        goal = esd_goal(ctx.frozen, b, ctx.target, ctx.eta)  # from the unperturbed prompt
        # The search differentiates the unwrapped model w.r.t. the embedding only, so DDP sees
        # one forward and backward per step: the outer one below.
        cond = adversarial_condition(lambda c: esd_loss(model(b.x_t, b.t, c).sample, goal), b.cond, steps, epsilon)
        return esd_loss(trained(b.x_t, b.t, cond).sample, goal)

    return Upper(subset_parameters(unet, "full"), loss, settings={k: cfg[k] for k in SETTINGS["esd-adversarial"]})


def uce_projections(unet: nn.Module) -> dict[str, nn.Parameter]:
    """Every cross-attention `to_k` / `to_v` weight of `unet`, by parameter name: what UCE edits."""
    return {f"{name}.{proj}.weight": getattr(attn, proj).weight
            for name, attn in cross_attention_layers(unet).items() for proj in ("to_k", "to_v")}


def uce_upper(unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
    """UCE's closed-form edit as the upper step (see the module docstring); `ctx.edit` holds
    its columns and scalars (`unlearn.uce.uce_edit`)."""
    if ctx.edit is None:
        raise ValueError("upper-level method 'uce' needs UCE's columns (UpperContext.edit from unlearn.uce.uce_edit)")
    edit, params = ctx.edit, uce_projections(unet)

    @torch.no_grad()
    def residual(trained: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        diff = (edit.erase - edit.guide).double()
        total = sum(float((w.double() @ diff.to(w.device).T).pow(2).sum()) for w in params.values())
        return torch.tensor(edit.erase_scale * total, device=next(iter(params.values())).device)

    settings = {"lam": edit.lam, "erase_scale": edit.erase_scale, "preserve_scale": edit.preserve_scale,
                "preserve_prompts": list(edit.preserve_prompts)}
    return Upper(params, residual, apply=lambda model: edit_cross_attention(model, edit), settings=settings)


# The bilevel.upper keys each method reads besides batch_size (they enter the run's fingerprint).
SETTINGS = {"esd-saliency": ("saliency_fraction", "saliency_batches"),
            "esd-adversarial": ("adversarial_steps", "adversarial_epsilon")}


def check_settings(name: str, cfg: dict, require: bool = True) -> None:
    """Fail on a bad setting of method `name` in `cfg` (bilevel.upper), naming the key; on a
    missing one too when `require` (the settings a builder will read)."""
    missing = [k for k in SETTINGS.get(name, ()) if k not in cfg]
    if missing and require:
        raise ValueError(f"bilevel.upper.{missing[0]} is missing; method {name!r} needs {list(SETTINGS[name])}")
    steps, epsilon = cfg.get("adversarial_steps", 0), cfg.get("adversarial_epsilon", 0)
    if name == "esd-adversarial":
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"bilevel.upper.adversarial_steps: {steps!r}; PGD steps, an integer >= 0 (0: plain esdall)")
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon < 0:
            raise ValueError(f"bilevel.upper.adversarial_epsilon: {epsilon!r}; the per-token radius as a share of the "
                             "token's embedding norm, a number >= 0")


UPPER: dict[str, Callable[[nn.Module, UpperContext, dict], Upper]] = {
    "esdx": esd_objective("xattn"),
    "esdu": esd_objective("noxattn"),
    "esdall": esd_objective("full"),
    "esd-saliency": esd_saliency,
    "esd-adversarial": esd_adversarial,
    "uce": uce_upper,
}


def build_upper(name: str, unet: nn.Module, ctx: UpperContext, cfg: dict) -> Upper:
    """The upper objective `name` of UPPER for `unet`."""
    if name not in UPPER:
        raise ValueError(f"unknown upper-level method {name!r}; choose one of {sorted(UPPER)}")
    check_settings(name, cfg)
    return UPPER[name](unet, ctx, cfg)
