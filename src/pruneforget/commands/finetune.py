"""`finetune`: fine-tune a (pruned) student on D_f, with distillation from the teacher (Eq. 8) or
the plain diffusion loss, from its pruned weights or a random initialisation of its architecture.

Writes a pipeline directory plus metrics.csv, eval.csv, cost.json and run_config.json; resumes
from the checkpoints in `.<out>.work` after an interruption.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusers import DDPMScheduler

from pruneforget.cli import add_eval_argument, parse_params
from pruneforget.io import command_fingerprint, resumable_work_path
from pruneforget.models.expert import is_expert_dir
from pruneforget.train.finetune import finetune_objective, loop_settings
from pruneforget.train.loop import make_accelerator, train
from pruneforget.train.objective import constant_schedule
from pruneforget.train.run import (
    build_evaluation,
    check_inputs,
    finetune_pairs,
    load_student,
    load_teacher,
    run_work_dir,
    write_run,
)
from pruneforget.world.tables import read_split


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


def run(args: argparse.Namespace) -> None:
    cfg = {**args.params, "eval_every": 0} if args.no_eval else args.params
    check_inputs(args.expert, args.teacher, args.data, args.evaluator, cfg)
    table = read_split(args.data, "finetune", cfg.get("limit"))
    accelerator = make_accelerator(cfg["mixed_precision"], resumable_work_path(args.out),
                                   find_unused_parameters=is_expert_dir(args.expert))
    settings = loop_settings(cfg, accelerator.num_processes)
    print(f"finetune: {len(table)} (image, caption) pairs, loss {args.loss}, init {args.init}, seed {args.seed}, "
          f"{settings.steps} steps of {cfg['batch_size']} ({settings.micro_batch_size} x {accelerator.num_processes} "
          f"process(es) x {settings.gradient_accumulation_steps} accumulation)")

    # Every process trains in the same work directory; only the main one renames it at the end.
    with run_work_dir(args.out, command_fingerprint(args), accelerator) as work:
        accelerator.wait_for_everyone()
        device = accelerator.device
        pipe = load_student(args.expert, device, args.seed if args.init == "random" else None)
        teacher = load_teacher(args.teacher, device) if args.loss == "kd" else None
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        batches, size = finetune_pairs(pipe, args.data, table, cfg, scheduler, args.seed)
        evaluation = build_evaluation(pipe, args.data, args.evaluator, args.fid_reference, cfg, size) if cfg["eval_every"] and accelerator.is_main_process else None

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

