"""Paper-scale FID against COCO val2017 (paper section 4, Tables 1 and 3; Fig. 4/5 use the same).

The paper computes FID with clean-fid in `legacy_pytorch` mode against COCO val2017 resized to
512. The reference side never changes, so its Inception statistics are computed once (rule
`fid_reference_stats`) and stored under results/ instead of clean-fid's package folder, where
`make_custom_stats` would put them (outside the workflow's view, lost with the environment):

    results/sd21/fid_reference/stats.npz    mu (2048,), sigma (2048, 2048): float64
    results/sd21/fid_reference/info.json    images, size, mode, how the images were resized

A sample set is then scored by extracting its features with the same clean-fid feature extractor
and mode, and taking the Frechet distance (`frechet.frechet_distance`, the arithmetic clean-fid
uses) to the stored statistics; that is what `cleanfid.fid.compute_fid` does for custom stats.

"Resized to 512": each val image (640 x 480 and similar) is center-cropped to a square and
resized to 512 x 512 (PIL bicubic) before clean-fid's own resize to 299, so the reference
images have the square framing of generated samples instead of being stretched.

clean-fid pulls torchvision, which only the cluster's `paper` extra installs: it is imported
inside the functions, with an error naming the extra when missing.

Features (`score.fid_features`): `inception`, clean-fid's Inception in `fid_mode` (the paper's
FID); or `clip`, the image embeddings of `score.clip_model`, which run without torchvision: the
sd21 smoke's extractor on a CPU machine. It is not the paper's FID (other features, other
numbers); the same arithmetic and files. The reference records its extractor in info.json and
the samples are always embedded with the reference's, so the two sides never differ.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pruneforget.io import read_json, write_json
from pruneforget.metrics.frechet import feature_stats, frechet_distance

STATS_FILE, INFO_FILE = "stats.npz", "info.json"


def _cleanfid():
    try:
        from cleanfid import fid
        from cleanfid.features import build_feature_extractor
    except ImportError as err:
        raise ImportError('FID needs clean-fid (and torchvision): pip install -e ".[paper]" (cluster only)') from err
    return fid, build_feature_extractor


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> the central square, resized to (size, size) with PIL bicubic; uint8."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    if side != size:
        square = square.resize((size, size), resample=Image.BICUBIC)
    return np.asarray(square, dtype=np.uint8)


def clean_fid_features(files: Sequence[str | os.PathLike], mode: str = "legacy_pytorch", resize_to: int | None = None,
                       batch_size: int = 32, num_workers: int = 8, device: str | None = None) -> np.ndarray:
    """clean-fid Inception features (N, 2048) of image files, optionally center-cropped and
    resized to `resize_to` first (the COCO reference side)."""
    fid, build_feature_extractor = _cleanfid()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_feature_extractor(mode, dev)
    transform = functools.partial(center_crop_resize, size=resize_to) if resize_to else None
    return fid.get_files_features([str(f) for f in files], model, num_workers=num_workers, batch_size=batch_size,
                                  device=dev, mode=mode, custom_image_tranform=transform,
                                  description=f"clean-fid features ({len(files)} images)")


@torch.no_grad()
def clip_image_features(files: Sequence[str | os.PathLike], clip_model: str, resize_to: int | None = None,
                        batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """CLIP image embeddings (N, projection_dim) of image files, optionally center-cropped and
    resized to `resize_to` first (as the reference side of `clean_fid_features`)."""
    from pruneforget.metrics.clip_score import _embedding, load_clip, preprocess_images
    from pruneforget.metrics.sample_set import image_batches

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, _ = load_clip(clip_model, dev)
    size = model.config.vision_config.image_size
    parts = []
    for images in image_batches([Path(f) for f in files], batch_size):
        if resize_to:
            images = [Image.fromarray(center_crop_resize(np.asarray(im), resize_to)) for im in images]
        pixels = preprocess_images(images, size).to(dev)
        parts.append(_embedding(model.get_image_features(pixel_values=pixels)).float().cpu().double().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.config.projection_dim))


def fid_features(files: Sequence[str | os.PathLike], extractor: dict, resize_to: int | None = None,
                 batch_size: int = 32, num_workers: int = 8, device: str | None = None) -> np.ndarray:
    """Features of `files` by `extractor` ({"features": "inception", "mode": ...} or
    {"features": "clip", "clip_model": ...}), the dict a reference's info.json records."""
    kind = extractor.get("features", "inception")
    if kind == "inception":
        return clean_fid_features(files, mode=extractor["mode"], resize_to=resize_to, batch_size=batch_size,
                                  num_workers=num_workers, device=device)
    if kind == "clip":
        return clip_image_features(files, extractor["clip_model"], resize_to=resize_to, batch_size=batch_size,
                                   device=device)
    raise ValueError(f"unknown FID features {kind!r}: use inception (clean-fid) or clip")


def write_reference_stats(out_dir: str | os.PathLike, features: np.ndarray, info: dict) -> None:
    """Save mu / sigma of `features` and a description (inside an atomic directory)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mu, sigma = feature_stats(features)
    np.savez(out / STATS_FILE, mu=mu, sigma=sigma)
    write_json(out / INFO_FILE, {**info, "images": int(features.shape[0]), "feature_dim": int(features.shape[1])})


def read_reference_stats(stats_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu, sigma, info) written by `write_reference_stats`; FileNotFoundError naming the missing file."""
    root = Path(stats_dir)
    for name in (STATS_FILE, INFO_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"FID reference statistics {root / name} do not exist; "
                                    "build them first (rule fid_reference_stats)")
    with np.load(root / STATS_FILE) as stats:
        return stats["mu"], stats["sigma"], read_json(root / INFO_FILE)


def fid_against_reference(sample_files: Sequence[str | os.PathLike], stats_dir: str | os.PathLike,
                          batch_size: int = 32, num_workers: int = 8, device: str | None = None) -> float:
    """FID of sample images against stored reference statistics, with the reference's extractor."""
    mu_ref, sigma_ref, info = read_reference_stats(stats_dir)
    features = fid_features(sample_files, info, batch_size=batch_size, num_workers=num_workers, device=device)
    return frechet_distance(*feature_stats(features), mu_ref, sigma_ref)
