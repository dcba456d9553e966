"""MACs of the Stable Diffusion UNets by pruneforget's counter, against published numbers.

    PYTHONPATH=src python workflow/scripts/bench_macs.py

Counting convention (pruneforget.prune.macs): MACs of one UNet evaluation, batch 1, of every
Conv2d and Linear plus the attention matmuls QK^T and AV (2 * heads * N_q * N_k * head_dim);
biases, norms, activations, softmax and additions are not counted. Models are built on the meta
device and counted under FakeTensorMode: no weights, no arithmetic, about a second each.

BK-SDM (Kim et al. 2023) reports 339 G MACs for SD-v1.4's U-Net at 512 px. The script prints the
total with and without the attention matmuls: BK-SDM's figure matches the count of the Conv2d and
Linear layers alone (a per-module profiler does not see the torch.bmm / SDPA calls inside attention).
"""

from __future__ import annotations

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel

from pruneforget.models.load import packaged_config
from pruneforget.models.structure import prunable_groups
from pruneforget.prune.macs import count_macs, mac_table

# SD-v1.4's UNet (CompVis/stable-diffusion-v1-4 unet/config.json, architecture keys).
SD14_UNET = {
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 64,
    "use_linear_projection": False,
}
BK_SDM_SD14_GMACS = 339


def report(name: str, config: dict, latent_size: int, text_len: int) -> None:
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    counts = count_macs(unet, latent_size, text_len)
    total = sum(counts.values())
    matmul = sum(v for k, v in counts.items() if k.endswith("#matmul"))
    table = mac_table(unet, prunable_groups(unet), latent_size, text_len)
    params = sum(p.numel() for p in unet.parameters())
    print(f"{name}: latent {latent_size}x{latent_size} ({latent_size * 8} px), text length {text_len}, {params / 1e6:.1f} M params")
    print(f"  total                      {total / 1e9:8.2f} G MACs")
    print(f"  Conv2d + Linear only       {(total - matmul) / 1e9:8.2f} G MACs")
    print(f"  attention QK^T and AV      {matmul / 1e9:8.2f} G MACs")
    print(f"  prunable by APTP codes     {table.prunable_full / 1e9:8.2f} G MACs ({table.prunable_full / total:.1%} of the total)")


def main() -> None:
    torch.set_grad_enabled(False)
    report("SD 2.1 UNet", packaged_config("sd21_unet"), latent_size=64, text_len=77)
    report("SD 2.1 UNet", packaged_config("sd21_unet"), latent_size=96, text_len=77)
    report("SD 1.4 UNet", SD14_UNET, latent_size=64, text_len=77)
    print(f"  BK-SDM's published SD-v1.4 U-Net: {BK_SDM_SD14_GMACS} G MACs at 512 px")


if __name__ == "__main__":
    main()
