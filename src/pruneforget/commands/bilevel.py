"""`bilevel`: fine-tune a pruned expert and remove a setting's concepts in one run (paper
Algorithm 1; `--variant separate`: with vartheta a second copy; `--variant code`: what the
authors' code does), from the expert or, continually, from an already-unlearned model with
concepts added.

Writes a pipeline directory plus metrics.csv (lower and upper steps, the penalty), eval.csv,
cost.json and run_config.json (with the run's concepts, which a continual run keeps); resumes
from the checkpoints in `.<out>.work` after an interruption. Bad settings (K = 0, a negative
lambda, an unknown upper method, a concept the world does not have) fail before any work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusers import DDPMScheduler

from pruneforget.bilevel.algorithm import BilevelInputError, BilevelSettings, train_bilevel
from pruneforget.bilevel.inputs import VARIANTS, check_concepts_in_world, run_concepts, run_params, upper_context
from pruneforget.cli import add_eval_argument, parse_params
from pruneforget.io import command_fingerprint, resumable_work_path
from pruneforget.models.expert import is_expert_dir
from pruneforget.train.finetune import loop_settings
from pruneforget.train.loop import make_accelerator
from pruneforget.train.run import (
    build_evaluation,
    check_inputs,
    finetune_pairs,
    load_student,
    load_teacher,
    run_work_dir,
    write_run,
)
from pruneforget.unlearn.concepts import UnlearnInputError, validate_concepts
from pruneforget.unlearn.esd import method_params
from pruneforget.unlearn.knobs import parse_flag
from pruneforget.unlearn import UPPER_METHODS
from pruneforget.unlearn.prompts import concept_set
from pruneforget.unlearn.runs import BASE_SETTINGS as SETTINGS
from pruneforget.unlearn.uce import check_params as check_uce_params
from pruneforget.world.tables import read_split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expert", required=True, type=Path,
                   help="student pipeline directory: the pruned expert (or, continual, an unlearned model)")
    p.add_argument("--teacher", required=True, type=Path, help="the unpruned base pipeline (distillation and ESD targets)")
    p.add_argument("--data", required=True, type=Path, help="data directory from prepare-data (finetune.csv = D_f, val.csv)")
    p.add_argument("--evaluator", type=Path, default=None, help="tiny world: the ground-truth evaluator (Frechet distance)")
    p.add_argument("--setting", required=True, choices=SETTINGS, help="whose concepts to remove: unlearn.artists or unlearn.global")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise, timesteps and x_t")
    p.add_argument("--params", required=True, type=parse_params, help="the `bilevel` config section as JSON")
    p.add_argument("--finetune", required=True, type=parse_params,
                   help="the `finetune` section as JSON (Eq. 8 weights, batch sizes, precision, evaluation)")
    p.add_argument("--unlearn", required=True, type=parse_params,
                   help="the `unlearn` section as JSON (the setting's concepts and prompt pairs, unlearn.esd)")
    p.add_argument("--variant", choices=VARIANTS, default="paper",
                   help="paper: Algorithm 1 as stated; separate: the same with vartheta a second copy "
                        "(bilevel.mode separate); code: the authors' code (bilevel.code overrides)")
    p.add_argument("--lam", type=float, default=None, help="override lambda (a sweep run)")
    p.add_argument("--k", type=int, default=None, help="override K, lower steps per upper step (a sweep run)")
    p.add_argument("--upper", choices=UPPER_METHODS, default=None,
                   help="override bilevel.upper.method (a run of figures.table_upper)")
    p.add_argument("--knob", type=_knob, default=None, metavar="NAME=VALUE",
                   help="override one bilevel value after the variant's overrides (a strength knob of "
                        "unlearn/knobs.py: lam, K or ulr; a frontier run)")
    p.add_argument("--add-concept", action="append", default=None, metavar="NAME",
                   help="continual: remove NAME too, keeping the concepts the --expert model was unlearned for (repeatable)")
    add_eval_argument(p)
    p.add_argument("--out", required=True, type=Path, help="output run directory (a pipeline plus training records)")


def _knob(text: str) -> tuple[str, int | float]:
    try:
        return parse_flag(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def resolve(args: argparse.Namespace):
    """Every setting of the run, checked before any model is loaded."""
    cfg = run_params(args.params, args.variant, args.lam, args.k, args.upper, args.knob)
    settings = BilevelSettings.from_config(cfg)
    if args.setting not in args.unlearn or "esd" not in args.unlearn:
        raise BilevelInputError(f"--unlearn needs the {args.setting!r} and 'esd' entries of the unlearn section")
    if settings.upper_method == "uce":
        if "uce" not in args.unlearn:
            raise BilevelInputError("bilevel.upper.method 'uce' needs the 'uce' entry of the unlearn section in --unlearn")
        check_uce_params(args.unlearn["uce"])
    setting = dict(args.unlearn[args.setting])
    setting["concepts"] = run_concepts(setting, args.expert, args.add_concept)
    check_concepts_in_world(setting["concepts"], args.data)
    concepts = concept_set(setting, args.data)
    esd = method_params(args.unlearn["esd"], "esd", args.setting)
    # esdu's parameter set: bilevel.upper's, or (null) the two-stage ESD's, recorded resolved.
    cfg["upper"] = {**cfg["upper"], "noxattn_form": cfg["upper"].get("noxattn_form") or esd["noxattn_form"]}
    return cfg, settings, concepts, esd


def run(args: argparse.Namespace) -> None:
    ft_cfg = dict(args.finetune)
    try:
        cfg, settings, concepts, esd = resolve(args)
        check_inputs(args.expert, args.teacher, args.data, args.evaluator, ft_cfg)
    except (BilevelInputError, UnlearnInputError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"bilevel: {exc}") from exc
    # The loop's own settings: fine-tuning's batch, precision and evaluation, bilevel's length and cadence.
    ft_cfg.update({k: cfg[k] for k in ("eval_every", "checkpoint_every", "log_every")})
    ft_cfg["steps"] = settings.loop_steps  # lower and upper steps together, as bilevel.counting counts them
    if args.no_eval:
        ft_cfg["eval_every"] = 0
    table = read_split(args.data, "finetune", ft_cfg.get("limit"))
    accelerator = make_accelerator(ft_cfg["mixed_precision"], resumable_work_path(args.out),
                                   find_unused_parameters=is_expert_dir(args.expert))
    loop = loop_settings(ft_cfg, accelerator.num_processes)
    print(f"bilevel {args.variant}: remove {list(concepts.erase)} ({args.setting}) while fine-tuning {args.expert} "
          f"on {len(table)} pairs; seed {args.seed}")

    main = accelerator.is_main_process
    with run_work_dir(args.out, command_fingerprint(args), accelerator) as work:
        accelerator.wait_for_everyone()
        device = accelerator.device
        pipe = load_student(args.expert, device)
        try:
            validate_concepts(pipe, concepts)
        except UnlearnInputError as exc:
            raise SystemExit(f"bilevel: {exc}") from exc
        teacher = load_teacher(args.teacher, device)
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        ft_batches, size = finetune_pairs(pipe, args.data, table, ft_cfg, scheduler, args.seed)
        ctx = upper_context(pipe, teacher, concepts, esd, cfg["upper"], args.data, args.seed, args.unlearn.get("uce"))
        evaluation = build_evaluation(pipe, args.data, args.evaluator, args.fid_reference, ft_cfg, size) if loop.eval_every and main else None
        fingerprint = {"variant": args.variant, "seed": args.seed, "concepts": list(concepts.erase), "pairs": len(table)}
        train_bilevel(settings, pipe.unet, teacher, ctx, cfg["upper"], ft_batches, scheduler, ft_cfg, loop, work,
                      evaluate=evaluation, accelerator=accelerator, fingerprint=fingerprint)

        if main:
            write_run(pipe, work, {
                "expert": str(args.expert), "teacher": str(args.teacher), "data": str(args.data),
                "evaluator": str(args.evaluator) if args.evaluator else None, "setting": args.setting,
                "variant": args.variant, "seed": args.seed, "concepts": list(concepts.erase),
                "added_concepts": args.add_concept or [], "params": cfg, "esd": esd, "finetune": ft_cfg,
                "pairs": len(table), "resolution": int(size), "num_processes": accelerator.num_processes,
            })
        accelerator.wait_for_everyone()
    accelerator.end_training()
    print(f"wrote {args.out}")
