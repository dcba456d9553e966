"""Frontiers, not points: each method's erasure against retention over a strength sweep
(figures.fig_frontier), and Table 1 rebuilt from each curve's operating point (figures.table1_front).

A curve is a run stem and a strength knob (unlearn/knobs.py) at several values; its points are the
runs `{stem}-{knob}{value}-s{seed}`. Each point is the mean ± std over training seeds of the
erasure column and of each retention column (Table 1's column definitions, report.scores). One
panel per retention column; the Pareto front of a panel is the set of points no other point beats
in both erasure and retention (each in its column's `better` direction). The operating point of a
curve is chosen by a rule fixed in the config before any number is seen (`operating_point`):
among the points whose erasure reaches `erasure_reaches`, the best in column `best`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pruneforget.report.cost import run_seconds
from pruneforget.report.scores import column_value, not_built_note, row_models, seed_stats
from pruneforget.report.tables import CELL_COLUMNS, draw_table, format_stat, note_lines
from pruneforget.unlearn.knobs import format_value

POINT_COLUMNS = ["curve", "kind", "knob", "value", "model", "panel", "erasure_mean", "erasure_std",
                 "retention_mean", "retention_std", "n", "seeds", "front", "train_seconds_mean",
                 "train_seconds_std", "note"]
FRONT_COLUMNS = [*CELL_COLUMNS, "knob", "value"]


def _sign(better: str | None) -> float:
    """+1 where higher is better, -1 where lower is (so `sign * x` is always 'higher is better')."""
    return -1.0 if better == "lower" else 1.0


def pareto_front(erasure, retention, erasure_better: str = "higher", retention_better: str = "higher") -> list[bool]:
    """Whether each point (erasure[i], retention[i]) is on the Pareto front: no other point is at
    least as good in both and strictly better in one. NaN points are never on it."""
    e = _sign(erasure_better) * np.asarray(erasure, float)
    r = _sign(retention_better) * np.asarray(retention, float)
    on = []
    for i in range(len(e)):
        if math.isnan(e[i]) or math.isnan(r[i]):
            on.append(False)
            continue
        dominated = (e >= e[i]) & (r >= r[i]) & ((e > e[i]) | (r > r[i]))
        on.append(not bool(np.nan_to_num(dominated, nan=0).any()))
    return on


def reaches(value: float, threshold: float, better: str | None) -> bool:
    """Whether `value` is at least as good as `threshold` in the column's `better` direction."""
    return not math.isnan(value) and _sign(better) * value >= _sign(better) * threshold


def operating_point(values, erasure, best, threshold: float, erasure_better: str = "higher",
                    best_better: str = "higher"):
    """The rule of figures.table1_front: among the points whose erasure reaches `threshold`, the one
    with the best `best` value (ties: the stronger erasure, then the earlier value). Returns that
    point's value, or None when no point reaches the threshold."""
    candidates = [(i, v) for i, v in enumerate(values)
                  if reaches(erasure[i], threshold, erasure_better) and not math.isnan(best[i])]
    if not candidates:
        return None
    i, v = max(candidates, key=lambda c: (_sign(best_better) * best[c[0]], _sign(erasure_better) * erasure[c[0]], -c[0]))
    return v


def _pair_stats(tidy: pd.DataFrame, stem: str, seeds: list[int], erasure: dict, column: dict) -> tuple[dict, dict, list]:
    """Mean ± std over seeds of (erasure, retention) of one model stem, seeds where both exist."""
    e_values, r_values, used, notes = [], [], [], []
    for seed, model in row_models(stem, seeds):
        e, e_missing = column_value(tidy, model, erasure)
        r, r_missing = column_value(tidy, model, column)
        if e is None or r is None:
            notes.append(not_built_note(model, ", ".join(e_missing + r_missing)) if model in set(tidy["model"])
                         else not_built_note(model))
            continue
        e_values.append(e)
        r_values.append(r)
        used.append(seed)
    return seed_stats(e_values), seed_stats(r_values), [used, notes]


def point_seconds(runs, stem: str, seeds: list[int]) -> dict:
    """Mean ± std over seeds of the training seconds (report.cost.run_seconds) of a point's runs
    among `runs` (run directories); n 0 where none was given or none recorded a time."""
    by_name = {Path(r).name: r for r in runs}
    times = [run_seconds(by_name[m]) for _, m in row_models(stem, seeds) if m in by_name]
    return seed_stats([t for t in times if t is not None])


