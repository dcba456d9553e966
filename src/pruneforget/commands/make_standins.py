"""`make-standins`: build the sd21 smoke run's local stand-ins for SD 2.1, COCO, CLIP, CSD, mpnet
and the NSFW prompt files (random weights, seeded; see `pruneforget.standins`).

config/sd21_smoke.yaml names the paths this writes under `--out` (data/standins by default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pruneforget.io import atomic_dir, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("data/standins"), help="directory to write (replaced whole)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random weight, image and prompt")
    p.add_argument("--prompts", type=Path, default=Path("config/prompts"),
                   help="the shipped prompt files, whose words the stand-in CLIP tokenizer learns too")
    p.add_argument("--full-width", action="store_true",
                   help="SD 2.1 at its real widths and depths (865,910,724-parameter UNet; memory benchmarks)")


def _shipped_text(prompts_dir: Path) -> list[str]:
    """Prompts and words of the shipped artist CSVs and word lists."""
    text = []
    for path in sorted(prompts_dir.glob("*.csv")):
        text += pd.read_csv(path)["prompt"].astype(str).tolist()
    for path in sorted(prompts_dir.glob("*.txt")):
        text += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return text


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from pruneforget.standins.coco import build_coco_copy
    from pruneforget.standins.encoders import build_clip, build_csd, build_mpnet
    from pruneforget.standins.prompt_files import build_prompt_files
    from pruneforget.standins.sd21 import build_sd21_pipeline

    if not args.prompts.is_dir():
        raise SystemExit(f"make-standins: --prompts {args.prompts} does not exist; run from the repository root")
    with atomic_dir(args.out) as tmp:
        steps = tqdm(total=6, desc="stand-ins", unit="part")
        corpus = build_coco_copy(tmp / "coco2017", seed=args.seed)
        steps.update()
        files = build_prompt_files(tmp / "prompts", seed=args.seed)
        corpus += pd.read_csv(files["i2p"])["prompt"].tolist()[:200] + _shipped_text(args.prompts)
        steps.update()
        build_sd21_pipeline(tmp / "sd21", corpus, shrink=not args.full_width, seed=args.seed)
        steps.update()
        build_clip(tmp / "clip", tmp / "sd21" / "tokenizer", seed=args.seed)
        steps.update()
        build_csd(tmp / "csd", tmp / "sd21" / "tokenizer", seed=args.seed)
        steps.update()
        build_mpnet(tmp / "mpnet", seed=args.seed)
        steps.update()
        steps.close()
        write_json(tmp / "standins.json", {"seed": args.seed, "full_width": args.full_width,
                                           "parts": ["coco2017", "prompts", "sd21", "clip", "csd", "mpnet"]})
    print(f"make-standins: wrote {args.out}")
