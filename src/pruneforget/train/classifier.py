"""Training the ground-truth evaluator on real world images (train.csv), as one objective
("evaluator") of the training loop (train/loop.py), and scoring it on val.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from pruneforget.metrics.evaluator import Evaluator, EvaluatorNet, to_tensor
from pruneforget.metrics.judge import score_predictions
from pruneforget.train.batches import EpochOrder, sample_generator
from pruneforget.train.loop import train
from pruneforget.train.objective import Objective, constant_schedule, scratch_settings
from pruneforget.world.tables import LABEL_COLUMNS

EVALUATOR_KEYS = {"steps", "batch_size", "lr", "weight_decay", "width", "feature_dim", "noise", "blur_prob",
                  "blur_sigma", "seed", "min_accuracy"}


def check_params(params: dict) -> None:
    """Reject a bad `evaluator` config section, naming the key and the fix."""
    unknown, missing = sorted(set(params) - EVALUATOR_KEYS), sorted(EVALUATOR_KEYS - set(params))
    if unknown:
        raise ValueError(f"evaluator.{unknown[0]}: unknown key; use one of {sorted(EVALUATOR_KEYS)}")
    if missing:
        raise ValueError(f"evaluator.{missing[0]}: missing; add it (see config/config.yaml)")
    for key in ("steps", "batch_size", "width", "feature_dim"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise ValueError(f"evaluator.{key}: got {params[key]!r}; set an integer >= 1")
    for key in ("lr", "weight_decay", "noise", "blur_prob", "blur_sigma", "min_accuracy"):
        if not isinstance(params[key], (int, float)) or params[key] < 0:
            raise ValueError(f"evaluator.{key}: got {params[key]!r}; set a number >= 0")
    if params["blur_prob"] > 1 or params["min_accuracy"] > 1:
        raise ValueError("evaluator.blur_prob and evaluator.min_accuracy are probabilities; set them in [0, 1]")


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of each image by its own `sigma` (pixels; 0 leaves it unchanged)."""
    n, c, h, w = x.shape
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = (k / k.sum(-1, keepdim=True)).repeat_interleave(c, 0)  # one kernel per image channel
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    return y.reshape(n, c, h, w)


class AugmentedImages:
    """Sample position p -> an augmented labelled image: the image of a seeded per-epoch order,
    blurred with probability `blur_prob` by a sigma in [0, blur_sigma), plus Gaussian noise of an
    amplitude in [0, noise); every draw a function of (seed, p) only.

    Why: generated samples are softer and noisier than rendered ones; trained on some of both,
    the judge reads faint, blurred stripes as stripes rather than as plain or speckle."""

    def __init__(self, images: Tensor, labels: dict[str, Tensor], params: dict):
        self.images, self.labels, self.params = images, labels, params
        self.order = EpochOrder(len(images), params["seed"])

    def __call__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        p = self.params
        index, sigma, noise = [], [], []
        for position in positions:
            g = sample_generator(p["seed"], position)
            index.append(self.order(position))
            s = p["blur_sigma"] * float(torch.rand(1, generator=g))
            sigma.append(s if float(torch.rand(1, generator=g)) < p["blur_prob"] else 0.0)
            amplitude = p["noise"] * float(torch.rand(1, generator=g))
            noise.append(amplitude * torch.randn(self.images.shape[1:], generator=g))
        idx = torch.tensor(index)
        x = self.images[idx]
        if p["blur_prob"] > 0 and p["blur_sigma"] > 0:
            x = _gaussian_blur(x, torch.tensor(sigma, dtype=x.dtype))
        return {"x": x + torch.stack(noise), **{f"label_{h}": y[idx] for h, y in self.labels.items()}}


def label_indices(table: pd.DataFrame, labels: dict[str, list[str]]) -> dict[str, Tensor]:
    """Label columns of `table` as class indices in the world's label orders."""
    return {h: torch.tensor([labels[h].index(v) for v in table[h]]) for h in labels}


def train_evaluator(images: np.ndarray, table: pd.DataFrame, labels: dict[str, list[str]], params: dict,
                    work_dir: Path, progress: bool = True) -> Evaluator:
    """Train an EvaluatorNet on uint8 images (N, H, W, 3) with the label columns of `table`,
    resumable from the checkpoints in `work_dir` (which also gets metrics.csv and cost.json).

    AdamW with a cosine learning-rate decay over `steps` batches in seeded epoch order; summed
    cross-entropy over the heads; initial weights seeded by `params['seed']`."""
    torch.manual_seed(params["seed"])
    size = images.shape[1]
    net = EvaluatorNet({h: len(v) for h, v in labels.items()}, params["width"], params["feature_dim"])

    def loss(models, batch):
        out = models["evaluator"](batch["x"])
        return {"total": sum(F.cross_entropy(out[h], batch[f"label_{h}"]) for h in labels)}

    objective = Objective(name="evaluator", params=list(net.parameters()), loss=loss,
                          batches=AugmentedImages(to_tensor(images, size), label_indices(table, labels), params),
                          lr=params["lr"], weight_decay=params["weight_decay"], lr_schedule="cosine")
    train([objective], constant_schedule("evaluator"), {"evaluator": net}, scratch_settings(params, progress=progress),
          work_dir)
    return Evaluator(net.eval(), labels, size)


def held_out_accuracy(evaluator: Evaluator, images: np.ndarray, table: pd.DataFrame) -> dict:
    """accuracy.json body: per-head accuracy on held-out images, per-style breakdown, n."""
    value, per_style = score_predictions(evaluator.predict(images), table[LABEL_COLUMNS], evaluator.labels)
    return {"accuracy": value, "per_style": per_style, "n": len(table)}
