"""Fine-tuning step throughput on this machine: a tiny-teacher-shaped student (random weights; UNet
32-64-64, 2 layers per block, heads 2/4/4, 8 norm groups, 16x16 latents, cross-attention 384,
batch 32) through the training loop, with (kd) or without (diff) distillation, for ~SECONDS.

    OMP_NUM_THREADS=2 PYTHONPATH=src python workflow/scripts/bench_finetune_step.py kd 30
"""
import sys, time, tempfile
from pathlib import Path
import torch
from diffusers import DDPMScheduler
from pruneforget.models.tiny import build_unet, build_scheduler
from pruneforget.train.batches import LatentTextPairs
from pruneforget.train.finetune import finetune_objective
from pruneforget.train.loop import train
from pruneforget.train.objective import LoopSettings, constant_schedule

kd = sys.argv[1] == "kd"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
cfg_unet = {"block_out_channels": [32, 64, 64], "layers_per_block": 2, "attention_heads": [2, 4, 4], "norm_num_groups": 8}
torch.manual_seed(0)
student = build_unet(cfg_unet, 16, 4, 384)
teacher = build_unet(cfg_unet, 16, 4, 384) if kd else None
sched = DDPMScheduler.from_config(build_scheduler("v_prediction").config)
n = 512
pairs = LatentTextPairs(torch.randn(n, 4, 16, 16), torch.full((n, 4, 16, 16), 0.1), torch.arange(n) % 64,
                        torch.randn(65, 32, 384), 64, 1.0, sched, seed=0, caption_dropout=0.1)
cfg = {"lr": 1e-4, "warmup_steps": 0, "lr_schedule": "constant_with_warmup", "betas": [0.9, 0.999], "weight_decay": 0.0,
       "snr_gamma": 5.0, "loss_weights": {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}}
obj = finetune_objective(student, teacher, pairs, sched, cfg)
# warm-up 2 steps, then time
times = []
secs = []
def hook(step, rec):
    secs.append(rec["seconds"])
    times.append(time.perf_counter())
    if times[-1] - times[0] > seconds:
        raise StopIteration
with tempfile.TemporaryDirectory() as d:
    try:
        train([obj], constant_schedule("ft"), {"unet": student}, LoopSettings(steps=10**6, micro_batch_size=32, progress=False, log_every=0), Path(d), on_step_end=hook)
    except StopIteration:
        pass
steps = len(times) - 1
dt = times[-1] - times[0]
import statistics
print("per-step seconds:", " ".join(f"{x:.2f}" for x in secs))
med = statistics.median(secs[3:]) if len(secs) > 4 else float("nan")
print(f"median after 3 warm-up steps: {med:.2f} s/step = {1/med:.2f} steps/s, {32/med:.1f} images/s")
print(f"{'kd' if kd else 'diff'}: {steps} steps in {dt:.1f} s: {steps/dt:.2f} steps/s, {32*steps/dt:.1f} images/s, "
      f"{sum(p.numel() for p in student.parameters())/1e6:.2f} M params")
