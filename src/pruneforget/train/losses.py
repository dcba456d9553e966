"""The losses of fine-tuning (paper Eq. 8): the lower level of the bilevel method too.

Each term is one function, named for what it is, citing where it comes from; the loops combine
them. Models are never called here: callers pass predictions, targets and features. The
denoising target y_t is models/diffusion.py's `diffusion_target`; ESD's loss (Eq. 6) is in
unlearn/esd_step.py with the rest of ESD.

    L_ft   = w_diff * L_diff + w_out * L_outKD + w_feat * L_featKD        (Eq. 8; 1.0 / 2.0 / 0.1)
    L_diff = E_t [ w(t) * ||f_S(x_t, t, c) - y_t||^2 ],  y_t = eps or v     (Min-SNR weight w(t), two forms)
    L_outKD = ||f_T(x_t, t, c) - f_S(x_t, t, c)||^2                        (teacher frozen)
    L_featKD = mean_i ||F_T^i - F_S^i||^2   over down / mid / up block outputs

"||.||^2" is the mean squared error over all elements, as in the authors' code (F.mse_loss).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr
from torch import Tensor


SNR_FORMS = ("diffusers", "authors")


def min_snr_weights(scheduler, timesteps: Tensor, gamma: float, form: str = "diffusers") -> Tensor:
    """Min-SNR-gamma loss weights per sample (Hang et al. 2023; the authors' code uses gamma 5).

    Min-SNR weights the x0-error by min(SNR, gamma), SNR = alpha_t^2 / sigma_t^2. On the
    network's own target: ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR (epsilon-prediction) and
    = sigma_t^2 ||v - v_hat||^2 = ||v - v_hat||^2 / (SNR + 1) (v-prediction), so the weight is
    min(SNR, gamma) / SNR or min(SNR, gamma) / (SNR + 1) (`form` "diffusers", as current
    diffusers training scripts). `form` "authors" is the authors' trainer (an older diffusers
    recipe, PAPER_FACTS section 1): for v-prediction it adds 1 to SNR before the minimum,
    min(SNR + 1, gamma) / (SNR + 1), which is 1 wherever SNR + 1 <= gamma (t >= ~147 on SD's
    schedule at gamma 5); epsilon-prediction weights are the same in both forms.
    """
    if form not in SNR_FORMS:
        raise ValueError(f"Min-SNR form {form!r} is not one of {SNR_FORMS}")
    snr = compute_snr(scheduler, timesteps)
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        clipped = torch.clamp(snr + 1 if form == "authors" else snr, max=gamma)
        return clipped / (snr + 1)
    if kind == "epsilon":
        return torch.clamp(snr, max=gamma) / snr
    raise ValueError(f"prediction_type {kind!r} is not supported (epsilon or v_prediction)")


def diffusion_loss(pred: Tensor, target: Tensor, timesteps: Tensor, scheduler, snr_gamma: float | None = None,
                   snr_form: str = "diffusers") -> Tensor:
    """L_diff of Eq. 8: mean squared error between the prediction and the diffusion target,
    each sample weighted by Min-SNR-gamma (`min_snr_weights` in form `snr_form`) when
    `snr_gamma` is given (plain MSE otherwise)."""
    per_element = F.mse_loss(pred.float(), target.float(), reduction="none")
    per_sample = per_element.mean(dim=tuple(range(1, per_element.ndim)))
    if snr_gamma is None:
        return per_sample.mean()
    return (per_sample * min_snr_weights(scheduler, timesteps, snr_gamma, snr_form)).mean()


def output_kd(eps_teacher: Tensor, eps_student: Tensor) -> Tensor:
    """L_outKD of Eq. 8: ||eps_T(x_t, t, c) - eps_S(x_t, t, c)||^2 (mean over elements); the
    teacher's output is a constant (frozen, computed without gradients)."""
    return F.mse_loss(eps_student.float(), eps_teacher.detach().float())


def feature_kd(feats_teacher: Sequence[Tensor], feats_student: Sequence[Tensor]) -> Tensor:
    """L_featKD of Eq. 8: the mean over collected block outputs of ||F_T^i - F_S^i||^2, as in the
    authors' code (every down block, the mid block and every up block; 9 for SD 2.1). Pruning
    keeps block output shapes, so teacher and student features pair up without adapters."""
    if len(feats_teacher) != len(feats_student) or not feats_teacher:
        raise ValueError(f"feature KD needs equally many features, got {len(feats_teacher)} teacher and {len(feats_student)} student")
    terms = []
    for i, (t, s) in enumerate(zip(feats_teacher, feats_student)):
        if t.shape != s.shape:
            raise ValueError(f"block feature {i}: teacher shape {tuple(t.shape)} != student shape {tuple(s.shape)}")
        terms.append(F.mse_loss(s.float(), t.detach().float()))
    return torch.stack(terms).mean()


def finetune_loss(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Eq. 8: L_ft = sum_k weights[k] * terms[k] (paper: diff 1.0, out_kd 2.0, feat_kd 0.1).

    Only the terms present are summed (fine-tuning without distillation passes `diff` alone);
    a term without a weight is an error, so a misspelt config key cannot silently drop it.
    """
    missing = [k for k in terms if k not in weights]
    if missing:
        raise KeyError(f"no loss weight for term(s) {missing}; weights given: {sorted(weights)}")
    return sum(weights[k] * v for k, v in terms.items())


eq8_loss = finetune_loss
