"""A toy run of the training loop for tests/test_train_ddp.py, launched with `torchrun` (DDP on
CPU, gloo) or plain python: python ddp_toy_run.py OUT_DIR MICRO_BATCH ACCUMULATION."""

import sys
from pathlib import Path

import torch
from torch import nn

from pruneforget.train.batches import sample_generator
from pruneforget.train.loop import make_accelerator, train
from pruneforget.train.objective import LoopSettings, Objective, constant_schedule


def batches(positions):
    xs = torch.stack([torch.randn(3, generator=sample_generator(0, p)) for p in positions])
    return {"x": xs, "y": xs.sum(1, keepdim=True)}


def loss(models, batch):
    mse = (models["net"](batch["x"]) - batch["y"]).pow(2).mean()
    return {"mse": mse, "total": mse}


if __name__ == "__main__":
    out, micro, accum = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    settings = LoopSettings(steps=3, micro_batch_size=micro, gradient_accumulation_steps=accum, checkpoint_every=2,
                            eval_every=2, progress=False)
    accelerator = make_accelerator()
    evaluate = (lambda step: {"weight_sum": float(net[0].weight.sum())}) if accelerator.is_main_process else None
    cost = train([Objective("ft", list(net.parameters()), loss, batches, lr=0.05, terms=("mse", "total"))],
                 constant_schedule("ft"), {"net": net}, settings, out, evaluate=evaluate, accelerator=accelerator)
    if accelerator.is_main_process:
        torch.save(net.state_dict(), out / "weights.pt")
    accelerator.end_training()
