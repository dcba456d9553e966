"""Shape kinds: binary masks on centred coordinates. Config lists the shapes a world uses by kind name.

Each mask takes coordinates (y, x) already translated to the shape's centre, rotated and divided
by its radius, so every shape spans roughly the unit disc and differs only in outline.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Array = np.ndarray


def _regular_polygon(y: Array, x: Array, sides: int) -> Array:
    """Inside of a regular polygon with circumradius 1, one vertex pointing up."""
    theta = np.arctan2(x, -y)  # 0 at "up"
    sector = 2 * np.pi / sides
    # Distance to the edge along the ray: apothem / cos(angle from the edge's normal).
    local = np.mod(theta, sector) - sector / 2
    r = np.sqrt(x**2 + y**2)
    return r * np.cos(local) <= np.cos(np.pi / sides)


def _circle(y: Array, x: Array) -> Array:
    return x**2 + y**2 <= 0.85**2  # area close to the square's, so size does not give the shape away


def _square(y: Array, x: Array) -> Array:
    return (np.abs(x) <= 0.75) & (np.abs(y) <= 0.75)


def _triangle(y: Array, x: Array) -> Array:
    # Shifted down so the visual centre, not the circumcentre, sits at the shape's position.
    return _regular_polygon(y - 0.15, x, 3)


def _star(y: Array, x: Array) -> Array:
    # Five points: inside if within the radius that oscillates between inner and outer.
    theta = np.arctan2(x, -y)
    r = np.sqrt(x**2 + y**2)
    sector = 2 * np.pi / 5
    t = np.abs(np.mod(theta, sector) - sector / 2) / (sector / 2)  # 1 at a point, 0 between
    return r <= 0.45 + 0.55 * t


def _diamond(y: Array, x: Array) -> Array:
    return np.abs(x) / 0.75 + np.abs(y) <= 1.0


def _hexagon(y: Array, x: Array) -> Array:
    return _regular_polygon(y, x, 6) & (np.abs(y) <= 0.95)


def _cross(y: Array, x: Array) -> Array:
    return ((np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)) & (np.abs(x) <= 0.95) & (np.abs(y) <= 0.95)


SHAPES: dict[str, Callable[[Array, Array], Array]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "diamond": _diamond,
    "hexagon": _hexagon,
    "cross": _cross,
}


def shape_mask(kind: str, yy: Array, xx: Array, centre: tuple[float, float], radius: float,
               rotation_deg: float) -> Array:
    """Float mask (0/1) of shape `kind` centred at `centre` (pixels), scaled to `radius`, rotated."""
    a = np.deg2rad(rotation_deg)
    y, x = yy - centre[0], xx - centre[1]
    y, x = (y * np.cos(a) - x * np.sin(a)) / radius, (y * np.sin(a) + x * np.cos(a)) / radius
    return SHAPES[kind](y, x).astype(np.float32)
