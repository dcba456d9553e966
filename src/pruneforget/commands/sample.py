"""`sample`: generate prompt sets with a model directory (PNGs plus manifest.csv per set).

`--prompts A.csv --out A --prompts B.csv --out B` samples several sets in one process: the model
is loaded once (the tiny world's bundle of evaluation sets, `sample.bundle`). Each set is written,
resumed and fingerprinted on its own, exactly as if it had been sampled alone."""

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
    p.add_argument("--prompts", required=True, type=Path, action="append",
                   help="CSV with a `prompt` column (optional `evaluation_seed`, labels); repeat with --out for several sets")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `sample` config section as JSON (scheduler, steps, guidance, batch_size, seeds_per_prompt)")
    p.add_argument("--limit", type=int, default=None, help="sample N prompts evenly spaced through the set (tables are grouped by label)")
    p.add_argument("--keep-prompt", action="append", default=[], metavar="PROMPT",
                   help="with --limit, sample PROMPT too (a prompt a grid figure shows; repeatable; must be in the set)")
    p.add_argument("--seed", type=int, default=0, help="base seed for prompt sets without `evaluation_seed`")
    p.add_argument("--seeds-per-prompt", type=int, default=None,
                   help="images per prompt, seeds evaluation_seed + 0..N-1 (default: the params' seeds_per_prompt, else 1)")
    p.add_argument("--out", required=True, type=Path, action="append", help="output directory (one per --prompts, in order)")


def run(args: argparse.Namespace) -> None:
    cfg = args.params
    k = args.seeds_per_prompt if args.seeds_per_prompt is not None else cfg.get("seeds_per_prompt", 1)
    if not isinstance(k, int) or k < 1:
        sys.exit(f"sample: seeds per prompt must be an integer >= 1, got {k!r} (--seeds-per-prompt or sample.seeds_per_prompt)")
    if len(args.prompts) != len(args.out):
        sys.exit(f"sample: {len(args.prompts)} --prompts but {len(args.out)} --out; give one output directory per prompt set")
    sets, keeps = [], []
    for path in args.prompts:  # every set checked before the model is loaded
        try:
            prompts = read_prompt_set(path)
        except ValueError as exc:
            sys.exit(f"sample: {exc}")
        # A bundle's --keep-prompt flags are the union of its sets' grid prompts: each set keeps its own.
        keep = [p for p in args.keep_prompt if p in set(prompts["prompt"])]
        keeps.append(keep)
        sets.append(spread_subset(prompts, args.limit, keep) if args.limit is not None else prompts)
    for prompt in args.keep_prompt:
        if not any(prompt in kept for kept in keeps):
            where = args.prompts[0] if len(args.prompts) == 1 else "none of " + ", ".join(map(str, args.prompts))
            sys.exit(f"sample: {where} has no prompt {prompt!r}, which a figure shows (--keep-prompt); "
                     "fix the figure's column in the config or the prompt file")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else None
    pipe = with_scheduler(load_pipeline(args.model, dtype=dtype, device=device), cfg["scheduler"])
    for path, out, prompts, keep in zip(args.prompts, args.out, sets, keeps):
        start = time.perf_counter()
        # The fingerprint of this set alone: the same as a job sampling only it (its own kept prompts).
        one = argparse.Namespace(**{**vars(args), "prompts": path, "out": out, "keep_prompt": keep})
        with resumable_dir(out, command_fingerprint(one)) as work:
            sample_prompt_set(
                pipe, prompts, work, guidance=cfg["guidance"], steps=cfg["steps"], scheduler=cfg["scheduler"],
                model_name=str(args.model), batch_size=cfg["batch_size"], base_seed=args.seed, seeds_per_prompt=k,
            )
        seconds = time.perf_counter() - start
        n = len(prompts) * k
        print(f"wrote {n} images ({len(prompts)} prompts x {k} seeds) to {out} in {seconds:.1f} s "
              f"({n / seconds:.2f} images/s on {device})")
