"""One ESD step (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023): the loss, its
target modes and its parameter subsets. The same step loss is the bilevel method's upper level.

One ESD step: x_t comes from partially sampling the concept prompt c with the model being trained
(`pruneforget.unlearn.xt`); a frozen model predicts at x_t and the trained model regresses onto

    empty            f0(x_t, "") - eta * (f0(x_t, c) - f0(x_t, ""))     ESD as published (Eq. 6 + guidance)
    anchor_guidance  f0(x_t, c') - eta * (f0(x_t, c) - f0(x_t, c'))     guidance away from c, towards anchor c'
    anchor           f0(x_t, c')                                        plain anchor distillation (Eq. 6)

with the loss ||f(x_t, c) - target||^2 (`esd_loss`). The anchor c' is the concept prompt
with the concept replaced by a neutral one (tiny world: the same caption in style "plain").

The models predict v (SD 2.1 and the tiny world are v-prediction). The target is a fixed linear
combination of model outputs at the same x_t and t, and v = alpha_t eps - sigma_t x0 is affine in
eps at fixed x_t (v = (eps - sigma_t x_t) / alpha_t), with coefficients that sum to one in every
mode: so the v-space target is exactly the v of the eps-space target. Applying the formula to the
raw outputs in v-space is what the authors' code does (PAPER_FACTS section 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneforget.models.expert_modules import ConstantOutput, ShortcutResnet


def esd_target(eps_uncond: Tensor, eps_cond: Tensor, eta: float) -> Tensor:
    """Negative-guidance target of ESD (paper Eq. 6 with ESD's guidance, eta 1):
    eps(x_t, "") - eta * (eps(x_t, c) - eps(x_t, "")), both from the frozen model."""
    return eps_uncond - eta * (eps_cond - eps_uncond)


def esd_loss(pred: Tensor, target: Tensor) -> Tensor:
    """The ESD / bilevel upper loss (Eq. 6): ||eps_S(x_t, t, c) - target||^2 (mean over elements),
    with `target` from `esd_target` (a constant: no gradient flows into the frozen model)."""
    return F.mse_loss(pred.float(), target.detach().float())


TARGETS = ("empty", "anchor_guidance", "anchor")

# Parameter subsets, as ESD's code names them (train_esd.py `train_method`).
SUBSETS = ("xattn", "noxattn", "full")
# ESD-u's parameter set: ESD's CompVis code (`in_subset`) or the authors' diffusers port (`authors_noxattn`).
NOXATTN_FORMS = ("compvis", "authors")
# Pruned stand-ins own one parameter, the bias of the Linear / Conv2d they replace (models/expert_modules.py).
_STAND_INS = (ShortcutResnet, ConstantOutput)


def in_subset(name: str, subset: str) -> bool:
    """Whether UNet parameter `name` is trained by ESD's `subset`.

    xattn (ESD-x): the cross-attention layers `attn2` only (the paper's choice for artists).
    noxattn (ESD-u): everything except cross-attention, and, as in ESD's code, except the time
      embedding and the output layers (CompVis `time_embed`, `out.`; diffusers `time_embedding`,
      `conv_norm_out`, `conv_out`) (the paper's choice for nudity).
    full: every parameter.
    """
    if subset == "xattn":
        return ".attn2." in f".{name}"
    if subset == "noxattn":
        excluded = ".attn2." in f".{name}" or name.startswith(("time_embedding.", "conv_norm_out.", "conv_out."))
        return not excluded
    if subset == "full":
        return True
    raise ValueError(f"unknown ESD parameter subset {subset!r}; choose one of {SUBSETS}")


def authors_noxattn(unet: nn.Module) -> dict[str, nn.Parameter]:
    """ESD-u as the authors' diffusers port selects it (unlearn-ft baselines/erasing/utils/utils.py,
    `FineTunedModel` with train_method noxattn): the weight and bias of every Linear and Conv2d
    whose module path does not contain attn2. Unlike ESD's code it trains the time embedding,
    conv_in and conv_out, and no norm layer. In a pruned expert the bias that a stand-in keeps of
    a removed Linear / Conv2d counts as that layer's."""
    params = {}
    for path, module in unet.named_modules():
        if ".attn2." in f".{path}." or not isinstance(module, (nn.Linear, nn.Conv2d, *_STAND_INS)):
            continue
        for name, p in module.named_parameters(recurse=False):
            params[f"{path}.{name}" if path else name] = p
    return params


def subset_parameters(unet: nn.Module, subset: str, noxattn_form: str = "compvis") -> dict[str, nn.Parameter]:
    """The parameters of `unet` that ESD's `subset` trains, by name (never empty); `noxattn_form`
    picks ESD-u's set: `compvis` (`in_subset`) or `authors` (`authors_noxattn`)."""
    if noxattn_form not in NOXATTN_FORMS:
        raise ValueError(f"ESD-u parameter form {noxattn_form!r} is not one of {NOXATTN_FORMS}")
    if subset == "noxattn" and noxattn_form == "authors":
        params = authors_noxattn(unet)
    else:
        params = {n: p for n, p in unet.named_parameters() if in_subset(n, subset)}
    if not params:
        raise ValueError(f"ESD subset {subset!r} selects no parameter of this UNet")
    return params


@dataclass
class EsdBatch:
    """One unlearning batch: x_t and its DDPM t, and text embeddings of the concept prompt c and
    of the reference the target mode needs ("" for `empty`, the anchor c' otherwise)."""

    x_t: Tensor
    t: Tensor
    cond: Tensor
    reference: Tensor


@torch.no_grad()
def esd_goal(frozen: nn.Module, batch: EsdBatch, target: str, eta: float) -> Tensor:
    """The regression target of one ESD step from the frozen model (see the module docstring)."""
    if target == "anchor":
        return frozen(batch.x_t, batch.t, batch.reference).sample
    if target not in TARGETS:
        raise ValueError(f"unknown ESD target {target!r}; choose one of {TARGETS}")
    both = frozen(
        torch.cat([batch.x_t, batch.x_t]), torch.cat([batch.t, batch.t]), torch.cat([batch.reference, batch.cond])
    ).sample
    f_reference, f_cond = both.chunk(2)
    return esd_target(f_reference, f_cond, eta)


def esd_step_loss(unet: nn.Module, frozen: nn.Module, batch: EsdBatch, *, target: str, eta: float) -> Tensor:
    """The ESD loss of one batch, ||unet(x_t, t, c) - goal||^2 (`esd_loss`).

    This is the one per-step ESD loss: two-stage ESD and the bilevel upper level both call it.
    """
    goal = esd_goal(frozen, batch, target, eta)
    pred = unet(batch.x_t, batch.t, batch.cond).sample
    return esd_loss(pred, goal)
