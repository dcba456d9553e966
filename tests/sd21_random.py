"""The Stable Diffusion 2.1 UNet (its shipped configuration, 865,910,724 parameters) with random
weights, made quickly for tests of the paper's path on a CPU."""

from __future__ import annotations

import torch
from accelerate import init_empty_weights

from pruneforget.models.load import sd21_unet


def random_sd21_unet(sample_size: int = 8, seed: int = 0):
    """SD 2.1's UNet, filled in a few seconds: weights uniform with variance 1/fan_in, norm scales
    1 +- 0.1, biases +- 0.02. diffusers' own init of this UNet takes ~20 s on one core, and tests
    of an equation need random weights, not its initialisation."""
    with init_empty_weights():
        unet = sd21_unet(sample_size=sample_size)
    gen = torch.Generator().manual_seed(seed)
    unet.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.dim() > 1:
                bound = (3 / p[0].numel()) ** 0.5
                p.uniform_(-bound, bound, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.9, 1.1, generator=gen)
            else:
                p.uniform_(-0.02, 0.02, generator=gen)
    return unet.eval()
