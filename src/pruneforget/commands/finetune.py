"""`finetune`: fine-tune a (pruned) student on D_f, with distillation from the teacher (Eq. 8) or
the plain diffusion loss, from its pruned weights or a random initialisation of its architecture.

Writes a pipeline directory plus metrics.csv, eval.csv, cost.json and run_config.json; resumes
from the checkpoints in `.<out>.work` after an interruption.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DConditionModel

from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_dir, resumable_work_path, write_json
from pruneforget.models.diffusion import pipeline_resolution
from pruneforget.models.expert import is_expert_dir, write_pipeline
from pruneforget.models.load import load_pipeline
from pruneforget.sample import spread_subset
from pruneforget.train.data import StreamedPairs, precomputed_pairs
from pruneforget.train.evaluate import EvalSettings, FinetuneEvaluation
from pruneforget.train.finetune import check_same_base, finetune_objective, loop_settings, reinitialise
from pruneforget.train.loop import make_accelerator, train
from pruneforget.train.objective import constant_schedule
from pruneforget.world.tables import load_images_at, read_split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expert", required=True, type=Path, help="student pipeline directory (a pruned expert, or any pipeline)")
    p.add_argument("--teacher", required=True, type=Path, help="the unpruned base pipeline the expert was pruned from")
    p.add_argument("--data", required=True, type=Path, help="data directory from prepare-data (finetune.csv = D_f, val.csv)")
    p.add_argument("--evaluator", type=Path, default=None,
                   help="tiny world: ground-truth evaluator directory (Frechet distance in its feature space); "
                        "sd21: leave out (FID, see --fid-reference)")
    p.add_argument("--loss", choices=["kd", "diff"], default="kd", help="kd: Eq. 8 with distillation; diff: diffusion loss only")
    p.add_argument("--init", choices=["pruned", "random"], default="pruned",
                   help="pruned: the expert's weights; random: fresh weights of the same architecture (seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, noise, timesteps and random init")
    p.add_argument("--params", required=True, type=parse_params, help="the `finetune` config section as JSON")
    add_eval_argument(p)
    p.add_argument("--out", required=True, type=Path, help="output run directory (a pipeline plus training records)")


def add_eval_argument(p: argparse.ArgumentParser) -> None:
    """`--no-eval`: train without the periodic evaluations (no eval.csv). The workflow passes it
    to every run no curve figure plots (report.specs.evaluated_runs)."""
    p.add_argument("--no-eval", action="store_true", help="no periodic evaluation (eval_every 0): no figure reads it")
    p.add_argument("--fid-reference", type=Path, default=None,
                   help="sd21: FID statistics directory (rule fid_reference_stats) the periodic FID is taken "
                        "against, with its extractor; finetune.fid_reference, when set, wins")


def check_inputs(args: argparse.Namespace) -> None:
    """Everything that can be wrong before any model is loaded, named with its fix."""
    for flag, path in (("--expert", args.expert), ("--teacher", args.teacher), ("--data", args.data)):
        if not path.is_dir():
            raise FileNotFoundError(f"{flag} {path}: no such directory")
    if args.evaluator is not None and not (args.evaluator / "config.json").exists():
        raise FileNotFoundError(f"--evaluator {args.evaluator}: no evaluator there (config.json missing); run train-evaluator")
    if args.evaluator is None and not args.params.get("fid_reference") and (args.data / "world.json").exists() \
            and _world_kind(args.data) == "tiny":
        raise ValueError("the tiny world evaluates fine-tuning with its ground-truth evaluator: pass --evaluator DIR")
    check_same_base(args.expert, args.teacher)


def _world_kind(data_dir: Path) -> str:
    from pruneforget.world.tables import read_world

    return read_world(data_dir).get("kind", "tiny")


def build_evaluation(pipe, args: argparse.Namespace, cfg: dict, size: int) -> FinetuneEvaluation:
    """Held-out val images and captions for the periodic evaluation (see train/evaluate.py)."""
    settings = EvalSettings.from_config(cfg["eval"])
    val = read_split(args.data, "val")
    rows = spread_subset(val, settings.denoising_images) if settings.denoising_images else val
    prompts = spread_subset(val, settings.prompts)["caption"].tolist()
    evaluator = real = None
    if args.evaluator is not None:
        from pruneforget.metrics.evaluator import load_evaluator

        evaluator = load_evaluator(args.evaluator)
        real = load_images_at(args.data, val, size)
    fid_reference = cfg.get("fid_reference") or (None if evaluator is not None else
                                                  str(args.fid_reference or _image_folder(args.data, val)))
    return FinetuneEvaluation(pipe, settings, denoise_images=load_images_at(args.data, rows, size),
                              denoise_captions=rows["caption"].tolist(), prompts=prompts, evaluator=evaluator,
                              real_images=real, fid_reference=fid_reference)


def _image_folder(data_dir: Path, table) -> str:
    """The one folder holding a table's images (COCO's val2017/): clean-fid's reference."""
    folders = {str((data_dir / p).parent) for p in table["image"]}
    if len(folders) != 1:
        raise ValueError(f"val images lie in {len(folders)} folders; set finetune.fid_reference to one folder or a clean-fid stats name")
    return folders.pop()


