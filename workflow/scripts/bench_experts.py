"""Parameters, MACs and sampling speed of pipeline directories (experts) against the teacher.

    PYTHONPATH=src python workflow/scripts/bench_experts.py --teacher results/tiny/base \\
        results/tiny/expert-80-magnitude results/tiny/expert-80-random [--batch 16 --steps 25]

MACs follow pruneforget.prune.macs (one UNet evaluation, batch 1, at the UNet's sample_size and
the tokenizer's length). Speed: images per second of a full DDIM sampling run (`--steps` steps,
classifier-free guidance, so two UNet evaluations per step and image) at `--batch` prompts, on
CPU unless `--device` says otherwise, after one warm-up step; threads as torch is told
(OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pruneforget.models.load import load_pipeline, with_scheduler
from pruneforget.models.structure import is_pruned
from pruneforget.prune.macs import count_macs


def measure(model: Path, batch: int, steps: int, guidance: float, device: str) -> dict:
    pipe = with_scheduler(load_pipeline(model, device=device), "ddim")
    unet = pipe.unet
    size = unet.config.sample_size
    macs = sum(count_macs(unet, size, pipe.tokenizer.model_max_length).values())
    prompts = ["a picture"] * batch
    kw = dict(guidance_scale=guidance, output_type="np", height=size * pipe.vae_scale_factor, width=size * pipe.vae_scale_factor)
    with torch.no_grad():
        pipe(prompts[:1], num_inference_steps=1, **kw)  # warm-up
        start = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), **kw)
        seconds = time.perf_counter() - start
    return {
        "model": str(model),
        "pruned": is_pruned(unet),
        "params": sum(p.numel() for p in unet.parameters()),
        "macs": macs,
        "images_per_s": batch / seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path, help="the unpruned pipeline directory")
    p.add_argument("models", nargs="+", type=Path, help="expert (or any) pipeline directories")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    rows = [measure(m, args.batch, args.steps, args.guidance, args.device) for m in [args.teacher, *args.models]]
    ref = rows[0]
    print(f"{'model':<44} {'UNet params':>12} {'MACs':>12} {'images/s':>9}   (ratios to the teacher)")
    for r in rows:
        print(
            f"{r['model']:<44} {r['params'] / 1e6:>10.2f} M {r['macs'] / 1e9:>10.3f} G {r['images_per_s']:>9.2f}"
            f"   params {r['params'] / ref['params']:.3f}  MACs {r['macs'] / ref['macs']:.3f}  speed x{r['images_per_s'] / ref['images_per_s']:.2f}"
        )
    print(f"DDIM {args.steps} steps, batch {args.batch}, guidance {args.guidance}, {args.device}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
