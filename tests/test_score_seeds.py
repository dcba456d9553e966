"""Several seeds per prompt (issue 7: at least 8 per prompt in the tiny world): seed i of prompt p
is evaluation_seed_p + i; seeds are distinct within a prompt, reproducible, and the manifest
records which prompt and which draw each image is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pruneforget.sample import expand_seeds, sample_prompt_set

PROMPTS = pd.DataFrame({"prompt": ["a red circle in the style of stripes", "a blue square, dots style"],
                        "evaluation_seed": [41, 7], "style": ["stripes", "dots"]})


def test_expand_seeds_offsets_each_prompts_evaluation_seed():
    prompt_index, seed_index, seeds = expand_seeds([41, 7], 3)
    assert prompt_index == [0, 0, 0, 1, 1, 1] and seed_index == [0, 1, 2, 0, 1, 2]
    assert seeds == [41, 42, 43, 7, 8, 9]
    assert expand_seeds([41, 7], 1) == ([0, 1], [0, 0], [41, 7])  # one seed: the prompt set's own seeds
    with pytest.raises(ValueError, match="seeds_per_prompt"):
        expand_seeds([1], 0)


def _pixels(d, n):
    return [np.asarray(Image.open(d / f"{i:05d}.png")) for i in range(n)]


def test_seeds_per_prompt_gives_distinct_reproducible_images_and_labels(tiny_pipe, tmp_path):
    kwargs = dict(guidance=5.0, steps=2, scheduler="ddim", model_name="tiny", seeds_per_prompt=3)
    manifest = sample_prompt_set(tiny_pipe, PROMPTS, tmp_path / "a", batch_size=4, **kwargs)
    assert list(manifest["seed"]) == [41, 42, 43, 7, 8, 9]
    assert list(manifest["prompt_index"]) == [0, 0, 0, 1, 1, 1] and list(manifest["seed_index"]) == [0, 1, 2] * 2
    assert list(manifest["style"]) == ["stripes"] * 3 + ["dots"] * 3
    assert list(manifest["prompt"]) == [PROMPTS["prompt"][0]] * 3 + [PROMPTS["prompt"][1]] * 3
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "manifest.csv"), manifest)
    a = _pixels(tmp_path / "a", 6)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])  # distinct draws of a prompt
    sample_prompt_set(tiny_pipe, PROMPTS, tmp_path / "b", batch_size=5, **kwargs)
    for x, y in zip(a, _pixels(tmp_path / "b", 6)):  # reproducible, whatever the batching
        np.testing.assert_array_equal(x, y)
    # Draw 0 of each prompt is the image a one-seed run makes: more seeds only add images.
    one = sample_prompt_set(tiny_pipe, PROMPTS, tmp_path / "c", guidance=5.0, steps=2, scheduler="ddim", model_name="tiny")
    assert list(one["seed"]) == [41, 7]
    c = _pixels(tmp_path / "c", 2)
    np.testing.assert_array_equal(c[0], a[0])
    np.testing.assert_array_equal(c[1], a[3])
