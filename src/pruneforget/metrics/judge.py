"""Judging images against their intended labels with the ground-truth evaluator.

The tiny world's analogue of UnlearnCanvas' accuracies: on removal prompts a low style accuracy
means the style is gone (unlearning accuracy = 1 - style_acc); on retain prompts a high one means
the other styles survived; shape and colour accuracy say whether the content survived.
`per_style[...]["predicted_style"]` shows where an erased style went (to a near neighbour?).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pruneforget.metrics.evaluator import Evaluator
from pruneforget.sample import MANIFEST_COLUMNS, expand_seeds, generate, prompt_seeds
from pruneforget.world.tables import LABEL_COLUMNS

JUDGE_METRIC, JUDGE_VERSION = "tiny_judge", 1


def score_predictions(predicted: dict[str, list[str]], truth: pd.DataFrame,
                      known: dict[str, list[str]]) -> tuple[dict, dict]:
    """Accuracy of `predicted` labels against the label columns of `truth` present in it.

    Returns (value, per_style): value = {"<head>_acc": ...} overall; per_style (when truth has a
    style column) = {style: {"n", "<head>_acc"..., "predicted_style": {label: share}}}.
    Raises ValueError if a true label is unknown to the evaluator (a different world)."""
    heads = [h for h in LABEL_COLUMNS if h in truth.columns and h in predicted]
    if not heads:
        raise ValueError(f"no label column to judge: need one of {LABEL_COLUMNS} in the manifest")
    correct = {}
    for h in heads:
        unknown = sorted(set(truth[h]) - set(known[h]))
        if unknown:
            raise ValueError(f"{h} labels {unknown} are unknown to the evaluator (it knows {known[h]}); "
                             "judge with the evaluator trained on the same world")
        correct[h] = np.asarray(predicted[h]) == truth[h].to_numpy()
    value = {f"{h}_acc": float(correct[h].mean()) for h in heads}
    per_style = {}
    if "style" in heads:
        pred_style = pd.Series(predicted["style"])
        for s in [s for s in known["style"] if s in set(truth["style"])]:
            rows = (truth["style"] == s).to_numpy()
            shares = pred_style[rows].value_counts(normalize=True)
            per_style[s] = {"n": int(rows.sum()), **{f"{h}_acc": float(correct[h][rows].mean()) for h in heads},
                            "predicted_style": {k: float(v) for k, v in sorted(shares.items())}}
    return value, per_style


def judge_samples(samples_dir: str | os.PathLike, evaluator: Evaluator) -> dict:
    """Score a sample set directory (PNGs + manifest.csv with label columns) with `evaluator`.

    Returns the score JSON body: metric, version, value (per-head accuracy), per_style, n."""
    root = Path(samples_dir)
    manifest = pd.read_csv(root / "manifest.csv", dtype={c: str for c in LABEL_COLUMNS}, keep_default_na=False)
    if "file" not in manifest.columns:
        raise ValueError(f"{root / 'manifest.csv'} has no 'file' column (expected {MANIFEST_COLUMNS} + labels)")
    if manifest.empty:
        raise ValueError(f"{root / 'manifest.csv'} has no rows")
    images = [Image.open(root / f).convert("RGB") for f in manifest["file"]]
    value, per_style = score_predictions(evaluator.predict(images), manifest, evaluator.labels)
    models = sorted(set(manifest["model"].astype(str))) if "model" in manifest.columns else []
    return {"metric": JUDGE_METRIC, "version": JUDGE_VERSION, "value": value, "per_style": per_style,
            "n": len(manifest), "models": models}


def judge_pipeline(pipe, evaluator: Evaluator, prompts: pd.DataFrame, seeds_per_prompt: int,
                   guidance: float, steps: int) -> dict[str, float]:
    """Per-head accuracy of `pipe`'s images for a prompt table, in memory (no sample directory):
    each prompt drawn `seeds_per_prompt` times with the sample rule's seeds. For probes and tests
    that compare a model before and after an edit; the workflow scores sample sets instead."""
    index, _, seeds = expand_seeds(prompt_seeds(prompts, base_seed=0), seeds_per_prompt)
    truth = prompts.iloc[index].reset_index(drop=True).astype({h: str for h in LABEL_COLUMNS if h in prompts})
    images = generate(pipe, truth["prompt"].tolist(), seeds, guidance, steps)
    return score_predictions(evaluator.predict(images), truth, evaluator.labels)[0]
