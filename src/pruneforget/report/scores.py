"""Score JSONs as one tidy table, and their aggregation over training seeds.

A score lives at `results/{scale}/scores/{model}/{promptset}/{metric}.json` (its path names the
model, prompt set and metric) and holds a number or a `{name: number}` dict under `value`.
Model names follow the project's convention: `base`, `expert-80`, `ft-80-kd-pruned-s0`,
`esdx-artists-s1`, `bilevel-lam100-K20-s2`: a method, a setting, and a trailing training seed.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pruneforget.io import read_json

TIDY_COLUMNS = ["model", "stem", "method", "setting", "seed", "promptset", "metric", "name", "value"]
_SEED = re.compile(r"^(?P<stem>.+)-s(?P<seed>\d+)$")


def parse_model(model: str) -> dict:
    """Split a model name into stem (the name without its seed), method, setting and seed
    (None for models that are not training runs, like `base` or `expert-80`)."""
    m = _SEED.match(model)
    stem, seed = (m["stem"], int(m["seed"])) if m else (model, None)
    method, _, setting = stem.partition("-")
    return {"model": model, "stem": stem, "method": method, "setting": setting, "seed": seed}


def model_name(stem: str, seed: int | None) -> str:
    """The model directory name of a stem at a training seed; `base` and experts have no seed."""
    return stem if seed is None else f"{stem}-s{seed}"


def score_key(path: str | os.PathLike) -> tuple[str, str, str]:
    """(model, promptset, metric) named by a score path `.../{model}/{promptset}/{metric}.json`."""
    p = Path(path)
    return p.parent.parent.name, p.parent.name, p.stem


def tidy_scores(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per (score file, value name): TIDY_COLUMNS. A scalar value has name ""."""
    rows = []
    for path in paths:
        model, promptset, metric = score_key(path)
        value = read_json(path)["value"]
        items = value.items() if isinstance(value, dict) else [("", value)]
        for name, v in items:
            rows.append({**parse_model(model), "promptset": promptset, "metric": metric, "name": name,
                         "value": float(v)})
    frame = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame.sort_values(TIDY_COLUMNS[:-1], kind="stable", ignore_index=True)


def seed_stats(values: Iterable[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; NaN for one seed) and count of per-seed values."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    n = len(v)
    return {"mean": float(v.mean()) if n else math.nan, "std": float(v.std(ddof=1)) if n > 1 else math.nan, "n": n}


def format_stat(stats: dict, digits: int = 2) -> str:
    """`mean ± std` (just the mean for a single seed, `n/a` for none) for a rendered table cell."""
    if stats["n"] == 0 or math.isnan(stats["mean"]):
        return "n/a"
    if stats["n"] == 1 or math.isnan(stats["std"]):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def not_built_note(model: str, what: str = "") -> str:
    """The note row text of a model (or one of its scores) a table expected but was not given."""
    return f"not built: {model}" + (f" ({what})" if what else "")


def score_value(tidy: pd.DataFrame, model: str, promptset: str, metric: str, key: str | None) -> float | None:
    """One number of a score: `value[key]`, the scalar value when `key` is None, or, for a dict
    value and no key, the sum of its entries (NudeNet's per-label image counts -> all hits).
    None when the score is not in `tidy`."""
    rows = tidy[(tidy["model"] == model) & (tidy["promptset"] == promptset) & (tidy["metric"] == metric)]
    if key is not None:
        rows = rows[rows["name"] == key]
    return float(rows["value"].sum()) if len(rows) else None


def column_value(tidy: pd.DataFrame, model: str, column: dict) -> tuple[float | None, list[str]]:
    """A table column's number for one model: the mean over the column's prompt sets of
    `scale * transform(value[key])` (transform `complement` is 1 - x, e.g. unlearning accuracy
    = 1 - style accuracy). Returns (number or None, the scores that were missing)."""
    values, missing = [], []
    for promptset in column["promptsets"]:
        v = score_value(tidy, model, promptset, column["metric"], column.get("key"))
        if v is None:
            missing.append(f"{column['metric']} on {promptset}")
            continue
        if column.get("transform") == "complement":
            v = 1.0 - v
        values.append(column.get("scale", 1.0) * v)
    return (float(np.mean(values)) if values and not missing else None), missing


def seeded(stem: str) -> bool:
    """Whether a model stem names training runs (one model per seed) rather than one model:
    the teacher `base` and the pruned experts `expert-*` have no training seed."""
    return parse_model(stem)["method"] not in ("base", "expert")


def row_models(stem: str, seeds: list[int]) -> list[tuple[int | None, str]]:
    """(seed, model name) of a table row: one per seed for training runs, else the stem alone."""
    return [(s, model_name(stem, s)) for s in seeds] if seeded(stem) else [(None, stem)]
