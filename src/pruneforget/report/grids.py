"""Figures 1, 2 and 6: image grids, one row per model, one column per fixed prompt.

Images come from sample sets (`results/{scale}/samples/{model}/{promptset}/`: PNGs plus
manifest.csv); a column names its prompt set and either the prompt text (first matching row) or
a manifest row index, so every model is shown the same prompt with the same seed. The CSV beside
the figure lists which file fills each cell.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

GRID_COLUMNS = ["row", "model", "column", "promptset", "prompt", "seed", "file", "note"]
PAD = 2  # white pixels around each tile


def pick_image(sample_dir: str | os.PathLike, column: dict) -> dict:
    """The manifest row a grid column shows in one sample set: `column["prompt"]` (first row with
    that prompt) or `column["index"]` (row number). Raises ValueError naming the column if absent."""
    manifest = pd.read_csv(Path(sample_dir) / "manifest.csv", keep_default_na=False)
    if "prompt" in column:
        rows = manifest[manifest["prompt"] == column["prompt"]]
        if rows.empty:
            raise ValueError(f"{sample_dir}: no sample for prompt {column['prompt']!r}")
        return rows.iloc[0].to_dict()
    if not 0 <= column["index"] < len(manifest):
        raise ValueError(f"{sample_dir}: no row {column['index']} (the manifest has {len(manifest)})")
    return manifest.iloc[column["index"]].to_dict()


def sample_sets(dirs: list[str | os.PathLike]) -> dict[tuple[str, str], Path]:
    """Sample set directories `.../samples/{model}/{promptset}` keyed by (model, promptset)."""
    return {(Path(d).parent.name, Path(d).name): Path(d) for d in dirs}


def grid_cells(sets: dict[tuple[str, str], Path], rows: list[dict], columns: list[dict]) -> pd.DataFrame:
    """Which image fills each cell (GRID_COLUMNS), row-major: rows `{label, model}` (a model
    directory name), columns `{label, promptset, prompt | index}`, `sets` from `sample_sets`;
    a sample set not given is a `not built` note."""
    out = []
    for row in rows:
        for col in columns:
            base = {"row": row["label"], "model": row["model"], "column": col["label"], "promptset": col["promptset"]}
            sample_dir = sets.get((row["model"], col["promptset"]))
            if sample_dir is None:
                out.append({**base, "prompt": "", "seed": "", "file": "",
                            "note": f"not built: {row['model']} (samples of {col['promptset']})"})
                continue
            picked = pick_image(sample_dir, col)
            out.append({**base, "prompt": picked["prompt"], "seed": picked.get("seed", ""),
                        "file": str(sample_dir / picked["file"]), "note": ""})
    return pd.DataFrame(out, columns=GRID_COLUMNS)


def _tile(path: str, size: int | None) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if size and image.size != (size, size):
        # Shrinking 768 px samples keeps the PDF small; the tiny world's 32 px ones grow crisp.
        image = image.resize((size, size), Image.LANCZOS if image.width > size else Image.NEAREST)
    return np.asarray(image)


def grid_mosaic(cells: pd.DataFrame, n_rows: int, n_cols: int, tile: int | None = None) -> np.ndarray:
    """The cells' images as one array, row-major in the order of `cells`, each padded by PAD
    white pixels; a cell without an image is light grey."""
    files = list(cells["file"])
    first = next((f for f in files if f), None)
    size = tile or (Image.open(first).width if first else 32)
    tiles = [_tile(f, size) if f else np.full((size, size, 3), 230, np.uint8) for f in files]
    padded = [np.pad(t, ((PAD, PAD), (PAD, PAD), (0, 0)), constant_values=255) for t in tiles]
    return np.concatenate([np.concatenate(padded[r * n_cols:(r + 1) * n_cols], axis=1) for r in range(n_rows)], axis=0)


def grid_figure(cells: pd.DataFrame, rows: list[dict], columns: list[dict], title: str,
                tile: int | None = None) -> "plt.Figure":
    """Draw the grid: row labels on the left, each column's label and prompt on top, `not built`
    written over cells without a sample set."""
    mosaic = grid_mosaic(cells, len(rows), len(columns), tile)
    step = mosaic.shape[0] / len(rows)
    fig, ax = plt.subplots(figsize=(1.2 + 1.5 * len(columns), 0.9 + 1.5 * len(rows)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([step * (j + 0.5) for j in range(len(columns))])
    prompts = [next((p for p in cells.loc[cells["column"] == c["label"], "prompt"] if p), "") for c in columns]
    ax.set_xticklabels([c["label"] + "\n" + "\n".join(textwrap.wrap(p, 24)) for c, p in zip(columns, prompts)], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([step * (i + 0.5) for i in range(len(rows))])
    ax.set_yticklabels([r["label"] for r in rows], fontsize=8)
    ax.tick_params(length=0)
    for k, note in enumerate(cells["note"]):
        if note:
            i, j = divmod(k, len(columns))
            ax.text(step * (j + 0.5), step * (i + 0.5), "not built", ha="center", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
