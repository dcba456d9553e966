"""The data directory contract shared by both scales: file names, columns, readers.

    DIR/train.csv, finetune.csv, val.csv    image tables (image, caption, image_id [+ tiny labels])
    DIR/images/<split>/<image_id>.png       the images, paths in the tables relative to DIR
    DIR/prompts/remove_<slug>.csv           prompts asking for each removable style (canonical name)
    DIR/prompts/synonyms_<slug>.csv         the same prompts naming the style by synonyms
    DIR/prompts/retain.csv                  prompts for the styles that stay
    DIR/world.json                          the resolved world: labels, synonyms, removed styles
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pruneforget.io import read_json

IMAGE_COLUMNS = ["image", "caption", "image_id"]
LABEL_COLUMNS = ["style", "shape", "colour"]
TINY_IMAGE_COLUMNS = IMAGE_COLUMNS + LABEL_COLUMNS + ["style_word"]
PROMPT_COLUMNS = ["prompt", "evaluation_seed"] + LABEL_COLUMNS
SPLITS = ("train", "finetune", "val")


def remove_prompts_path(slug: str) -> str:
    """Path (relative to DIR) of the removal prompt set of the style with file-name slug `slug`."""
    return f"prompts/remove_{slug}.csv"


def synonym_prompts_path(slug: str) -> str:
    """Path (relative to DIR) of the synonym robustness prompt set of a removable style."""
    return f"prompts/synonyms_{slug}.csv"


RETAIN_PROMPTS_PATH = "prompts/retain.csv"


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as CSV without the index (the caller writes inside an atomic directory)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def read_table(data_dir: str | os.PathLike, split: str) -> pd.DataFrame:
    """Read DIR/<split>.csv (train, finetune or val); label columns stay strings."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return pd.read_csv(Path(data_dir) / f"{split}.csv", dtype={c: str for c in ["caption", *LABEL_COLUMNS, "style_word"]},
                       keep_default_na=False)


def read_prompts(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prompt CSV (prompt, evaluation_seed, style, shape, colour, ...)."""
    return pd.read_csv(path, dtype={c: str for c in ["prompt", *LABEL_COLUMNS]}, keep_default_na=False)


def read_world(data_dir: str | os.PathLike) -> dict:
    """The resolved world description DIR/world.json (label orders, synonyms, removed styles)."""
    return read_json(Path(data_dir) / "world.json")


def load_images(data_dir: str | os.PathLike, table: pd.DataFrame) -> np.ndarray:
    """The table's images as one uint8 array (N, H, W, 3), in table order."""
    root = Path(data_dir)
    return np.stack([np.asarray(Image.open(root / p).convert("RGB")) for p in table["image"]])


def read_split(data_dir: str | os.PathLike, split: str, limit: int | None = None) -> pd.DataFrame:
    """A split's rows with a caption, optionally the first `limit` (a smoke-test subset);
    an empty result is an error naming the table."""
    table = read_table(data_dir, split)
    table = table[table["caption"].str.strip() != ""].reset_index(drop=True)
    if limit:
        table = table.iloc[:limit]
    if table.empty:
        raise ValueError(f"{Path(data_dir) / (split + '.csv')} has no rows with a caption: nothing to train or evaluate on")
    return table


def load_image_at(path: str | os.PathLike, size: int) -> np.ndarray:
    """One RGB image as uint8 (size, size, 3): shorter side resized to `size` (bicubic, as SD's
    training scripts), then centre-cropped. Images already at `size` are returned unchanged."""
    image = Image.open(path).convert("RGB")
    if image.size != (size, size):
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image)


def load_images_at(data_dir: str | os.PathLike, table: pd.DataFrame, size: int) -> np.ndarray:
    """The table's images (paths relative to `data_dir`, or absolute) as uint8 (N, size, size, 3)."""
    root = Path(data_dir)
    return np.stack([load_image_at(root / p, size) for p in table["image"]])
