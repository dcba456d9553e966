"""Figures 4 and 5 (quality during fine-tuning) and the bilevel sensitivity figure.

Fig. 4 compares fine-tuning with and without distillation at both budgets, Fig. 5 pruned against
random initialisation (both distilled): each is a set of run groups (`{label, model}`, model
without seed) whose runs' `eval.csv` (columns step, frechet, denoising_error; fid at sd21) are
averaged over seeds per step, drawn as the mean with the seeds' min-max range shaded. The penalty
figure draws a separate-mode bilevel run's training log the same way: `metrics.csv`, the rows of
one objective (the upper steps, which log the penalty L_ft(theta) - L_ft(vartheta)).
The sensitivity figure scores the bilevel runs `bilevel-lam{lam}-K{K}` of a one-at-a-time sweep
(lambda at the default K, K at the default lambda) with table columns (scores.column_value).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pruneforget.report.scores import column_value, not_built_note, row_models, seed_stats
from pruneforget.report.specs import sweep_settings, sweep_stem

CURVE_COLUMNS = ["group", "model", "metric", "step", "mean", "std", "min", "max", "n", "note"]
SWEEP_COLUMNS = ["sweep", "lam", "K", "model", "column", "mean", "std", "n", "seeds", "note"]


RECORDS = {"eval": "eval.csv", "metrics": "metrics.csv"}  # a curve figure's `source`: the run's file
XLABEL = "fine-tuning iteration"  # the x axis of a curve figure without its own `xlabel`


def read_records(run_dirs: list[str | os.PathLike], source: str | None = None,
                 objective: str | None = None) -> dict[str, pd.DataFrame]:
    """Each run directory's evaluation log (`eval`, the default) or training log (`metrics`, only
    the rows of `objective` when given), keyed by the run's model name (its directory name)."""
    source = source or "eval"
    if source not in RECORDS:
        raise ValueError(f"curve source {source!r} is not one of {sorted(RECORDS)}")
    out = {}
    for d in run_dirs:
        frame = pd.read_csv(Path(d) / RECORDS[source])
        if objective is not None:
            frame = frame[frame["objective"] == objective]
        out[Path(d).name] = frame
    return out


def curve_table(evals: dict[str, pd.DataFrame], groups: list[dict], metrics: list[str], seeds: list[int]) -> pd.DataFrame:
    """Per group, metric and evaluation step: mean, std, min, max and n over the group's seeds
    (CURVE_COLUMNS); a run not given, or without a metric column, is a `not built` note."""
    out, notes = [], []
    for group in groups:
        for metric in metrics:
            runs = []
            for _, model in row_models(group["model"], seeds):
                if model not in evals:
                    notes.append(not_built_note(model))
                elif metric not in evals[model].columns:
                    notes.append(not_built_note(model, f"no {metric} column in its log"))
                else:
                    runs.append(evals[model][["step", metric]].dropna().rename(columns={metric: "v"}))
            if not runs:
                continue
            by_step = pd.concat(runs).groupby("step")["v"]
            for step, values in by_step:
                stats = seed_stats(values)
                out.append({"group": group["label"], "model": group["model"], "metric": metric, "step": int(step),
                            **stats, "min": float(values.min()), "max": float(values.max()), "note": ""})
    rows = out + [{"group": "", "model": "", "metric": "", "step": math.nan, "mean": math.nan, "std": math.nan,
                   "min": math.nan, "max": math.nan, "n": 0, "note": n} for n in dict.fromkeys(notes)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curve_figure(frame: pd.DataFrame, groups: list[dict], metrics: list[dict], title: str,
                 xlabel: str | None = None) -> "plt.Figure":
    """One panel per metric (`{name, label}`, optional `reference`: a value drawn as a dotted
    line): per group the mean over seeds against the step, the seeds' min-max shaded."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for k, group in enumerate(groups):
            c = frame[(frame["group"] == group["label"]) & (frame["metric"] == metric["name"])]
            if c.empty:
                continue
            ax.plot(c["step"], c["mean"], color=f"C{k}", ls=group.get("linestyle", "-"), label=group["label"])
            ax.fill_between(c["step"], c["min"], c["max"], color=f"C{k}", alpha=0.2, lw=0)
        if metric.get("reference") is not None:
            ax.axhline(metric["reference"], color="0.4", ls=":", lw=1)
        ax.set_xlabel(xlabel or XLABEL)
        ax.set_ylabel(metric["label"])
        if ax.get_legend_handles_labels()[0]:  # a group drawn (the reference line has no label)
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sweep_table(tidy: pd.DataFrame, template: str, lambdas: list[float], ks: list[int], default: dict,
                columns: list[dict], seeds: list[int], default_model: str | None = None) -> pd.DataFrame:
    """Per sweep setting and column: mean, std, n over seeds (SWEEP_COLUMNS), notes for models not built."""
    out, notes = [], []
    for sweep, lam, k in sweep_settings(lambdas, ks, default):
        stem = sweep_stem(template, lam, k, default, default_model)
        for col in columns:
            values, used = [], []
            for seed, model in row_models(stem, seeds):
                v, missing = column_value(tidy, model, col)
                if v is None:
                    what = ", ".join(missing) if model in set(tidy["model"]) else ""
                    notes.append(not_built_note(model, what))
                else:
                    values.append(v)
                    used.append(str(seed))
            if values:
                out.append({"sweep": sweep, "lam": lam, "K": k, "model": stem, "column": col["label"],
                            **seed_stats(values), "seeds": " ".join(used), "note": ""})
    rows = out + [{"sweep": "", "lam": math.nan, "K": math.nan, "model": "", "column": "", "mean": math.nan,
                   "std": math.nan, "n": 0, "seeds": "", "note": n} for n in dict.fromkeys(notes)]
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def sweep_figure(frame: pd.DataFrame, columns: list[dict], default: dict, title: str) -> "plt.Figure":
    """Rows: columns (metrics); left: against lambda (symlog axis, so lambda = 0 shows) at the
    default K; right: against K at the default lambda. Mean with error bars of std over seeds."""
    fig, axes = plt.subplots(len(columns), 2, figsize=(8, 2.8 * len(columns)), squeeze=False)
    for i, col in enumerate(columns):
        for j, (sweep, x, fixed) in enumerate([("lambda", "lam", f"K = {default['K']}"),
                                                ("K", "K", f"λ = {default['lam']:g}")]):
            ax = axes[i][j]
            c = frame[(frame["sweep"] == sweep) & (frame["column"] == col["label"])].sort_values(x)
            ax.errorbar(c[x], c["mean"], yerr=np.nan_to_num(c["std"].to_numpy(dtype=float)), marker="o", capsize=3)
            if sweep == "lambda":
                ax.set_xscale("symlog", linthresh=1.0)
            else:
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted(c[x].unique()) or [1])
                ax.set_xticklabels([f"{v:g}" for v in sorted(c[x].unique())] or ["1"])
            ax.set_xlabel(f"{'λ' if sweep == 'lambda' else 'K (lower steps per upper step)'} ({fixed})")
            ax.set_ylabel(col["label"])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
