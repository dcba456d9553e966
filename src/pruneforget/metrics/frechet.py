"""Frechet distance between two image sets, seen as Gaussians in a feature space (FID).

    d^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2})

(Heusel et al. 2017, Eq. 6; paper section 4: COCO retention FID, Fig. 4/5 FID curves.)

Two routes to the same number:
- tiny world: `frechet_distance_of_features` on the evaluator's penultimate features,
  `pruneforget.metrics.evaluator.load_evaluator(dir).features(images)`;
- paper scale: `clean_fid_score`, clean-fid in legacy_pytorch mode (Inception, as the paper reports).
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

Features = Union[np.ndarray, torch.Tensor]


def feature_stats(features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64.

    float64 because the trace of the matrix square root subtracts nearly equal large numbers.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    # atleast_2d: np.cov returns a 0-d array for D = 1.
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """Tr((Sigma_1 Sigma_2)^{1/2}) the way pytorch-fid and clean-fid compute it (scipy sqrtm),
    so tiny-world numbers go through the same arithmetic as the paper-scale tool."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product (fewer samples than dimensions): regularise as pytorch-fid does.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off makes tiny imaginary parts; a large one means the inputs are not covariances.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has imaginary part {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((Sigma_1 Sigma_2)^{1/2}) through symmetric eigen-decompositions only.

    Sigma_1 Sigma_2 is similar to S Sigma_2 S with S = Sigma_1^{1/2}, which is symmetric PSD,
    so the trace is the sum of square roots of its (clipped non-negative) eigenvalues.
    """
    w1, v1 = np.linalg.eigh(sigma1)
    s = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    m = s @ sigma2 @ s
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    # scipy is not a declared dependency (it arrives through other packages), so fall back
    # to the eigen route, which agrees to round-off (tested).
    try:
        import scipy.linalg  # noqa: F401
    except ImportError:
        return _trace_sqrt_product_eigh(sigma1, sigma2)
    return _trace_sqrt_product_scipy(sigma1, sigma2, eps)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2) (FID, Heusel et al. Eq. 6):
    ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be equal-length vectors, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    tr_covmean = _trace_sqrt_product(sigma1, sigma2, eps)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_of_features(a: Features, b: Features) -> float:
    """Frechet distance between two feature sets (N_a, D) and (N_b, D), each fit by a Gaussian."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def clean_fid_score(dir_a: str | os.PathLike, dir_b_or_stats_name: str | os.PathLike,
                    mode: str = "legacy_pytorch", batch_size: int = 32, num_workers: int = 8,
                    device: str | None = None) -> float:
    """Paper-scale FID with clean-fid (paper section 4: legacy_pytorch mode, against COCO val2017
    resized to 512). The second argument is a folder of reference images, or the name of custom
    statistics made once with `cleanfid.fid.make_custom_stats(name, folder, mode=mode)`.

    clean-fid is imported here, not at module top, because it pulls torchvision, which only the
    cluster's `paper` extra installs.
    """
    try:
        from cleanfid import fid
    except ImportError as err:
        raise ImportError(
            'clean_fid_score needs clean-fid (and torchvision): pip install -e ".[paper]"'
        ) from err
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    common = dict(mode=mode, batch_size=batch_size, num_workers=num_workers, device=dev)
    if os.path.isdir(dir_b_or_stats_name):
        return float(fid.compute_fid(str(dir_a), str(dir_b_or_stats_name), **common))
    return float(fid.compute_fid(str(dir_a), dataset_name=str(dir_b_or_stats_name),
                                 dataset_split="custom", **common))
