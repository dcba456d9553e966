"""`train-base`: train the tiny Stable-Diffusion-shaped teacher and save it as a diffusers pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffusers import AutoencoderKL

from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_dir, write_json
from pruneforget.world.tables import load_images, read_table
from pruneforget.models.tiny import build_pipeline
from pruneforget.train.base import train_teacher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="data directory from prepare-data (uses train.csv: every style)")
    p.add_argument("--vae", required=True, type=Path, help="trained VAE directory from train-vae")
    p.add_argument("--params", required=True, type=parse_params, help="the `base` config section as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, batch order and noise")
    p.add_argument("--out", required=True, type=Path, help="output pipeline directory (StableDiffusionPipeline format)")


def run(args: argparse.Namespace) -> None:
    cfg = args.params
    vae = AutoencoderKL.from_pretrained(args.vae).eval().requires_grad_(False)
    table = read_table(args.data, "train")
    images = load_images(args.data, table)
    torch.manual_seed(args.seed)  # the UNet's initial weights, so a rerun rebuilds the same artifact
    pipe = build_pipeline(cfg, image_size=images.shape[1], vae=vae)
    with resumable_dir(args.out, command_fingerprint(args), drop=("checkpoints",)) as work:
        train_teacher(pipe, images, table["caption"].tolist(), cfg["unet"], args.seed, work)
        pipe.save_pretrained(work)
        # No timings here: artifacts must be byte-identical on a rebuild (Snakemake's benchmark
        # file records the wall time).
        write_json(work / "train_info.json", {"steps": cfg["unet"]["steps"], "pairs": len(table), "seed": args.seed})
    print(f"wrote {args.out}")
