"""The teacher-quality figure: what the tiny teacher draws per style, and how the evaluator judges it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from pruneforget.sample import spread_subset


def per_style_table(score: dict) -> pd.DataFrame:
    """One row per style: n and style/shape/colour accuracy from a `judge` score's per_item rows."""
    return pd.DataFrame([{k: v for k, v in row.items() if k != "predicted_style"} for row in score["per_item"]])


def teacher_quality_figure(samples_dir: Path, score: dict, removed: list[str], per_style: int = 8, bar: float = 0.9) -> "plt.Figure":
    """Left: `per_style` samples for each style (rows); right: per-style accuracies against `bar`."""
    manifest = pd.read_csv(samples_dir / "manifest.csv", keep_default_na=False)
    table = per_style_table(score)
    styles = list(table["style"])
    fig = plt.figure(figsize=(11, 0.55 * len(styles) + 1.5))
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 1.3], wspace=0.35)
    ax_img, ax_bar = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])

    tiles = []
    for s in styles:
        # Evenly spaced within the style: the table is sorted by shape, so the first rows are all one shape.
        files = spread_subset(manifest[manifest["style"] == s], per_style)["file"]
        row = [np.asarray(Image.open(samples_dir / f).convert("RGB")) for f in files]
        blank = np.full_like(row[0], 255) if row else np.full((32, 32, 3), 255, np.uint8)
        row += [blank] * (per_style - len(row))
        tiles.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=255) for t in row], axis=1))
    ax_img.imshow(np.concatenate(tiles, axis=0), interpolation="nearest")
    h = tiles[0].shape[0]
    ax_img.set_yticks([h * (i + 0.5) for i in range(len(styles))])
    names = [f"{s} *" if s in removed else s for s in styles]
    ax_img.set_yticklabels(names)
    ax_img.set_xticks([])
    ax_img.set_title("teacher samples (held-out captions)")

    y = np.arange(len(styles))
    for k, (col, colour) in enumerate([("style_acc", "C0"), ("shape_acc", "C1"), ("colour_acc", "C2")]):
        if col in table:
            ax_bar.barh(y + (k - 1) * 0.27, table[col], height=0.27, color=colour, label=col.replace("_acc", ""))
    ax_bar.axvline(bar, color="k", ls="--", lw=1, label=f"bar {bar:.0%}")
    ax_bar.set_yticks(y)
    ax_bar.set_yticklabels(names)
    ax_bar.invert_yaxis()
    ax_bar.set_xlim(0, 1.0)
    ax_bar.set_xlabel("evaluator accuracy", labelpad=2)
    overall = ", ".join(f"{k.replace('_acc', '')} {v:.1%}" for k, v in score["value"].items())
    ax_bar.set_title(f"overall: {overall} (n={score['n']})", fontsize=9)
    ax_bar.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Tiny teacher quality (* = styles D_f will not show)")
    return fig
