"""`train-vae`: train the tiny world's AutoencoderKL on the base set's images."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_dir, write_json
from pruneforget.world.tables import load_images, read_table
from pruneforget.models.tiny import build_vae
from pruneforget.train.vae import train_vae


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="data directory from prepare-data (uses train.csv)")
    p.add_argument("--params", required=True, type=parse_params, help="the `base` config section as JSON (uses base.vae)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and batch order")
    p.add_argument("--out", required=True, type=Path, help="output directory (diffusers AutoencoderKL)")


def run(args: argparse.Namespace) -> None:
    cfg = args.params["vae"]
    table = read_table(args.data, "train")
    images = load_images(args.data, table)
    # Checkpoints live in the work directory, so a crashed run resumes where it stopped.
    torch.manual_seed(args.seed)  # the initial weights, so a rerun rebuilds the same artifact
    with resumable_dir(args.out, command_fingerprint(args), drop=("checkpoints",)) as work:
        vae = train_vae(build_vae(cfg, image_size=images.shape[1]), images, cfg, args.seed, work)
        vae.save_pretrained(work)
        write_json(work / "train_info.json", {"steps": cfg["steps"], "images": len(images), "scaling_factor": vae.config.scaling_factor})
    print(f"wrote {args.out}")
