"""Pixel conventions shared by the VAE and the teacher: uint8 NHWC images to the VAE's range."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor_range(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], the range the VAE works in."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
