"""`fetch-base`: bring a pretrained pipeline (SD 2.1 hub id or a local copy) into the workflow."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneforget.cli import parse_params
from pruneforget.io import atomic_dir
from pruneforget.models.load import load_pipeline


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", required=True, type=parse_params, help="the `base` config section as JSON (uses base.pretrained)")
    p.add_argument("--out", required=True, type=Path, help="output pipeline directory")


def run(args: argparse.Namespace) -> None:
    source = args.params.get("pretrained")
    if not source:
        raise SystemExit("base.pretrained is empty: set it to a hub id (stabilityai/stable-diffusion-2-1) or a local pipeline directory")
    pipe = load_pipeline(source)
    with atomic_dir(args.out) as tmp:
        # A copy (not a symlink) so that DVC hashes the weights the workflow actually used.
        pipe.save_pretrained(tmp, safe_serialization=True)
    print(f"wrote {args.out} from {source}")
