"""Training the ground-truth evaluator on real world images (train.csv), scoring it on val.csv."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from pruneforget.metrics.evaluator import Evaluator, EvaluatorNet, to_tensor
from pruneforget.metrics.judge import score_predictions
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


def _augment(x: Tensor, noise: float, blur_prob: float, blur_sigma: float, gen: torch.Generator) -> Tensor:
    # Generated samples are softer and noisier than rendered ones: train on some of both so the
    # judge reads faint, blurred stripes as stripes rather than as plain or speckle.
    if blur_prob > 0 and blur_sigma > 0:
        sigma = blur_sigma * torch.rand(len(x), generator=gen)
        sigma = torch.where(torch.rand(len(x), generator=gen) < blur_prob, sigma, torch.zeros_like(sigma))
        x = _gaussian_blur(x, sigma)
    if noise > 0:
        x = x + noise * torch.rand(len(x), 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x


def label_indices(table: pd.DataFrame, labels: dict[str, list[str]]) -> dict[str, Tensor]:
    """Label columns of `table` as class indices in the world's label orders."""
    return {h: torch.tensor([labels[h].index(v) for v in table[h]]) for h in labels}


def train_evaluator(images: np.ndarray, table: pd.DataFrame, labels: dict[str, list[str]], params: dict,
                    progress: bool = True) -> Evaluator:
    """Train an EvaluatorNet on uint8 images (N, H, W, 3) with the label columns of `table`.

    AdamW with a cosine learning-rate decay over `steps` mini-batches drawn with replacement;
    summed cross-entropy over the heads; seeded by `params['seed']`."""
    torch.manual_seed(params["seed"])
    gen = torch.Generator().manual_seed(params["seed"])
    size = images.shape[1]
    x_all = to_tensor(images, size)
    y_all = label_indices(table, labels)
    net = EvaluatorNet({h: len(v) for h, v in labels.items()}, params["width"], params["feature_dim"])
    opt = torch.optim.AdamW(net.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    steps = params["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    bar = tqdm(range(steps), desc="train evaluator", unit="step", disable=not progress, mininterval=2.0)
    for _ in bar:
        idx = torch.randint(len(x_all), (params["batch_size"],), generator=gen)
        out = net(_augment(x_all[idx], params["noise"], params["blur_prob"], params["blur_sigma"], gen))
        loss = sum(F.cross_entropy(out[h], y_all[h][idx]) for h in labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return Evaluator(net, labels, size)


def held_out_accuracy(evaluator: Evaluator, images: np.ndarray, table: pd.DataFrame) -> dict:
    """accuracy.json body: per-head accuracy on held-out images, per-style breakdown, n."""
    value, per_style = score_predictions(evaluator.predict(images), table[LABEL_COLUMNS], evaluator.labels)
    return {"accuracy": value, "per_style": per_style, "n": len(table)}
