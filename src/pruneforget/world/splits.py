"""Which images exist: every style x shape x colour combination, repeated, per split.

Each row carries its own random stream, keyed by (world seed, split, row index), so an image
never depends on how many other images are drawn or in which order (and a build can be split
across processes). D_f, the fine-tuning set, is the training set minus the removed styles.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pruneforget.world.captions import fill_template, pick_style_word
from pruneforget.world.spec import WorldSpec

# Stream keys: one per split and per use, so captions and pixels draw independent numbers.
SPLIT_STREAMS = {"train": 1, "val": 2}
CAPTION_STREAM, IMAGE_STREAM = 0, 1


def row_rng(spec: WorldSpec, split: str, index: int, use: int) -> np.random.Generator:
    """The random stream of row `index` of `split` for `use` (captions or pixels)."""
    return np.random.default_rng([spec.seed, SPLIT_STREAMS[split], index, use])


def plan_split(spec: WorldSpec, split: str, per_combo: int, first_id: int) -> pd.DataFrame:
    """Rows (image, caption, image_id, style, shape, colour, style_word) of one image split.

    Every style x shape x colour combination appears `per_combo` times; ids count up from
    `first_id` so ids are unique across splits; captions rotate through templates at random."""
    rows = []
    combos = itertools.product(spec.styles.values(), spec.shapes, spec.colours, range(per_combo))
    for i, (style, shape, colour, _) in enumerate(combos):
        rng = row_rng(spec, split, i, CAPTION_STREAM)
        word = pick_style_word(style, spec.synonym_prob, rng)
        template = spec.templates[rng.integers(len(spec.templates))]
        image_id = first_id + i
        rows.append({
            "image": f"images/{split}/{image_id:06d}.png",
            "caption": fill_template(template, colour, shape, word),
            "image_id": image_id,
            "style": style.name,
            "shape": shape,
            "colour": colour,
            "style_word": word,
        })
    return pd.DataFrame(rows)


def finetune_split(train: pd.DataFrame, remove_styles: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """D_f: the training rows whose style is not being removed (all of them, and only them)."""
    return train[~train["style"].isin(list(remove_styles))].reset_index(drop=True)
