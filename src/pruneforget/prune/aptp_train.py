"""APTP pruning run: learn the router (architecture predictor + N codes) on a frozen teacher UNet.

PAPER_FACTS section 2. Each step draws (image, caption) pairs, routes every prompt to an
architecture, samples its straight-through Gumbel-sigmoid gates and runs the teacher's UNet
under them (the gated student); the ungated UNet gives the distillation targets. Only the
router learns:

- the first `pretrain_steps` steps gate each prompt with the predictor's own architecture, so the
  predictor learns what the losses want before codes exist to copy (the authors' pretraining);
- afterwards each prompt is gated with the code Sinkhorn assigns it (balanced over the batch), so
  the codes learn; the predictor keeps learning through the contrastive loss, which makes
  similar prompts predict similar architectures and so reach the same code.

Loss per step (`aptp_losses.aptp_objective`): DDPM (Min-SNR, `snr_form`) + w_res * |log(mean r / p')|
+ w_con * contrastive (`contrastive`: bce or cross_entropy) + w_out * output KD + w_block * block KD.

One objective ("aptp") of the training loop (train/loop.py): accelerate checkpoints, DDP, mixed
precision, gradient accumulation and the cost record, as fine-tuning has them. Under DDP or
accumulation, Sinkhorn balances each micro-batch over the codes (`micro_batch_size` >= experts).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from pruneforget.models.diffusion import encode_captions
from pruneforget.prune.aptp_data import AptpBatches, CaptionCache
from pruneforget.prune.aptp_losses import aptp_objective, contrastive_loss, prunable_target, resource_loss
from pruneforget.prune.gates import gated
from pruneforget.prune.macs import MacTable
from pruneforget.prune.router import PromptEncoder, Router
from pruneforget.train.features import BlockFeatures
from pruneforget.train.finetune import accumulation_steps
from pruneforget.train.loop import make_accelerator, train
from pruneforget.train.losses import diffusion_loss, feature_kd, output_kd
from pruneforget.train.objective import LoopSettings, Objective, constant_schedule

TERMS = ["diffusion", "resource", "contrastive", "output_kd", "block_kd"]
# Logged beside the terms (metrics.csv): the MAC ratios the gates gave, and the schedule's state.
MONITORS = ["prunable_ratio", "mac_ratio", "pretrain", "noise"]


def learning_rate(cfg: dict) -> float:
    """The peak learning rate: `lr`, times sqrt(batch size) when `scale_lr` (the authors' rule)."""
    return cfg["lr"] * (math.sqrt(cfg["batch_size"]) if cfg["scale_lr"] else 1.0)


def noise_schedule(step: int, cfg: dict) -> float:
    """Scale of the gates' Gumbel noise at `step`: 1 while the predictor pretrains; then, with
    `anneal_noise`, falling linearly to 0 at the last step (else 1 throughout).

    Why: the hard Gumbel-sigmoid gate is 1[l + noise >= 0], so under full noise a mean ratio r
    can be met by gates that are each open with probability r; the noise-free expert of a code
    then keeps every gate with l >= 0 and lands far above the budget (tiny world, 300 steps:
    every code at 0.996-1.0 of the MACs while the trained ratio was 0.80). Annealing the noise
    makes the last steps train the noise-free gates that `code_masks` extracts. The paper does
    not say how a code's expert is derived from its noisy gates; this is our choice.
    """
    pretrain = cfg["pretrain_steps"]
    if step < pretrain or not cfg["anneal_noise"]:
        return 1.0
    return max(0.0, 1.0 - (step - pretrain + 1) / max(1, cfg["steps"] - pretrain))


def aptp_step_losses(
    unet, router: Router, groups, macs: MacTable, batch: dict, prompt_embeddings: torch.Tensor,
    scheduler, cfg: dict, target: float, pretrain: bool, generator: torch.Generator | None = None,
    noise_scale: float = 1.0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The loss terms of one APTP step and the per-sample prunable MAC ratios r (B,).

    `pretrain`: gate with the predictor's architectures instead of the Sinkhorn-assigned codes.
    `noise_scale`: scale of the gates' Gumbel noise (see `noise_schedule`).
    """
    vectors = router.predict(prompt_embeddings)
    if pretrain:
        chosen = vectors
    else:
        index = router.assign(prompt_embeddings, cfg["sinkhorn_epsilon"], cfg["sinkhorn_iterations"])
        chosen = router.codes[index]
    masks = router.sample_masks(chosen, generator=generator, noise_scale=noise_scale)
    noisy, t, text = batch["noisy"], batch["timesteps"], batch["text"]
    with torch.no_grad(), BlockFeatures(unet) as feats:
        teacher = unet(noisy, t, text).sample
        teacher_feats = feats.pop()
    with gated(unet, masks, groups), BlockFeatures(unet) as feats:
        student = unet(noisy, t, text).sample
        student_feats = feats.pop()
    ratios = macs.prunable_ratio(masks).float()
    terms = {
        "diffusion": diffusion_loss(student, batch["target"], t, scheduler, cfg["snr_gamma"], cfg["snr_form"]),
        "resource": resource_loss(ratios, target),
        "contrastive": contrastive_loss(router.arch_embedding(vectors), prompt_embeddings, cfg["contrastive_temperature"],
                                        cfg["contrastive"]),
        "output_kd": output_kd(teacher, student),
        "block_kd": feature_kd(teacher_feats, student_feats),
    }
    return terms, ratios.detach()


class AptpStep(nn.Module):
    """One APTP step's loss terms as the forward of a module that holds only the router, so DDP
    can wrap it (DDP hooks `forward`) and checkpoints hold the router alone. The frozen teacher
    UNet is kept outside the module's parameters and state."""

    def __init__(self, router: Router, unet, groups, macs: MacTable, scheduler, cfg: dict, target: float):
        super().__init__()
        self.router = router
        self.__dict__["unet"] = unet  # not a submodule: frozen, never saved or synchronised
        self.groups, self.macs, self.scheduler, self.cfg, self.target = groups, macs, scheduler, cfg, target
        self.fixed = (macs.full - macs.prunable_full) / macs.full

    def forward(self, batch: dict) -> dict[str, Tensor]:
        step = batch["step"]
        pretrain = step < self.cfg["pretrain_steps"]
        noise = noise_schedule(step, self.cfg)
        generator = torch.Generator().manual_seed(batch["gate_seed"])
        terms, ratios = aptp_step_losses(self.unet, self.router, self.groups, self.macs, batch, batch["prompts"],
                                         self.scheduler, self.cfg, self.target, pretrain, generator, noise)
        r = ratios.mean()
        return {"total": aptp_objective(terms, self.cfg["weights"]), **terms, "prunable_ratio": r,
                "mac_ratio": self.fixed + (1 - self.fixed) * r, "pretrain": torch.tensor(float(pretrain)),
                "noise": torch.tensor(float(noise))}


def train_aptp(
    pipe, router: Router, prompt_encoder: PromptEncoder, groups, macs: MacTable, table: pd.DataFrame,
    data_dir: str | Path, cfg: dict, budget: float, work_dir: Path, accelerator=None, progress: bool = True,
) -> Router:
    """Train `router` for `cfg['steps']` steps against `pipe.unet` (frozen); resumable from the
    checkpoints in `work_dir`, which also gets metrics.csv (loss terms, MAC ratios, lr) and cost.json."""
    target = prunable_target(budget, macs.full, macs.prunable_full)
    accelerator = accelerator or make_accelerator(cfg.get("mixed_precision", "no"), work_dir)
    pipe.unet.eval().requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    router.to(accelerator.device)
    text_cache = CaptionCache(lambda c: encode_captions(pipe, c), cfg["caption_cache"])
    prompt_cache = CaptionCache(prompt_encoder, cfg["caption_cache"])
    batches = AptpBatches(pipe, scheduler, table, data_dir, cfg["resolution"], cfg["seed"], text_cache, prompt_cache)
    step = AptpStep(router, pipe.unet, groups, macs, scheduler, cfg, target)
    objective = Objective(name="aptp", params=list(router.parameters()), loss=lambda models, batch: models["aptp"](batch),
                          batches=batches, lr=learning_rate(cfg), warmup_steps=cfg["warmup_steps"],
                          weight_decay=cfg["weight_decay"], max_grad_norm=cfg["max_grad_norm"],
                          terms=("total", *TERMS, *MONITORS))
    micro = cfg.get("micro_batch_size", cfg["batch_size"])
    settings = LoopSettings(steps=cfg["steps"], micro_batch_size=micro,
                            gradient_accumulation_steps=accumulation_steps(cfg["batch_size"], micro, accelerator.num_processes),
                            mixed_precision=cfg.get("mixed_precision", "no"), checkpoint_every=cfg["checkpoint_every"],
                            log_every=cfg["log_every"], progress=progress)
    train([objective], constant_schedule("aptp"), {"aptp": step}, settings, work_dir, accelerator=accelerator)
    return router.eval()
