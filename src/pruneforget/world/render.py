"""Drawing one world image: a coloured shape on a light background, the style's texture over both.

Rendering happens at `supersample` times the output size and is box-filtered down, which gives
anti-aliased edges and stripes without a graphics library.
"""

from __future__ import annotations

import numpy as np

from pruneforget.world.shapes import shape_mask
from pruneforget.world.spec import Style, WorldSpec
from pruneforget.world.textures import render_texture


def _grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel-centre coordinates in output-pixel units at the supersampled resolution."""
    n = size * supersample
    c = (np.arange(n, dtype=np.float32) + 0.5) / supersample - size / 2
    return np.meshgrid(c, c, indexing="ij")


def _jitter_rgb(rgb: tuple[int, int, int], amount: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def render_image(spec: WorldSpec, style: Style, shape: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image (H, W, 3) of `shape` in `colour` with `style`'s texture; all jitter from `rng`.

    Jitter: shape radius, centre offset and rotation (spec.shape_jitter), colour and background
    tint (spec.colour_jitter), texture phase, period and angle (spec.texture_jitter)."""
    size, ss = spec.image_size, spec.supersample
    yy, xx = _grid(size, ss)
    sj = spec.shape_jitter
    radius = rng.uniform(*sj["radius"]) * size
    centre = tuple(rng.uniform(-sj["offset"], sj["offset"], 2) * size)
    mask = shape_mask(shape, yy, xx, centre, radius, rng.uniform(-sj["rotation"], sj["rotation"]))[..., None]
    fg = _jitter_rgb(spec.colours[colour], spec.colour_jitter, rng)
    bg = _jitter_rgb(spec.background, spec.colour_jitter, rng)
    base = mask * fg + (1.0 - mask) * bg
    ink = render_texture(style.texture, style.params, yy, xx, rng,
                         period_jitter=spec.texture_jitter["period"], angle_jitter=spec.texture_jitter["angle"])
    # Texture darkens shape and background alike: the style reads over the whole image while the
    # hue of the shape (its colour label) survives.
    img = base * (1.0 - style.contrast * ink[..., None])
    img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
