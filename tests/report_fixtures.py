"""Writers of fixture artifacts in the project's conventional layout, for the report tests:
score JSONs, training runs (eval.csv, cost.json) and sample sets (PNGs + manifest.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pruneforget.io import write_json


def write_score(root: Path, model: str, promptset: str, metric: str, value, scale: str = "tiny", **extra) -> Path:
    """results/{scale}/scores/{model}/{promptset}/{metric}.json under `root`."""
    path = root / "results" / scale / "scores" / model / promptset / f"{metric}.json"
    write_json(path, {"metric": extra.pop("metric_name", metric), "version": 1, "inputs": {}, "value": value, **extra})
    return path


def write_run(root: Path, model: str, eval_rows: list[dict] | None = None, cost: dict | None = None) -> Path:
    """A training run directory results/tiny/{model} with eval.csv and/or cost.json."""
    run = root / "results/tiny" / model
    run.mkdir(parents=True, exist_ok=True)
    if eval_rows is not None:
        pd.DataFrame(eval_rows).to_csv(run / "eval.csv", index=False)
    if cost is not None:
        write_json(run / "cost.json", cost)
    return run


def write_samples(root: Path, model: str, promptset: str, prompts: list[str], colours: list[tuple], size: int = 16) -> Path:
    """A sample set of solid-colour images, one per prompt (seed = row number)."""
    out = root / "results/tiny/samples" / model / promptset
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (prompt, colour) in enumerate(zip(prompts, colours)):
        name = f"{i:05d}.png"
        Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(out / name)
        rows.append({"file": name, "prompt": prompt, "seed": i, "guidance": 5.0, "steps": 2, "scheduler": "ddim",
                     "model": f"results/tiny/{model}"})
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out
