"""Texture kinds: the code side of a style. Config maps each style name to one kind plus parameters.

A texture is a function of pixel coordinates returning an ink field t in [0, 1] that darkens
the whole image (shape and background alike), so the style is visible everywhere. Lengths are
in output pixels; the renderer passes coordinates already scaled for supersampling. Every kind
takes a random phase, so no two images share the exact pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class TextureKind:
    """A texture generator and its parameters' defaults (the only keys config may set)."""

    fn: Callable[[Array, Array, dict, np.random.Generator], Array]
    defaults: dict


def _rotate(yy: Array, xx: Array, angle_deg: float) -> tuple[Array, Array]:
    """Coordinates (u across the pattern, v along it) for a pattern tilted by `angle_deg`.

    angle 0 gives horizontal bands (u = y), 90 vertical bands (u = x)."""
    a = np.deg2rad(angle_deg)
    u = yy * np.cos(a) + xx * np.sin(a)
    v = -yy * np.sin(a) + xx * np.cos(a)
    return u, v


def _bands(u: Array, period: float, duty: float, phase: float) -> Array:
    """1 where the coordinate falls in the inked part of a band of width duty * period."""
    return (np.mod(u / period + phase, 1.0) < duty).astype(np.float32)


def _plain(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    return np.zeros_like(yy, dtype=np.float32)


def _stripes(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    u, _ = _rotate(yy, xx, p["angle"])
    return _bands(u, p["period"], p["duty"], rng.random())


def _plaid(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    # Two perpendicular stripe sets averaged: crossings are darkest (gingham), a near neighbour
    # of both horizontal and vertical stripes.
    u, v = _rotate(yy, xx, p["angle"])
    return 0.5 * (_bands(u, p["period"], p["duty"], rng.random()) + _bands(v, p["period"], p["duty"], rng.random()))


def _checker(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    u, v = _rotate(yy, xx, p["angle"])
    a = _bands(u, p["period"], 0.5, rng.random())
    b = _bands(v, p["period"], 0.5, rng.random())
    return np.abs(a - b)


def _dots(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    # A lattice of discs; odd rows shifted by `stagger` of a period.
    u, v = _rotate(yy, xx, p["angle"])
    u = u / p["period"] + rng.random()
    row = np.floor(u)
    v = v / p["period"] + rng.random() + p["stagger"] * np.mod(row, 2)
    du = np.mod(u, 1.0) - 0.5
    dv = np.mod(v, 1.0) - 0.5
    return ((du**2 + dv**2) * p["period"] ** 2 < p["radius"] ** 2).astype(np.float32)


def _waves(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    # Stripes whose across-coordinate is displaced by a sine along them: stripes with amplitude 0.
    u, v = _rotate(yy, xx, p["angle"])
    u = u + p["amplitude"] * np.sin(2 * np.pi * (v / p["wavelength"] + rng.random()))
    return _bands(u, p["period"], p["duty"], rng.random())


def _rings(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    # Concentric circles about a point near the image centre (yy, xx are centred coordinates).
    cy, cx = (rng.random(2) - 0.5) * 2 * p["centre_jitter"]
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return _bands(r, p["period"], p["duty"], rng.random())


def _speckle(yy: Array, xx: Array, p: dict, rng: np.random.Generator) -> Array:
    # Random grains of `grain` output pixels: an irregular neighbour of dots.
    grain = p["grain"]
    gy = np.floor((yy - yy.min()) / grain).astype(np.int64)
    gx = np.floor((xx - xx.min()) / grain).astype(np.int64)
    cells = rng.random((gy.max() + 1, gx.max() + 1)) < p["density"]
    return cells[gy, gx].astype(np.float32)


TEXTURES: dict[str, TextureKind] = {
    "plain": TextureKind(_plain, {}),
    "stripes": TextureKind(_stripes, {"period": 6.0, "angle": 0.0, "duty": 0.5}),
    "plaid": TextureKind(_plaid, {"period": 8.0, "angle": 0.0, "duty": 0.35}),
    "checker": TextureKind(_checker, {"period": 8.0, "angle": 0.0}),
    "dots": TextureKind(_dots, {"period": 6.0, "radius": 1.6, "angle": 0.0, "stagger": 0.5}),
    "waves": TextureKind(_waves, {"period": 6.0, "angle": 0.0, "duty": 0.5, "amplitude": 1.5, "wavelength": 12.0}),
    "rings": TextureKind(_rings, {"period": 5.0, "duty": 0.5, "centre_jitter": 6.0}),
    "speckle": TextureKind(_speckle, {"density": 0.3, "grain": 1.0}),
}


def texture_params(kind: str, overrides: dict) -> dict:
    """The parameters of texture `kind`: its defaults updated by `overrides` (validated keys)."""
    return {**TEXTURES[kind].defaults, **overrides}


def render_texture(kind: str, params: dict, yy: Array, xx: Array, rng: np.random.Generator,
                   period_jitter: float = 0.0, angle_jitter: float = 0.0) -> Array:
    """Ink field in [0, 1] of texture `kind` at coordinates (yy, xx), with per-image jitter:
    periods scaled by 1 + U(-period_jitter, period_jitter), angles shifted by U(-angle_jitter, angle_jitter)."""
    p = dict(params)
    scale = 1.0 + rng.uniform(-period_jitter, period_jitter)
    for key in ("period", "wavelength", "radius", "amplitude", "grain"):
        if key in p:
            p[key] = p[key] * scale
    if "angle" in p:
        p["angle"] = p["angle"] + rng.uniform(-angle_jitter, angle_jitter)
    return TEXTURES[kind].fn(yy, xx, p, rng)
