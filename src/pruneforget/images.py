"""Reading image tables (tiny world and COCO share columns: image, caption, image_id)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm


def read_table(data_dir: str | Path, name: str) -> pd.DataFrame:
    """Read `<data_dir>/<name>.csv`, naming the file and the producing command when missing."""
    path = Path(data_dir) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m pruneforget prepare-data` first")
    return pd.read_csv(path)


def load_images(data_dir: str | Path, paths: list[str], size: int | None = None) -> np.ndarray:
    """Load RGB images (relative to `data_dir`) as a uint8 array of shape (N, H, W, 3)."""
    out = []
    for rel in tqdm(paths, desc="loading images", leave=False, disable=len(paths) < 2000):
        img = Image.open(Path(data_dir) / rel).convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        out.append(np.asarray(img))
    return np.stack(out)


def to_tensor_range(images: np.ndarray):
    """uint8 NHWC -> float NCHW in [-1, 1], the range the VAE works in."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
