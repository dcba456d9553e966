"""Score columns as bars: one panel per column, one bar per row, the error bar the standard
deviation over training seeds (figures.fig_continual). The numbers are metric_table's frame
(tables.metric_table), so the CSV beside the figure is the one a table of the same spec writes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pruneforget.report.tables import note_lines


def metric_bars_figure(frame: pd.DataFrame, rows: list[dict], columns: list[dict], title: str,
                       footnotes: list[str] = ()) -> "plt.Figure":
    """Bars of a CELL_COLUMNS frame: panel per column (its `better` direction in the title), bar
    per row in row order (a row's `color` index, else its position), notes under the panels."""
    cells = frame[frame["column"] != ""]
    n = max(1, len(columns))
    fig, axes = plt.subplots(1, n, figsize=(max(6.0, 2.2 * n), 3.6), squeeze=False)
    x = np.arange(len(rows))
    for ax, col in zip(axes[0], columns):
        mine = cells[cells["column"] == col["label"]].set_index("row")
        mean = [mine["mean"].get(r["label"], np.nan) for r in rows]
        std = [mine["std"].get(r["label"], np.nan) for r in rows]
        colors = [f"C{r.get('color', k)}" for k, r in enumerate(rows)]
        ax.bar(x, mean, 0.8, yerr=np.nan_to_num(std), color=colors, capsize=2, error_kw={"lw": 0.8})
        arrow = {"higher": " (higher better)", "lower": " (lower better)"}.get(col.get("better", ""), "")
        ax.set_title(col["label"] + arrow, fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels([r["label"] for r in rows], rotation=60, ha="right", fontsize=6.5)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=10)
    lines = note_lines(frame, footnotes)
    fig.tight_layout(rect=(0, 0.04 * len(lines), 1, 1) if lines else None)
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=6, va="bottom", ha="left", family="monospace")
    return fig