def frontier_points(tidy: pd.DataFrame, spec: dict, runs=()) -> pd.DataFrame:
    """POINT_COLUMNS: one row per (curve point or reference model, retention panel), with the
    Pareto front of each panel's curve points marked and each curve point's training time (its run
    directories in `runs`), then one note row per missing model."""
    rows, notes = [], []
    seconds = {p["model"]: point_seconds(runs, p["model"], spec["seeds"]) for c in spec["curves"] for p in c["points"]}
    entries = [(c["label"], "curve", c["knob"], p["value"], p["model"]) for c in spec["curves"] for p in c["points"]]
    entries += [(r["label"], "reference", "", math.nan, r["model"]) for r in spec.get("references", [])]
    for panel in spec["retention"]:
        for label, kind, knob, value, stem in entries:
            e, r, (used, missing) = _pair_stats(tidy, stem, spec["seeds"], spec["erasure"], panel)
            notes += missing
            if e["n"]:
                rows.append({"curve": label, "kind": kind, "knob": knob, "value": value, "model": stem,
                             "panel": panel["label"], "erasure_mean": e["mean"], "erasure_std": e["std"],
                             "retention_mean": r["mean"], "retention_std": r["std"], "n": e["n"],
                             "seeds": " ".join("-" if s is None else str(s) for s in used), "front": False,
                             "train_seconds_mean": seconds.get(stem, {}).get("mean", math.nan) if kind == "curve" else math.nan,
                             "train_seconds_std": seconds.get(stem, {}).get("std", math.nan) if kind == "curve" else math.nan,
                             "note": ""})
    frame = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for panel in spec["retention"]:
        mine = frame.index[(frame["panel"] == panel["label"]) & (frame["kind"] == "curve")]
        frame.loc[mine, "front"] = pareto_front(frame.loc[mine, "erasure_mean"], frame.loc[mine, "retention_mean"],
                                                spec["erasure"].get("better"), panel.get("better"))
    timed = [s for s in seconds.values() if s["n"]]
    if timed:  # the figure's compute: every timed run of every curve (mean x seeds timed, summed over points)
        total = sum(s["mean"] * s["n"] for s in timed)
        notes.append(f"training compute: {sum(s['n'] for s in timed)} runs, {total / 3600:.2f} h "
                     f"({total:.0f} s; per-point means in the CSV's train_seconds columns)")
    extra = pd.DataFrame([{**{c: "" for c in POINT_COLUMNS}, "value": math.nan, "n": 0, "front": False,
                           "train_seconds_mean": math.nan, "train_seconds_std": math.nan, "note": n}
                          for n in dict.fromkeys(notes)], columns=POINT_COLUMNS)
    return pd.concat([frame, extra], ignore_index=True) if len(extra) else frame


def _panel_label(col: dict) -> str:
    return col["label"] + {"higher": " (higher better)", "lower": " (lower better)"}.get(col.get("better", ""), "")


