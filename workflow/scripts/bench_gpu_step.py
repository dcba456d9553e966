"""Step time, peak memory and model FLOPs utilisation of the paper's distillation step and bilevel
iteration at SD 2.1's real widths: 512 px, bf16, batch 8 on one GPU (issue 16, item 6).

Runs the project's own `finetune` and `bilevel` commands on the full-width stand-ins
(`make-standins --full-width`: random weights, SD 2.1's shapes) with the paper's settings except
the number of steps, reads the `cost.json` each run writes (seconds per step, steady state;
peak memory), and divides the model FLOPs of a step by its time and the chip's bf16 dense peak.

    python workflow/scripts/bench_gpu_step.py --peak-tflops 989    # H100/H200 SXM bf16 dense
    python workflow/scripts/bench_gpu_step.py --resolution 64 --batch 1 --steps 3   # a CPU try-out

Model FLOPs of a distillation step (Eq. 8) are counted, not estimated from a formula: one UNet
forward of the batch at the step's latent size under torch's FlopCounterMode, times 3 for the
student (forward + backward) plus 1 for the frozen teacher. The VAE encoding of the images and
the text encoder are left out (frozen, and small next to the two UNets); gradient checkpointing's
recomputation is not useful work and is left out too, as MFU conventions do. A bilevel iteration
with K lower steps per upper step is reported per optimizer step of either kind (cost.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]


def unet_forward_flops(unet_dir: Path, batch: int, latent: int, text_len: int = 77) -> int:
    """FLOPs of one UNet forward pass (multiply-adds count 2) at `batch` x 4 x latent x latent."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = UNet2DConditionModel.load_config(unet_dir)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        sample = torch.zeros(batch, unet.config.in_channels, latent, latent)
        text = torch.zeros(batch, text_len, unet.config.cross_attention_dim)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(sample, torch.zeros(batch, dtype=torch.long), text)
    return counter.get_total_flops()


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd[:6]), "...", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standins", type=Path, default=Path("data/standins_full"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/pruneforget-gpu-step"))
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (the first is warm-up)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the chip's bf16 dense peak (H100/H200 SXM: 989)")
    args = parser.parse_args()

    python = [sys.executable, "-m", "pruneforget"]
    if not (args.standins / "standins.json").exists():
        run(python + ["make-standins", "--full-width", "--out", str(args.standins)])
    paper = yaml.safe_load((ROOT / "config" / "sd21.yaml").read_text())
    data = args.work / "data"
    if not data.exists():
        world = dict(paper["world"], root=str(args.standins / "coco2017"), val_captions=16)
        run(python + ["prepare-data", "--params", json.dumps(world), "--out", str(data)])
    base = args.standins / "sd21"
    ft = dict(paper["finetune"], steps=args.steps, batch_size=args.batch, micro_batch_size=args.batch,
              resolution=args.resolution, checkpoint_every=10**6, eval_every=0, log_every=1)
    common = ["--expert", str(base), "--teacher", str(base), "--data", str(data), "--no-eval", "--seed", "0"]
    runs = {"distillation step (Eq. 8)": args.work / "ft", "bilevel iteration": args.work / "bilevel"}
    run(python + ["finetune", *common, "--loss", "kd", "--params", json.dumps(ft), "--out", str(runs["distillation step (Eq. 8)"])])
    bilevel = {k: v for k, v in paper["bilevel"].items() if k != "sweep"}
    bilevel.update(steps=args.steps, k=2, eval_every=0, checkpoint_every=10**6, log_every=1)
    unlearn = {"artists": paper["unlearn"]["artists"], "esd": paper["unlearn"]["esd"]}
    run(python + ["bilevel", *common, "--setting", "artists", "--params", json.dumps(bilevel), "--finetune",
                  json.dumps(ft), "--unlearn", json.dumps(unlearn), "--out", str(runs["bilevel iteration"])])

    latent = args.resolution // 8
    forward = unet_forward_flops(base / "unet", args.batch, latent)
    step_flops = 4 * forward  # student forward + backward (3x) and the teacher's forward
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{device}; {args.resolution} px, batch {args.batch}, bf16; UNet forward {forward / 1e12:.2f} TFLOP")
    print("| step | seconds / step | peak memory (GB) | model TFLOP / step | MFU |")
    print("|---|---|---|---|---|")
    for label, out in runs.items():
        cost = json.loads((out / "cost.json").read_text())
        for name, obj in cost["objectives"].items():
            seconds = obj["seconds_per_step_steady"] or obj["seconds_per_step"]
            # The upper step (partial sampling, then ESD) is not an Eq. 8 step: its time only.
            flops = step_flops if name in ("ft", "lower") else None
            mfu = f"{flops / seconds / (args.peak_tflops * 1e12):.1%}" if flops else "-"
            print(f"| {label}: {name} | {seconds:.3f} | {obj['peak_memory_bytes'] / 1e9:.1f} | "
                  f"{flops / 1e12 if flops else float('nan'):.2f} | {mfu} |")


if __name__ == "__main__":
    main()
