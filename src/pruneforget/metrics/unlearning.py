"""The tiny world's unlearning judges, after UnlearnCanvas (PAPER_FACTS section 6), computed from
the ground-truth evaluator's predictions on a sample set and the labels its manifest carries
(each row's intended `style`, `shape`, `colour`).

    UA  (unlearning accuracy)  on a removal (or synonym) set: share of samples NOT classified as
                               the style their prompt asked for, i.e. the removed style. Higher is better.
    IRA (in-domain retain)     on the retain set: share of samples whose style is still right.
    CRA (cross-domain retain)  on the retain set: shape and colour still right; both, and their mean.
    CP  (evaluator version)    mean_i 1[p_unlearned(target style | x_i) < p_reference(target style | x_i)]
                               over same-seed pairs, the reference being the distilled model (paper
                               Table 1's CP with the evaluator's probability in place of CLIP similarity).
    Frechet distance           between the evaluator's penultimate features of samples of the
                               held-out captions and of the real held-out images.

Functions take predictions / probabilities directly, so they are checked on hand-made cases;
`pruneforget.metrics.scoring` feeds them from sample sets.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import pandas as pd
import torch

from pruneforget.metrics.cp_score import cp_score
from pruneforget.metrics.frechet import frechet_distance_of_features

Labels = Union[Sequence[str], np.ndarray, pd.Series]


def _equal(predicted: Labels, truth: Labels, what: str) -> np.ndarray:
    p, t = np.asarray(predicted, dtype=object), np.asarray(truth, dtype=object)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"{what}: {p.shape[0] if p.ndim else 0} predictions for {t.shape[0] if t.ndim else 0} labels")
    if len(p) == 0:
        raise ValueError(f"{what} of zero samples is undefined")
    return p == t


def _by_group(values: np.ndarray, groups: Labels) -> dict[str, float]:
    g = np.asarray(groups, dtype=object)
    return {str(k): float(values[g == k].mean()) for k in sorted(set(g.tolist()))}


def unlearning_accuracy(predicted_style: Labels, target_style: Labels) -> float:
    """UA = mean_i 1[predicted_style_i != target_style_i]: the share of samples of prompts asking
    for a removed style that the evaluator does not see in that style. Higher is better."""
    return float(1.0 - _equal(predicted_style, target_style, "UA").mean())


def unlearning_accuracy_per_style(predicted_style: Labels, target_style: Labels) -> dict[str, float]:
    """UA per target style (a removal set of several styles, e.g. the global setting's)."""
    return _by_group(~_equal(predicted_style, target_style, "UA"), target_style)


def in_domain_retain_accuracy(predicted_style: Labels, style: Labels) -> float:
    """IRA = mean_i 1[predicted_style_i == style_i] on retain prompts (styles that must survive)."""
    return float(_equal(predicted_style, style, "IRA").mean())


def cross_domain_retain_accuracy(predicted_shape: Labels, shape: Labels,
                                 predicted_colour: Labels, colour: Labels) -> dict[str, float]:
    """CRA on retain prompts: the content survives. {"shape": acc, "colour": acc, "mean": their mean}."""
    s = float(_equal(predicted_shape, shape, "CRA shape").mean())
    c = float(_equal(predicted_colour, colour, "CRA colour").mean())
    return {"shape": s, "colour": c, "mean": (s + c) / 2.0}


def target_probability(probabilities: torch.Tensor | np.ndarray, labels: Sequence[str],
                       target: Labels) -> np.ndarray:
    """p(target_i | x_i): row i of an (N, n_labels) probability matrix at the column of target_i,
    columns in `labels` order (the evaluator's `labels["style"]`)."""
    p = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else np.asarray(probabilities)
    t = list(np.asarray(target, dtype=object))
    if p.ndim != 2 or p.shape != (len(t), len(labels)):
        raise ValueError(f"probabilities must be ({len(t)}, {len(labels)}), got {p.shape}")
    unknown = sorted(set(t) - set(labels))
    if unknown:
        raise ValueError(f"target labels {unknown} are unknown to the evaluator (it knows {list(labels)})")
    column = {name: k for k, name in enumerate(labels)}
    return p[np.arange(len(t)), [column[x] for x in t]].astype(np.float64)


def cp_evaluator(p_unlearned: np.ndarray, p_reference: np.ndarray) -> float:
    """CP with the evaluator's target-style probability as the similarity:
    mean_i 1[p_unlearned_i < p_reference_i] over same-seed pairs (strict: ties do not count)."""
    return cp_score(p_unlearned, p_reference)


def frechet_evaluator(sample_features: torch.Tensor | np.ndarray, real_features: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between samples and real images in the evaluator's feature space."""
    return frechet_distance_of_features(sample_features, real_features)
