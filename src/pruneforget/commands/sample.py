"""`sample`: generate a prompt set with a model directory (PNGs plus manifest.csv)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from pruneforget.cli import parse_params
from pruneforget.io import resumable_dir
from pruneforget.models.load import load_pipeline, with_scheduler
from pruneforget.sample import sample_prompt_set, spread_subset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="pipeline directory (or hub id) to sample from")
    p.add_argument("--prompts", required=True, type=Path, help="CSV with a `prompt` column (optional `evaluation_seed`, labels)")
    p.add_argument("--params", required=True, type=parse_params, help="the `sample` config section as JSON (scheduler, steps, guidance, batch_size)")
    p.add_argument("--limit", type=int, default=None, help="sample N prompts evenly spaced through the set (tables are grouped by label)")
    p.add_argument("--seed", type=int, default=0, help="base seed for prompt sets without `evaluation_seed`")
    p.add_argument("--out", required=True, type=Path, help="output directory")


def run(args: argparse.Namespace) -> None:
    cfg = args.params
    prompts = pd.read_csv(args.prompts)
    if args.limit is not None:
        prompts = spread_subset(prompts, args.limit)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else None
    pipe = with_scheduler(load_pipeline(args.model, dtype=dtype, device=device), cfg["scheduler"])
    start = time.perf_counter()
    with resumable_dir(args.out) as work:
        sample_prompt_set(
            pipe, prompts, work, guidance=cfg["guidance"], steps=cfg["steps"], scheduler=cfg["scheduler"],
            model_name=str(args.model), batch_size=cfg["batch_size"], base_seed=args.seed,
        )
    seconds = time.perf_counter() - start
    print(f"wrote {len(prompts)} images to {args.out} in {seconds:.1f} s ({len(prompts) / seconds:.2f} images/s on {device})")
