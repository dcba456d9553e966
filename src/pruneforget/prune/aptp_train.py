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

Loss per step (`aptp_losses.aptp_objective`): DDPM (Min-SNR) + w_res * |log(mean r / p')|
+ w_con * contrastive + w_out * output KD + w_block * block KD.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from tqdm.auto import trange

from pruneforget.models.diffusion import encode_captions
from pruneforget.prune.aptp_data import CaptionCache, draw_batch
from pruneforget.prune.aptp_losses import aptp_objective, contrastive_loss, prunable_target, resource_loss
from pruneforget.prune.gates import gated
from pruneforget.prune.macs import MacTable
from pruneforget.prune.router import PromptEncoder, Router
from pruneforget.train.checkpoint import load_checkpoint, save_checkpoint
from pruneforget.train.features import BlockFeatures
from pruneforget.train.losses import diffusion_loss, feature_kd, output_kd
from pruneforget.train.metrics_log import CsvLog

TERMS = ["diffusion", "resource", "contrastive", "output_kd", "block_kd"]


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
        "diffusion": diffusion_loss(student, batch["target"], t, scheduler, cfg["snr_gamma"]),
        "resource": resource_loss(ratios, target),
        "contrastive": contrastive_loss(router.arch_embedding(vectors), prompt_embeddings, cfg["contrastive_temperature"]),
        "output_kd": output_kd(teacher, student),
        "block_kd": feature_kd(teacher_feats, student_feats),
    }
    return terms, ratios.detach()


def train_aptp(
    pipe, router: Router, prompt_encoder: PromptEncoder, groups, macs: MacTable, table: pd.DataFrame,
    data_dir: str | Path, cfg: dict, budget: float, work_dir: Path,
) -> Router:
    """Train `router` for `cfg['steps']` steps against `pipe.unet` (frozen); resumable from `work_dir`.

    Writes `metrics.csv` (loss terms, mean MAC ratios, lr) and `checkpoint.pt` into `work_dir`.
    """
    target = prunable_target(budget, macs.full, macs.prunable_full)
    generator = torch.Generator().manual_seed(cfg["seed"])
    unet = pipe.unet.eval().requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    device = unet.device
    router.to(device).train()
    optimizer = torch.optim.AdamW(router.parameters(), lr=learning_rate(cfg), weight_decay=cfg["weight_decay"])
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg["warmup_steps"])
    ckpt = work_dir / "checkpoint.pt"
    modules = {"router": router, "optimizer": optimizer, "lr_schedule": lr_schedule}
    start = load_checkpoint(ckpt, modules, generator) if ckpt.exists() else 0
    log = CsvLog(work_dir / "metrics.csv", ["loss", *TERMS, "prunable_ratio", "mac_ratio", "pretrain", "noise", "lr"], resume_step=start)
    fixed = (macs.full - macs.prunable_full) / macs.full
    text_cache = CaptionCache(lambda c: encode_captions(pipe, c), cfg["caption_cache"])
    prompt_cache = CaptionCache(prompt_encoder, cfg["caption_cache"])

    bar = trange(start, cfg["steps"], desc=f"prune-aptp (budget {budget})", initial=start, total=cfg["steps"])
    for step in bar:
        pretrain = step < cfg["pretrain_steps"]
        batch = draw_batch(pipe, scheduler, table, data_dir, cfg["resolution"], cfg["batch_size"], generator, text_cache)
        prompts = prompt_cache(batch["captions"]).to(device)
        noise = noise_schedule(step, cfg)
        terms, ratios = aptp_step_losses(unet, router, groups, macs, batch, prompts, scheduler, cfg, target, pretrain,
                                         generator, noise)
        loss = aptp_objective(terms, cfg["weights"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(router.parameters(), cfg["max_grad_norm"])
        optimizer.step()
        lr_schedule.step()
        r = ratios.mean().item()
        bar.set_postfix(loss=f"{loss.item():.3f}", macs=f"{fixed + (1 - fixed) * r:.3f}")
        if (step + 1) % cfg["log_every"] == 0 or step + 1 == cfg["steps"]:
            log.log(step + 1, loss=loss.item(), **{k: v.item() for k, v in terms.items()}, prunable_ratio=r,
                    mac_ratio=fixed + (1 - fixed) * r, pretrain=int(pretrain), noise=noise, lr=lr_schedule.get_last_lr()[0])
        if (step + 1) % cfg["checkpoint_every"] == 0:
            save_checkpoint(ckpt, step + 1, modules, generator)
    return router.eval()
