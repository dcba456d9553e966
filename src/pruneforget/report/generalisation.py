"""Issue 19's generalisation table: Table 1's columns in the base world and in each world variant
(other removed styles, another world seed), one block of rows per world.

Each block is a metric table (report/tables.py) over the scores of its own scale
(results/{scale}/scores/..., the block's scale): the same model names exist in every world, so scores are
told apart by the scale directory their path names, never mixed.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from pruneforget.report import tables
from pruneforget.report.scores import tidy_scores


def score_scale(path: str | os.PathLike) -> str:
    """The scale directory a score path `results/{scale}/scores/{model}/{promptset}/{metric}.json` names."""
    return Path(path).parts[-5]


def block_rows(block: dict, rows: list[dict]) -> list[dict]:
    """The block's rows, labelled with the world's name so the blocks stay apart in one table."""
    return [{**row, "label": f"{block['name']}: {row['label']}"} for row in rows]


def block_line(block: dict) -> str:
    """The footnote naming what a block's world is."""
    return f"{block['name']}: removes {', '.join(block['remove_styles'])}; world seed {block['world_seed']}"


def generalisation_table(scores: list, spec: dict) -> pd.DataFrame:
    """One CELL_COLUMNS frame (plus `world`) of every block: each block's rows and columns over the
    scores under the block's own scale directory."""
    by_scale: dict[str, list] = {}
    for path in scores:
        by_scale.setdefault(score_scale(path), []).append(path)
    frames = []
    for block in spec["blocks"]:
        paths = by_scale.get(block["scale"], [])
        frame = tables.metric_table(tidy_scores(paths), block_rows(block, spec["rows"]), block["columns"], spec["seeds"])
        # A note names its world: the same model is missing in one world and built in another.
        frame["note"] = [f"{block['name']}: {n}" if n else n for n in frame["note"]]
        frames.append(frame.assign(world=block["name"]))
    return pd.concat(frames, ignore_index=True)


def generalisation_figure(frame: pd.DataFrame, spec: dict) -> "plt.Figure":
    """The table: every block's rows under Table 1's column labels, the worlds named under it."""
    rows = [r for block in spec["blocks"] for r in block_rows(block, spec["rows"])]
    columns = spec["blocks"][0]["columns"]
    footnotes = [block_line(b) for b in spec["blocks"]] + list(spec.get("footnotes", []))
    return tables.table_figure(frame, rows, columns, spec["title"], footnotes)
