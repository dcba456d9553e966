"""`sample`: generate a prompt set with a model directory (PNGs plus manifest.csv)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_dir
from pruneforget.models.load import load_pipeline, with_scheduler
from pruneforget.sample import read_prompt_set, sample_prompt_set, spread_subset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="pipeline directory (or hub id) to sample from")
    p.add_argument("--prompts", required=True, type=Path, help="CSV with a `prompt` column (optional `evaluation_seed`, labels)")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `sample` config section as JSON (scheduler, steps, guidance, batch_size, seeds_per_prompt)")
    p.add_argument("--limit", type=int, default=None, help="sample N prompts evenly spaced through the set (tables are grouped by label)")
    p.add_argument("--seed", type=int, default=0, help="base seed for prompt sets without `evaluation_seed`")
    p.add_argument("--seeds-per-prompt", type=int, default=None,
                   help="images per prompt, seeds evaluation_seed + 0..N-1 (default: the params' seeds_per_prompt, else 1)")
    p.add_argument("--out", required=True, type=Path, help="output directory")


def run(args: argparse.Namespace) -> None:
    cfg = args.params
    k = args.seeds_per_prompt if args.seeds_per_prompt is not None else cfg.get("seeds_per_prompt", 1)
    if not isinstance(k, int) or k < 1:
        sys.exit(f"sample: seeds per prompt must be an integer >= 1, got {k!r} (--seeds-per-prompt or sample.seeds_per_prompt)")
    try:
        prompts = read_prompt_set(args.prompts)
    except ValueError as exc:
        sys.exit(f"sample: {exc}")
    if args.limit is not None:
        prompts = spread_subset(prompts, args.limit)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else None
    pipe = with_scheduler(load_pipeline(args.model, dtype=dtype, device=device), cfg["scheduler"])
    start = time.perf_counter()
    with resumable_dir(args.out, command_fingerprint(args)) as work:
        sample_prompt_set(
            pipe, prompts, work, guidance=cfg["guidance"], steps=cfg["steps"], scheduler=cfg["scheduler"],
            model_name=str(args.model), batch_size=cfg["batch_size"], base_seed=args.seed, seeds_per_prompt=k,
        )
    seconds = time.perf_counter() - start
    n = len(prompts) * k
    print(f"wrote {n} images ({len(prompts)} prompts x {k} seeds) to {args.out} in {seconds:.1f} s "
          f"({n / seconds:.2f} images/s on {device})")
