"""Judging images against their intended labels with the ground-truth evaluator.

The tiny world's analogue of UnlearnCanvas' accuracies: on removal prompts a low style accuracy
means the style is gone (unlearning accuracy = 1 - style_acc); on retain prompts a high one means
the other styles survived; shape and colour accuracy say whether the content survived.
`per_style[...]["predicted_style"]` shows where an erased style went (to a near neighbour?).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pruneforget.metrics.evaluator import Evaluator
from pruneforget.metrics.sample_set import SampleSet, load_images
from pruneforget.sample import expand_seeds, generate, prompt_seeds
from pruneforget.world.tables import LABEL_COLUMNS

JUDGE_VERSION = 1


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


def judge_set(samples: SampleSet, evaluator: Evaluator) -> tuple[dict, dict]:
    """(value, per_style) of `score_predictions` for a sample set's images against the labels of
    its manifest: the `judge` metric of `score`."""
    return score_predictions(evaluator.predict(load_images(samples.paths)), samples.manifest, evaluator.labels)


def judge_pipeline(pipe, evaluator: Evaluator, prompts: pd.DataFrame, seeds_per_prompt: int,
                   guidance: float, steps: int) -> dict[str, float]:
    """Per-head accuracy of `pipe`'s images for a prompt table, in memory (no sample directory):
    each prompt drawn `seeds_per_prompt` times with the sample rule's seeds. For probes and tests
    that compare a model before and after an edit; the workflow scores sample sets instead."""
    index, _, seeds = expand_seeds(prompt_seeds(prompts, base_seed=0), seeds_per_prompt)
    truth = prompts.iloc[index].reset_index(drop=True).astype({h: str for h in LABEL_COLUMNS if h in prompts})
    images = generate(pipe, truth["prompt"].tolist(), seeds, guidance, steps)
    return score_predictions(evaluator.predict(images), truth, evaluator.labels)[0]
