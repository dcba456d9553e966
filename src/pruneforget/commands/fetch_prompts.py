"""`fetch-prompts`: download one NSFW prompt set (I2P, MMA-Diffusion, Ring-A-Bell), verify, normalise.

The first successful download of a set records its SHA-256, rows and columns in the lock file
(`prompt_sets.lock`, committed beside the config); later downloads must match it or nothing is
written. Sources and why: `pruneforget.world.nsfw_prompts`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params
from pruneforget.io import atomic_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="prompt set: i2p, mma or ringabell")
    p.add_argument("--params", required=True, type=parse_params, help="the `prompt_sets` config section as JSON (sets, seed, lock, urls)")
    p.add_argument("--out", required=True, type=Path, help="normalised prompt CSV to write (prompt, evaluation_seed, categories, source_index)")


def run(args: argparse.Namespace) -> None:
    from pruneforget.world.nsfw_prompts import (
        SOURCES,
        PromptSetError,
        fetch_prompt_set,
        read_lock,
        record_lock,
        source_for,
    )

    cfg = args.params
    if args.name not in SOURCES:
        sys.exit(f"fetch-prompts: unknown prompt set {args.name!r}; known: {sorted(SOURCES)}")
    if args.name not in cfg.get("sets", []):
        sys.exit(f"fetch-prompts: {args.name!r} is not in prompt_sets.sets ({cfg.get('sets')}); add it there first")
    lock_path = Path(cfg["lock"])
    try:
        table, entry = fetch_prompt_set(source_for(args.name, cfg.get("urls")), read_lock(lock_path), int(cfg.get("seed", 0)))
    except (PromptSetError, ImportError, OSError) as exc:
        sys.exit(f"fetch-prompts: {exc}")
    with atomic_file(args.out) as tmp:
        table.to_csv(tmp, index=False)
    if read_lock(lock_path).get(args.name) != entry:
        record_lock(lock_path, args.name, entry)
        print(f"fetch-prompts: recorded {args.name} (sha256 {entry['sha256']}, {entry['rows']} rows) in {lock_path}; commit it")
    print(f"fetch-prompts: wrote {args.out} ({len(table)} prompts)")
