"""The tiny world's ground-truth evaluator: a small CNN naming an image's style, shape and colour.

It plays the role of the paper's style classifiers (UnlearnCanvas protocol): trained on real
world images, it judges generated samples, and its penultimate features serve a Frechet
distance. An artifact is a directory: model.safetensors, config.json (architecture and label
orders), accuracy.json (held-out accuracy, written by training).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from pruneforget.io import read_json, write_json

EVALUATOR_VERSION = 1
Images = Union[np.ndarray, Sequence[Image.Image]]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class EvaluatorNet(nn.Module):
    """Three conv stages (width, 2x, 4x; pooled between), global average pool, a feature layer,
    and one linear head per label kind."""

    def __init__(self, head_sizes: dict[str, int], width: int, feature_dim: int):
        super().__init__()
        self.width, self.feature_dim = width, feature_dim
        self.trunk = nn.Sequential(
            _block(3, width), nn.MaxPool2d(2),
            _block(width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, feature_dim), nn.ReLU(inplace=True),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, n) for k, n in head_sizes.items()})

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, feature_dim) of images scaled to [-1, 1], NCHW."""
        return self.trunk(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f = self.trunk(x)
        return {k: head(f) for k, head in self.heads.items()}


def to_tensor(images: Images, image_size: int) -> Tensor:
    """uint8 NHWC array or list of PIL images -> float NCHW in [-1, 1] at `image_size` pixels."""
    if not isinstance(images, np.ndarray):
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


class Evaluator:
    """A trained evaluator: label names per head and batched, no-grad inference."""

    def __init__(self, net: EvaluatorNet, labels: dict[str, list[str]], image_size: int, batch_size: int = 256):
        self.net = net.eval()
        self.labels = labels
        self.image_size = image_size
        self.batch_size = batch_size

    @torch.no_grad()
    def _run(self, images: Images, what: str) -> list:
        x = to_tensor(images, self.image_size)
        out = []
        for i in range(0, len(x), self.batch_size):
            xb = x[i:i + self.batch_size]
            out.append(self.net.features(xb) if what == "features" else self.net(xb))
        return out

    def probabilities(self, images: Images) -> dict[str, Tensor]:
        """Softmax probabilities per head: {head: (N, n_labels)}, columns in `labels[head]` order."""
        parts = self._run(images, "logits")
        return {k: torch.cat([p[k] for p in parts]).softmax(-1) for k in self.labels}

    def predict(self, images: Images) -> dict[str, list[str]]:
        """Most probable label name per head: {head: [label, ...]} in image order."""
        probs = self.probabilities(images)
        return {k: [self.labels[k][i] for i in p.argmax(-1).tolist()] for k, p in probs.items()}

    def features(self, images: Images) -> Tensor:
        """Penultimate features (N, feature_dim), e.g. for a Frechet distance between image sets."""
        return torch.cat(self._run(images, "features"))


def save_evaluator(evaluator: Evaluator, out_dir: str | os.PathLike, extra_config: dict | None = None) -> None:
    """Write model.safetensors and config.json into `out_dir` (inside an atomic directory)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = evaluator.net
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    config = {
        "version": EVALUATOR_VERSION,
        "labels": evaluator.labels,
        "image_size": evaluator.image_size,
        "width": net.width,
        "feature_dim": net.feature_dim,
        **(extra_config or {}),
    }
    write_json(out / "config.json", config)


def load_evaluator(path: str | os.PathLike) -> Evaluator:
    """Load an evaluator artifact directory written by `train-evaluator`."""
    path = Path(path)
    config = read_json(path / "config.json")
    if config.get("version") != EVALUATOR_VERSION:
        raise ValueError(f"{path}: evaluator version {config.get('version')!r}, this code reads {EVALUATOR_VERSION}")
    labels = config["labels"]
    net = EvaluatorNet({k: len(v) for k, v in labels.items()}, config["width"], config["feature_dim"])
    net.load_state_dict(load_file(str(path / "model.safetensors")))
    return Evaluator(net, labels, config["image_size"])
