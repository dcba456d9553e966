"""Fine-tuning a pruned student with distillation from the unpruned teacher (paper Eq. 8), as one
objective ("ft") of the training loop; `loss="diff"` is the no-distillation ablation (Fig. 4)
and `reinitialise` the random-initialisation ablation (Fig. 5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from accelerate.utils import extract_model_from_parallel
from torch import Tensor, nn

from pruneforget.train.features import BlockFeatures
from pruneforget.train.objective import LoopSettings, Objective
from pruneforget.train.losses import diffusion_loss, feature_kd, finetune_loss, output_kd

FT_TERMS = ("diff", "out_kd", "feat_kd", "total")

# The UNet config keys that make two UNets "the same base model" (a pruned expert's unet/config.json
# is its base model's config; pruning is recorded beside it in arch_code.json).
BASE_IDENTITY_KEYS = (
    "in_channels", "out_channels", "sample_size", "block_out_channels", "layers_per_block", "down_block_types",
    "up_block_types", "mid_block_type", "attention_head_dim", "num_attention_heads", "cross_attention_dim",
    "norm_num_groups", "use_linear_projection", "transformer_layers_per_block", "time_embedding_type",
)


def distillation_terms(student: nn.Module, teacher: nn.Module | None, batch: Mapping[str, Tensor], scheduler,
                       snr_gamma: float | None, weights: Mapping[str, float],
                       snr_form: str = "diffusers") -> dict[str, Tensor]:
    """The terms of Eq. 8 on one batch (from `denoising_batch`): `diff` always (Min-SNR in form
    `snr_form`, see `losses.min_snr_weights`); `out_kd` and `feat_kd` when a teacher is given
    (frozen, no gradients); `total` their weighted sum.

    `student` may be DDP-wrapped: the feature hooks go on the module inside.
    """
    noisy, t, text = batch["noisy"], batch["timesteps"], batch["text"]
    if teacher is None:
        pred = student(noisy, t, text).sample
        terms = {"diff": diffusion_loss(pred, batch["target"], t, scheduler, snr_gamma, snr_form)}
    else:
        with torch.no_grad(), BlockFeatures(teacher) as tf:
            pred_teacher = teacher(noisy, t, text).sample
            feats_teacher = tf.pop()
        with BlockFeatures(extract_model_from_parallel(student)) as sf:
            pred = student(noisy, t, text).sample
            feats_student = sf.pop()
        terms = {"diff": diffusion_loss(pred, batch["target"], t, scheduler, snr_gamma, snr_form),
                 "out_kd": output_kd(pred_teacher, pred),
                 "feat_kd": feature_kd(feats_teacher, feats_student)}
    terms["total"] = finetune_loss(terms, weights)
    return terms


def finetune_objective(student: nn.Module, teacher: nn.Module | None, batches, scheduler, cfg: dict) -> Objective:
    """The "ft" objective: every student parameter, Eq. 8's loss, AdamW with `cfg`'s lr schedule.
    The loop passes the prepared student as models["unet"]."""
    student.requires_grad_(True)
    if teacher is not None:
        teacher.requires_grad_(False).eval()

    def loss(models, batch):
        return distillation_terms(models["unet"], teacher, batch, scheduler, cfg["snr_gamma"], cfg["loss_weights"],
                                  cfg["snr_form"])

    return Objective(
        name="ft", params=list(student.parameters()), loss=loss, batches=batches, lr=cfg["lr"],
        warmup_steps=cfg["warmup_steps"], lr_schedule=cfg["lr_schedule"], betas=tuple(cfg["betas"]),
        weight_decay=cfg["weight_decay"], max_grad_norm=cfg.get("max_grad_norm"), terms=FT_TERMS,
    )


def accumulation_steps(batch_size: int, micro_batch_size: int, num_processes: int) -> int:
    """Accumulation steps that make micro-batches x processes x steps the effective batch (paper 64)."""
    per_pass = micro_batch_size * num_processes
    if batch_size % per_pass:
        raise ValueError(
            f"effective batch {batch_size} is not a multiple of micro_batch_size {micro_batch_size} x "
            f"{num_processes} process(es); change finetune.micro_batch_size or the number of GPUs"
        )
    return batch_size // per_pass


def loop_settings(cfg: dict, num_processes: int, progress: bool = True) -> LoopSettings:
    """LoopSettings from the `finetune` config section."""
    return LoopSettings(
        steps=cfg["steps"], micro_batch_size=cfg["micro_batch_size"],
        gradient_accumulation_steps=accumulation_steps(cfg["batch_size"], cfg["micro_batch_size"], num_processes),
        mixed_precision=cfg["mixed_precision"], gradient_checkpointing=cfg["gradient_checkpointing"],
        checkpoint_every=cfg["checkpoint_every"], eval_every=cfg["eval_every"], log_every=cfg["log_every"],
        progress=progress,
    )


def unet_base_config(pipeline_dir: str | Path) -> dict:
    """The identity of a pipeline's base UNet: BASE_IDENTITY_KEYS of unet/config.json."""
    path = Path(pipeline_dir) / "unet" / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {pipeline_dir} is not a pipeline directory (save_pretrained)")
    config = json.loads(path.read_text())
    return {k: config.get(k) for k in BASE_IDENTITY_KEYS}


def check_same_base(expert_dir: str | Path, teacher_dir: str | Path) -> None:
    """Refuse a student whose base model is not the teacher: distillation (and feature KD, which
    pairs block outputs) is only meaningful against the model the student was pruned from."""
    expert, teacher = unet_base_config(expert_dir), unet_base_config(teacher_dir)
    diff = {k: (expert[k], teacher[k]) for k in BASE_IDENTITY_KEYS if expert[k] != teacher[k]}
    if diff:
        listed = "; ".join(f"{k}: expert {a!r} vs teacher {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{expert_dir} was not pruned from the teacher {teacher_dir} ({listed}); "
                         "pass the base model the expert was made from as --teacher")


def reinitialise(module: nn.Module, seed: int) -> nn.Module:
    """Fresh random weights for the same architecture (Fig. 5's random initialisation), seeded:
    every submodule's own `reset_parameters` (PyTorch's default init, which diffusers' UNet
    uses). Pruned UNets work too, since only shapes matter; the 1-D parameters that pruned
    stand-in modules own directly (the output bias of a removed layer) are set to zero."""
    torch.manual_seed(seed)
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
        elif not hasattr(m, "reset_parameters"):
            for name, p in m.named_parameters(recurse=False):
                if p.ndim != 1:
                    raise RuntimeError(f"cannot re-initialise {type(m).__name__}.{name} (shape {tuple(p.shape)}): "
                                       "its module has no reset_parameters")
                with torch.no_grad():
                    p.zero_()
    return module
