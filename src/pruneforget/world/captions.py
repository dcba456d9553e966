"""Captions: a template filled with the colour, the shape and a word for the style.

Training captions name a style by its canonical name or, with probability `synonym_prob`, by one
of its synonyms chosen uniformly, so the teacher learns every word for a style and a removal
method can be probed with words it was not given.
"""

from __future__ import annotations

import numpy as np

from pruneforget.world.spec import Style


def pick_style_word(style: Style, synonym_prob: float, rng: np.random.Generator) -> str:
    """The canonical name, or with probability `synonym_prob` a uniformly chosen synonym."""
    if rng.random() < synonym_prob:
        return style.synonyms[rng.integers(len(style.synonyms))]
    return style.name


def fill_template(template: str, colour: str, shape: str, style_word: str) -> str:
    """Caption from a template with {colour}, {shape} and {style} fields."""
    return template.format(colour=colour, shape=shape, style=style_word)
