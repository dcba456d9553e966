"""Frechet distance (FID formula) on hand-checkable Gaussians and sampled features."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pruneforget.metrics.frechet import (
    _trace_sqrt_product_eigh,
    _trace_sqrt_product_scipy,
    clean_fid_score,
    feature_stats,
    frechet_distance,
    frechet_distance_of_features,
)


def _features(seed: int, n: int = 400, d: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = _features(0)
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_hand_formula_in_one_dimension():
    m1, s1, m2, s2 = 0.3, 2.0, -1.2, 0.5
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * np.sqrt(s1 * s2)
    assert frechet_distance(np.array([m1]), np.array([[s1]]), np.array([m2]), np.array([[s2]])) == pytest.approx(expected)


def test_frechet_distance_matches_hand_formula_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected)


def test_frechet_distance_grows_with_added_noise():
    x = _features(1)
    rng = np.random.default_rng(2)
    noise = rng.normal(size=x.shape)
    d = [frechet_distance_of_features(x, x + s * noise) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(d, d[1:])), d
    assert d[0] > 0


def test_scipy_and_eigen_routes_agree():
    _, s1 = feature_stats(_features(3))
    _, s2 = feature_stats(_features(4))
    assert _trace_sqrt_product_eigh(s1, s2) == pytest.approx(_trace_sqrt_product_scipy(s1, s2, 1e-6), rel=1e-8)


def test_feature_stats_accepts_torch_and_handles_one_dimension():
    x = torch.tensor([[1.0], [2.0], [4.0]])
    mu, sigma = feature_stats(x)
    assert mu.shape == (1,) and sigma.shape == (1, 1)
    assert mu[0] == pytest.approx(7 / 3) and sigma[0, 0] == pytest.approx(np.var([1, 2, 4], ddof=1))
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 3)))


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_clean_fid_score_names_the_paper_extra_when_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cleanfid", None)  # import of cleanfid now fails
    with pytest.raises(ImportError, match=r'pip install -e "\.\[paper\]"'):
        clean_fid_score(tmp_path, tmp_path)


def test_frechet_distance_without_scipy_uses_eigen_route(monkeypatch):
    x, y = _features(5), _features(6)
    with_scipy = frechet_distance_of_features(x, y)
    monkeypatch.setitem(sys.modules, "scipy", None)  # import of scipy now fails
    monkeypatch.setitem(sys.modules, "scipy.linalg", None)
    assert frechet_distance_of_features(x, y) == pytest.approx(with_scipy, rel=1e-8)