def load_student(expert: Path, device, random_init_seed: int | None = None):
    """The student pipeline on `device`: VAE and text encoder frozen in eval mode, the UNet trained;
    with a seed, the UNet re-initialised first (Fig. 5's random initialisation of the same architecture)."""
    pipe = load_pipeline(expert)
    pipe.vae.requires_grad_(False).eval()
    pipe.text_encoder.requires_grad_(False).eval()
    if random_init_seed is not None:
        reinitialise(pipe.unet, random_init_seed)
    return pipe.to(device)


def load_teacher(teacher: Path, device) -> UNet2DConditionModel:
    """The unpruned base UNet, the frozen teacher of Eq. 8 (the objectives call it under no_grad)."""
    return UNet2DConditionModel.from_pretrained(teacher, subfolder="unet").to(device)


def finetune_pairs(pipe, data_dir: Path, table, cfg: dict, scheduler, seed: int):
    """D_f as seeded training batches, encoded once (`precompute`) or streamed from disk, and the
    pixel size they are drawn at."""
    size = cfg.get("resolution") or pipeline_resolution(pipe)
    if cfg["precompute"]:
        images = load_images_at(data_dir, table, size)
        return precomputed_pairs(pipe, images, table["caption"].tolist(), scheduler, seed, cfg["caption_dropout"]), size
    return StreamedPairs(pipe, data_dir, table, size, scheduler, seed, cfg["caption_dropout"]), size


def write_run(pipe, work: Path, run_config: dict) -> None:
    """A finished run's directory: the pipeline and its resolved config (resumable_dir drops the
    checkpoints after the final rename: RUN_DROP)."""
    write_pipeline(pipe, work)
    write_json(work / "run_config.json", run_config)


# Work files a training run keeps until its artifact is in place (see resumable_dir).
RUN_DROP = ("checkpoints",)


def run_work_dir(args: argparse.Namespace, accelerator):
    """The run's work directory for every process: the main one checks the fingerprint (starting
    over when the settings changed) and renames it at the end; the others wait for that check
    before they look for checkpoints."""
    if accelerator.is_main_process:
        return resumable_dir(args.out, command_fingerprint(args), drop=RUN_DROP)
    return contextlib.nullcontext(resumable_work_path(args.out))


def run(args: argparse.Namespace) -> None:
    cfg = {**args.params, "eval_every": 0} if args.no_eval else args.params
    check_inputs(args)
    table = read_split(args.data, "finetune", cfg.get("limit"))
    accelerator = make_accelerator(cfg["mixed_precision"], resumable_work_path(args.out),
                                   find_unused_parameters=is_expert_dir(args.expert))
    settings = loop_settings(cfg, accelerator.num_processes)
    print(f"finetune: {len(table)} (image, caption) pairs, loss {args.loss}, init {args.init}, seed {args.seed}, "
          f"{settings.steps} steps of {cfg['batch_size']} ({settings.micro_batch_size} x {accelerator.num_processes} "
          f"process(es) x {settings.gradient_accumulation_steps} accumulation)")

    # Every process trains in the same work directory; only the main one renames it at the end.
    with run_work_dir(args, accelerator) as work:
        accelerator.wait_for_everyone()
        device = accelerator.device
        pipe = load_student(args.expert, device, args.seed if args.init == "random" else None)
        teacher = load_teacher(args.teacher, device) if args.loss == "kd" else None
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        batches, size = finetune_pairs(pipe, args.data, table, cfg, scheduler, args.seed)
        evaluation = build_evaluation(pipe, args, cfg, size) if cfg["eval_every"] and accelerator.is_main_process else None

        objective = finetune_objective(pipe.unet, teacher, batches, scheduler, cfg)
        fingerprint = {"loss": args.loss, "init": args.init, "seed": args.seed, "lr": cfg["lr"], "pairs": len(table)}
        train([objective], constant_schedule("ft"), {"unet": pipe.unet}, settings, work, evaluate=evaluation,
              accelerator=accelerator, fingerprint=fingerprint)

        if accelerator.is_main_process:
            write_run(pipe, work, {
                "expert": str(args.expert), "teacher": str(args.teacher), "data": str(args.data),
                "evaluator": str(args.evaluator) if args.evaluator else None, "loss": args.loss, "init": args.init,
                "seed": args.seed, "params": cfg, "pairs": len(table), "resolution": int(size),
                "num_processes": accelerator.num_processes,
            })
        accelerator.wait_for_everyone()
    accelerator.end_training()
    print(f"wrote {args.out}")

