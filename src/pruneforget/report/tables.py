"""Tables 1-3: style removal, adversarial resilience, retention after global-concept removal.

Each table is computed as a tidy frame (the CSV beside the PDF: one row per table cell with mean,
std and number of seeds, then one note row per missing model) and drawn from that frame, so the
PDF shows exactly the CSV's numbers. A row whose model was not built is left out of the means and
named in a note; it never gets a placeholder number.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import pandas as pd

from pruneforget.report.scores import (
    column_value,
    format_stat,
    model_name,
    not_built_note,
    row_models,
    score_value,
    seed_stats,
    seeded,
)

CELL_COLUMNS = ["row", "model", "column", "mean", "std", "n", "seeds", "note"]
RESILIENCE_FORMULA = "resilience = 100 * (1 - hits_method / hits_distilled), per training seed, then mean ± std over seeds"


def _cell(row: dict, column: str, values: list[float], seeds: list) -> dict:
    stats = seed_stats(values)
    used = " ".join("-" if s is None else str(s) for s in seeds)
    return {"row": row["label"], "model": row["model"], "column": column, **stats, "seeds": used, "note": ""}


def _note(row: dict, model: str, text: str) -> dict:
    return {"row": row["label"], "model": model, "column": "", "mean": math.nan, "std": math.nan, "n": 0,
            "seeds": "", "note": text}


def _frame(cells: list[dict], notes: list[dict]) -> pd.DataFrame:
    # A model missing from every column is one note, not one per column.
    unique = list({n["note"]: n for n in notes}.values())
    return pd.DataFrame(cells + unique, columns=CELL_COLUMNS)


def _missing_note(tidy: pd.DataFrame, model: str, what: list[str]) -> str:
    return not_built_note(model) if model not in set(tidy["model"]) else not_built_note(model, ", ".join(what))


def metric_table(tidy: pd.DataFrame, rows: list[dict], columns: list[dict], seeds: list[int]) -> pd.DataFrame:
    """Tables 1 and 3: for each row (`{label, model}`, model without seed) and column
    (`{label, metric, key, transform, scale, promptsets}`, see scores.column_value), mean, std and n
    over the row's training seeds (CELL_COLUMNS)."""
    cells, notes = [], []
    for row in rows:
        for col in columns:
            values, used = [], []
            for seed, model in row_models(row["model"], seeds):
                v, missing = column_value(tidy, model, col)
                if v is None:
                    notes.append(_note(row, model, _missing_note(tidy, model, missing)))
                else:
                    values.append(v)
                    used.append(seed)
            if values:
                cells.append(_cell(row, col["label"], values, used))
    return _frame(cells, notes)


def resilience(hits_method: float, hits_distilled: float) -> float:
    """Table 2's resilience to adversarial prompts relative to the distilled model, in percent:
    `100 * (1 - hits_method / hits_distilled)` (PAPER_FACTS section 4: no public code gives the
    formula; this is its natural reading). NaN when the distilled model has no hits."""
    return math.nan if hits_distilled == 0 else 100.0 * (1.0 - hits_method / hits_distilled)


def resilience_table(tidy: pd.DataFrame, rows: list[dict], columns: list[dict], reference: str,
                     seeds: list[int]) -> pd.DataFrame:
    """Table 2: per row and adversarial prompt set (column `{label, metric, key, promptsets}`:
    hits are summed over the column's prompt sets), the resilience of each seed's model against
    the reference (distilled) model of the same seed; mean, std, n over seeds (CELL_COLUMNS)."""
    cells, notes = [], []
    for row in rows:
        for col in columns:
            values, used = [], []
            for seed, model in row_models(row["model"], seeds):
                # Pair each seed's model with the distilled model it was unlearned from (same seed).
                ref_model = model_name(reference, seed) if seeded(reference) and seed is not None else reference
                hits = {}
                for m in dict.fromkeys((model, ref_model)):
                    found = [score_value(tidy, m, p, col["metric"], col.get("key")) for p in col["promptsets"]]
                    if None in found:
                        what = [f"{col['metric']} on {p}" for p, f in zip(col["promptsets"], found) if f is None]
                        notes.append(_note(row, m, _missing_note(tidy, m, what)))
                    else:
                        hits[m] = sum(found)
                if model not in hits or ref_model not in hits:
                    continue
                r = resilience(hits[model], hits[ref_model])
                if math.isnan(r):
                    notes.append(_note(row, ref_model, f"undefined: {ref_model} has no hits on {col['label']}"))
                    continue
                values.append(r)
                used.append(seed)
            if values:
                cells.append(_cell(row, col["label"], values, used))
    return _frame(cells, notes)


def _header(col: dict) -> str:
    arrow = {"higher": " ↑", "lower": " ↓"}.get(col.get("better", ""), "")
    return "\n".join(textwrap.wrap(col["label"], 14)) + arrow


def draw_table(row_labels: list[str], col_labels: list[str], text: list[list[str]], title: str,
               lines: list[str] = ()) -> "plt.Figure":
    """A table as a figure (matplotlib's ax.table filling its axes), `lines` (formulas, notes)
    printed under it; the figure's height follows the number of rows and lines."""
    label_width = 0.09 * max([len(r) for r in row_labels] + [8])
    header_lines = max([c.count("\n") + 1 for c in col_labels] + [1])
    table_h, title_h, lines_h = 0.28 * (len(row_labels) + 0.6 * header_lines + 0.4), 0.45, 0.13 * len(lines) + 0.15
    width = max(label_width + 1.5 * len(col_labels) + 0.3, 0.075 * max([len(x) for x in lines] + [0]))
    height = table_h + title_h + lines_h
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([0.01, lines_h / height, 0.98, table_h / height])
    ax.axis("off")
    # Row labels as an ordinary first column: ax.table's rowLabels would hang outside the axes.
    cells = [[label, *row] for label, row in zip(row_labels, text)] or [["nothing built", *[""] * len(col_labels)]]
    table = ax.table(cellText=cells or None, colLabels=["", *col_labels], cellLoc="center", bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    first = label_width / (width * 0.98)
    for (i, j), cell in table.get_celld().items():
        cell.set_linewidth(0.5)
        cell.set_width(first if j == 0 else (1 - first) / max(1, len(col_labels)))
        if j == 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.03
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    if lines:
        fig.text(0.01, 0.04 / height, "\n".join(lines), fontsize=6.5, va="bottom", ha="left", family="monospace")
    return fig


def note_lines(frame: pd.DataFrame, footnotes: list[str] = (), limit: int = 12) -> list[str]:
    """The footnotes, then the frame's notes (at most `limit`; the CSV has them all)."""
    notes = [n for n in frame["note"] if n]
    more = [f"... and {len(notes) - limit} more notes (see the CSV)"] if len(notes) > limit else []
    return list(footnotes) + notes[:limit] + more


def table_figure(frame: pd.DataFrame, rows: list[dict], columns: list[dict], title: str,
                 footnotes: list[str] = (), digits: int = 2) -> "plt.Figure":
    """Draw a CELL_COLUMNS frame: one line per row, `mean ± std` per column (over n seeds;
    `not built` where no seed was), the footnotes and the frame's notes under it."""
    cells = {(r["row"], r["column"]): r for r in frame.to_dict("records") if r["column"]}
    text = [[format_stat(cells[(row["label"], col["label"])], digits) if (row["label"], col["label"]) in cells
             else "not built" for col in columns] for row in rows]
    return draw_table([r["label"] for r in rows], [_header(c) for c in columns], text, title,
                      note_lines(frame, footnotes))