def frontier_figure(points: pd.DataFrame, spec: dict) -> "plt.Figure":
    """One panel per retention column: x = retention, y = erasure, a line with error bars (std
    over seeds, both axes) per curve in knob order, each point labelled with its knob value, the
    reference models as black marks, the Pareto front of the curve points circled and joined by a
    dotted line."""
    panels = spec["retention"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    cells = points[points["panel"] != ""]
    for ax, panel in zip(axes[0], panels):
        mine = cells[cells["panel"] == panel["label"]]
        for k, curve in enumerate(spec["curves"]):
            c = mine[(mine["kind"] == "curve") & (mine["curve"] == curve["label"])]
            if len(c):
                ax.errorbar(c["retention_mean"], c["erasure_mean"], xerr=np.nan_to_num(c["retention_std"].astype(float)),
                            yerr=np.nan_to_num(c["erasure_std"].astype(float)), marker="o", ms=3.5, lw=1, capsize=2,
                            color=f"C{k}", label=f"{curve['label']} ({curve['knob']})")
                for _, point in c.iterrows():  # each point's knob value beside it: the curve's direction
                    ax.annotate(format_value(curve["knob"], point["value"]), (point["retention_mean"], point["erasure_mean"]),
                                textcoords="offset points", xytext=(3, 3), fontsize=5, color=f"C{k}")
        refs = mine[mine["kind"] == "reference"]
        for marker, (_, ref) in zip("*sDP^v", refs.iterrows()):
            ax.plot(ref["retention_mean"], ref["erasure_mean"], marker, color="black", ms=8, label=ref["curve"])
        front = mine[mine["front"].astype(bool)].sort_values("retention_mean")
        if len(front):
            ax.plot(front["retention_mean"], front["erasure_mean"], "o", mfc="none", mec="black", ms=9, mew=1,
                    label="Pareto front")
            ax.plot(front["retention_mean"], front["erasure_mean"], ":", color="black", lw=0.8)
        ax.set_xlabel(_panel_label(panel), fontsize=8)
        ax.set_ylabel(_panel_label(spec["erasure"]), fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(spec["title"], fontsize=10)
    lines = note_lines(points)
    # Room on the right for the legend, under the panels for the notes (as bars.py does).
    fig.tight_layout(rect=(0, 0.04 * len(lines), 0.86, 1))
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=6, va="bottom", ha="left", family="monospace")
    return fig


def _rule_text(spec: dict) -> str:
    rule, erasure = spec["operating_point"], spec["erasure"]
    op = ">=" if erasure.get("better", "higher") == "higher" else "<="
    best = next(c for c in spec["retention"] if c["label"] == rule["best"])
    word = "least" if best.get("better") == "lower" else "most"
    return f"operating point: {word} {rule['best']} among the points with {erasure['label']} {op} {rule['erasure_reaches']:g}"


def front_table(points: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """FRONT_COLUMNS: per curve, the cells (erasure and every retention column) of its operating
    point with the chosen knob value; a curve with no point meeting the rule is one note row."""
    rule, erasure = spec["operating_point"], spec["erasure"]
    best = next(c for c in spec["retention"] if c["label"] == rule["best"])
    cells, notes = [], []
    curve_points = points[points["kind"] == "curve"]
    for curve in spec["curves"]:
        ranked = curve_points[(curve_points["curve"] == curve["label"]) & (curve_points["panel"] == best["label"])]
        value = operating_point(list(ranked["value"]), list(ranked["erasure_mean"]), list(ranked["retention_mean"]),
                                rule["erasure_reaches"], erasure.get("better"), best.get("better"))
        if value is None:
            tried = ", ".join(f"{v:g}: {e:.3g}" for v, e in zip(ranked["value"], ranked["erasure_mean"])) or "no point built"
            notes.append({"row": curve["label"], "model": "", "column": "", "mean": math.nan, "std": math.nan, "n": 0,
                          "seeds": "", "knob": curve["knob"], "value": "",
                          "note": f"{curve['label']}: no {curve['knob']} value reaches the rule ({erasure['label']} at "
                                  f"{curve['knob']} = {tried})"})
            continue
        chosen = curve_points[(curve_points["curve"] == curve["label"]) & (curve_points["value"] == value)]
        first = chosen.iloc[0]
        # The value as the run name writes it (erase 2, K 10): the CSV names the run's own knob value.
        base = {"row": curve["label"], "model": first["model"], "knob": curve["knob"],
                "value": format_value(curve["knob"], value), "note": ""}
        cells.append({**base, "column": erasure["label"], "mean": first["erasure_mean"], "std": first["erasure_std"],
                      "n": first["n"], "seeds": first["seeds"]})
        for _, p in chosen.iterrows():
            cells.append({**base, "column": p["panel"], "mean": p["retention_mean"], "std": p["retention_std"],
                          "n": p["n"], "seeds": p["seeds"]})
    return pd.DataFrame(cells + notes, columns=FRONT_COLUMNS)


def front_table_figure(table: pd.DataFrame, points: pd.DataFrame, spec: dict) -> "plt.Figure":
    """Draw front_table: a row per curve labelled with its chosen knob value (`none meets the
    rule` where none is), the rule and every note under it."""
    columns = [spec["erasure"], *spec["retention"]]
    cells = {(r["row"], r["column"]): r for r in table.to_dict("records") if r["column"]}
    row_labels, text = [], []
    for curve in spec["curves"]:
        mine = table[(table["row"] == curve["label"]) & (table["column"] != "")]
        if len(mine):
            row_labels.append(f"{curve['label']} ({curve['knob']} {mine['value'].iloc[0]})")
            text.append([format_stat(cells[(curve["label"], c["label"])]) if (curve["label"], c["label"]) in cells
                         else "not built" for c in columns])
        else:
            row_labels.append(curve["label"])
            text.append(["none meets the rule"] + [""] * (len(columns) - 1))
    arrows = {"higher": " ↑", "lower": " ↓"}
    notes = [_rule_text(spec)] + [n for n in table["note"] if n] + [n for n in points["note"] if n]
    return draw_table(row_labels, [c["label"] + arrows.get(c.get("better", ""), "") for c in columns], text,
                      spec["title"], note_lines(pd.DataFrame({"note": notes})))
