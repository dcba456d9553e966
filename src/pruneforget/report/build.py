"""One entry point for every table and figure: a resolved spec (report.specs) and its input
paths in, a matplotlib figure and the frame of its plotted numbers out."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pandas as pd

from pruneforget.io import read_json
from pruneforget.report import bars, cost, curves, frontier, generalisation, grids, labels, tables
from pruneforget.report.scores import score_key, tidy_scores

Paths = list[str | os.PathLike]


def _metric_table(spec: dict, scores: Paths, **_) -> tuple:
    frame = tables.metric_table(tidy_scores(scores), spec["rows"], spec["columns"], spec["seeds"])
    return tables.table_figure(frame, spec["rows"], spec["columns"], spec["title"], spec.get("footnotes", [])), frame


def _metric_bars(spec: dict, scores: Paths, **_) -> tuple:
    frame = tables.metric_table(tidy_scores(scores), spec["rows"], spec["columns"], spec["seeds"])
    return bars.metric_bars_figure(frame, spec["rows"], spec["columns"], spec["title"], spec.get("footnotes", [])), frame


def _resilience_table(spec: dict, scores: Paths, **_) -> tuple:
    frame = tables.resilience_table(tidy_scores(scores), spec["rows"], spec["columns"], spec["reference"], spec["seeds"])
    notes = [tables.RESILIENCE_FORMULA, f"distilled = {spec['reference']}; " + spec.get("hits", "")] + spec.get("footnotes", [])
    return tables.table_figure(frame, spec["rows"], spec["columns"], spec["title"], notes), frame


def _grid(spec: dict, samples: Paths, **_) -> tuple:
    from pruneforget.report.specs import grid_models

    rows = grid_models(spec)
    frame = grids.grid_cells(grids.sample_sets(samples), rows, spec["columns"])
    return grids.grid_figure(frame, rows, spec["columns"], spec["title"], spec.get("tile")), frame


def _label_decrease(spec: dict, scores: Paths, **_) -> tuple:
    by_model: dict[str, list[dict]] = {}
    for path in sorted(scores, key=str):
        model, promptset, metric = score_key(path)
        if metric == spec["metric"] and promptset in spec["promptsets"]:
            by_model.setdefault(model, []).append(read_json(path))
    frame = labels.label_decrease_table(by_model, spec["rows"], spec["reference"], spec.get("labels"), spec["seeds"])
    return labels.label_decrease_figure(frame, spec["rows"], spec["title"], spec.get("reference_label", spec["reference"])), frame


def _curves(spec: dict, runs: Paths, **_) -> tuple:
    names = [m["name"] for m in spec["metrics"]]
    records = curves.read_records(runs, spec.get("source"), spec.get("objective"))
    frame = curves.curve_table(records, spec["groups"], names, spec["seeds"])
    return curves.curve_figure(frame, spec["groups"], spec["metrics"], spec["title"], spec.get("xlabel")), frame


def _sweep(spec: dict, scores: Paths, **_) -> tuple:
    frame = curves.sweep_table(tidy_scores(scores), spec["model"], spec["lambdas"], spec["Ks"], spec["default"],
                               spec["columns"], spec["seeds"], spec.get("default_model"))
    return curves.sweep_figure(frame, spec["columns"], spec["default"], spec["title"]), frame


def _cost(spec: dict, runs: Paths, **_) -> tuple:
    frame = cost.cost_table(cost.read_costs(runs), spec["rows"], spec.get("totals", []), spec["seeds"])
    row_labels, col_labels, text = cost.cost_cells(frame)
    return tables.draw_table(row_labels, col_labels, text, spec["title"], tables.note_lines(frame, spec.get("footnotes", []))), frame


def _frontier(spec: dict, scores: Paths, runs: Paths, **_) -> tuple:
    points = frontier.frontier_points(tidy_scores(scores), spec, runs)
    return frontier.frontier_figure(points, spec), points


def _frontier_table(spec: dict, scores: Paths, runs: Paths, **_) -> tuple:
    points = frontier.frontier_points(tidy_scores(scores), spec, runs)
    table = frontier.front_table(points, spec)
    return frontier.front_table_figure(table, points, spec), table


def _generalisation_table(spec: dict, scores: Paths, **_) -> tuple:
    frame = generalisation.generalisation_table(scores, spec)
    return generalisation.generalisation_figure(frame, spec), frame


BUILDERS = {"metric_table": _metric_table, "metric_bars": _metric_bars, "resilience_table": _resilience_table, "grid": _grid,
            "label_decrease": _label_decrease, "curves": _curves, "sweep": _sweep, "cost": _cost,
            "frontier": _frontier, "frontier_table": _frontier_table, "generalisation_table": _generalisation_table}


def build_figure(spec: dict, scores: Paths = (), runs: Paths = (), samples: Paths = ()) -> tuple["plt.Figure", pd.DataFrame]:
    """The figure and its CSV frame of a resolved spec (`kind` picks the builder) from the given
    score JSONs, training run directories and sample set directories."""
    return BUILDERS[spec["kind"]](spec, scores=list(scores), runs=list(runs), samples=list(samples))

