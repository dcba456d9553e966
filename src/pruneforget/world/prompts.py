"""Evaluation prompt sets: removal prompts per removable style, their synonym twins, retain prompts.

A removal set has `prompts_per_style` rows asking for the style by its canonical name, cycling
through every shape x colour combination (shuffled) and every template; its synonym twin has the
same rows (same seeds, shapes, colours, templates) with the style named by its synonyms in turn,
so the two sets differ only in the word. Seeds are drawn once per style from the world seed.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pruneforget.world.captions import fill_template
from pruneforget.world.spec import Style, WorldSpec

PROMPT_STREAM = 3
MAX_SEED = 100_000  # evaluation seeds in [0, MAX_SEED), like the paper's prompt sets


def _rows(spec: WorldSpec, style: Style, n: int, words: list[str]) -> pd.DataFrame:
    index = list(spec.styles).index(style.name)
    rng = np.random.default_rng([spec.seed, PROMPT_STREAM, index])
    combos = list(itertools.product(spec.shapes, spec.colours))
    order = rng.permutation(len(combos))
    seeds = rng.integers(0, MAX_SEED, n)
    rows = []
    for i in range(n):
        shape, colour = combos[order[i % len(combos)]]
        word = words[i % len(words)]
        template = spec.templates[i % len(spec.templates)]
        rows.append({"prompt": fill_template(template, colour, shape, word), "evaluation_seed": int(seeds[i]),
                     "style": style.name, "shape": shape, "colour": colour, "style_word": word})
    return pd.DataFrame(rows)


def removal_prompts(spec: WorldSpec, style: Style) -> pd.DataFrame:
    """`prompts_per_style` prompts asking for `style` by its canonical name."""
    return _rows(spec, style, spec.prompts_per_style, [style.name])


def synonym_prompts(spec: WorldSpec, style: Style) -> pd.DataFrame:
    """The removal prompts of `style` with its synonyms in place of its name (robustness probe)."""
    return _rows(spec, style, spec.prompts_per_style, list(style.synonyms))


def retain_prompts(spec: WorldSpec) -> pd.DataFrame:
    """`retain_prompts_per_style` canonical-name prompts for every style that is not removed."""
    return pd.concat([_rows(spec, spec.styles[s], spec.retain_prompts_per_style, [s]) for s in spec.retain_styles],
                     ignore_index=True)
