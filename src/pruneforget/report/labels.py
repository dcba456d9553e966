"""Figure 7: per-label decrease of a concept's detections relative to the teacher.

Paper scale: NudeNet's per-label image counts on I2P (`nudenet` score JSONs, `value` = {label:
count}); tiny world: per evaluator style label, how many images the evaluator assigns to that
style (from a `judge` score's per-style `predicted_style` shares), so the global concept's
label should fall and the others show where its images went. The decrease per label is
`100 * (N_teacher - N_method) / N_teacher` (metrics.nudenet.percent_decrease), per training seed,
then mean and std over seeds.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pruneforget.metrics.nudenet import percent_decrease
from pruneforget.report.scores import not_built_note, row_models, seed_stats

LABEL_COLUMNS = ["row", "model", "label", "mean", "std", "n", "seeds", "note"]


def label_counts(score: dict) -> dict[str, float]:
    """Images per label of one score: the `value` dict of a NudeNet score, or, for a tiny judge
    score, sum over prompted styles of n * share predicted as each style."""
    if score["metric"] == "judge":
        counts: dict[str, float] = {}
        for d in score["per_item"]:
            for label, share in d["predicted_style"].items():
                counts[label] = counts.get(label, 0.0) + d["n"] * share
        return {k: round(v, 6) for k, v in sorted(counts.items())}  # n * share is a whole number up to rounding
    return {k: float(v) for k, v in score["value"].items()}


def summed_counts(scores: list[dict]) -> dict[str, float]:
    """Label counts added over several scores (one model's prompt sets)."""
    total: dict[str, float] = {}
    for s in scores:
        for k, v in label_counts(s).items():
            total[k] = total.get(k, 0.0) + v
    return total


def label_decrease_table(scores: dict[str, list[dict]], rows: list[dict], reference: str, labels: list[str] | None,
                         seeds: list[int]) -> pd.DataFrame:
    """Mean/std/n over seeds of each row's per-label decrease against `reference` (the teacher),
    for `labels` (None: every label the reference or a method shows). `scores` maps a model
    name to its score dicts; a model without any is a `not built` note, a label the reference
    never shows a `undefined` note (no relative decrease exists)."""
    if reference not in scores:
        return pd.DataFrame([_note("reference", reference, not_built_note(reference))], columns=LABEL_COLUMNS)
    ref_counts = summed_counts(scores[reference])
    counts = {m: summed_counts(s) for m, s in scores.items()}
    labels = labels or sorted(set().union(*counts.values()))
    cells, notes = [], []
    for row in rows:
        per_label: dict[str, list[tuple[int | None, float]]] = {lab: [] for lab in labels}
        for seed, model in row_models(row["model"], seeds):
            if model not in counts:
                notes.append(_note(row["label"], model, not_built_note(model)))
                continue
            mine = {lab: counts[model].get(lab, 0.0) for lab in labels}
            ref = {lab: ref_counts.get(lab, 0.0) for lab in labels}
            for lab, dec in percent_decrease(mine, ref).items():
                if not math.isnan(dec):
                    per_label[lab].append((seed, dec))
        for lab, vals in per_label.items():
            if vals:
                used = " ".join("-" if s is None else str(s) for s, _ in vals)
                cells.append({"row": row["label"], "model": row["model"], "label": lab,
                              **seed_stats([v for _, v in vals]), "seeds": used, "note": ""})
    for lab in labels:
        if ref_counts.get(lab, 0.0) == 0:
            notes.append(_note("reference", reference, f"undefined: {reference} shows no {lab} (no relative decrease)"))
    unique = list({n["note"]: n for n in notes}.values())
    return pd.DataFrame(cells + unique, columns=LABEL_COLUMNS)


def _note(row: str, model: str, text: str) -> dict:
    return {"row": row, "model": model, "label": "", "mean": math.nan, "std": math.nan, "n": 0, "seeds": "", "note": text}


def label_decrease_figure(frame: pd.DataFrame, rows: list[dict], title: str, reference_label: str) -> "plt.Figure":
    """Grouped bars: one group per label, one bar per row (mean, error bar = std over seeds)."""
    cells = frame[frame["note"] == ""]
    labels = list(dict.fromkeys(cells["label"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 3.6))
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(rows))
    for k, row in enumerate(rows):
        mine = cells[cells["row"] == row["label"]].set_index("label")
        mean = [mine["mean"].get(lab, np.nan) for lab in labels]
        std = [mine["std"].get(lab, np.nan) for lab in labels]
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, mean, width, yerr=np.nan_to_num(std), label=row["label"],
               color=f"C{k}", capsize=2, error_kw={"lw": 0.8})
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([lab.replace("_EXPOSED", "").replace("_", " ").lower() for lab in labels], rotation=30,
                       ha="right", fontsize=8)
    ax.set_ylabel(f"decrease vs {reference_label} (%)")
    ax.set_title(title, fontsize=10)
    if rows and not cells.empty:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
