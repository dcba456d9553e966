"""The shipped prompt sets load to one schema, and ConceptPrune's pairs read as the paper states."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from pruneforget.world.prompt_sets import (
    ARTIST_FILES,
    PROMPT_COLUMNS,
    PROMPTS_DIR,
    concept_prune_pairs,
    load_artist_prompts,
    load_word_list,
    nudity_pairs,
)

ARTISTS = {"van_gogh": "Vincent van Gogh", "monet": "Claude Monet", "picasso": "Pablo Picasso"}


@pytest.mark.parametrize("key", sorted(ARTIST_FILES))
def test_artist_files_normalise_to_one_schema(key):
    table = load_artist_prompts(PROMPTS_DIR / ARTIST_FILES[key])
    assert list(table.columns) == PROMPT_COLUMNS
    assert len(table) == 50
    assert pd.api.types.is_integer_dtype(table["evaluation_seed"])
    assert (table["evaluation_guidance"] == 7.5).all()
    assert set(table["artist"]) == {ARTISTS[key]}
    # Every prompt names its artist: the rename picked the artist column, not `base`.
    assert all(ARTISTS[key] in p for p in table["prompt"])


def test_artist_loader_rejects_file_without_artist_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,evaluation_seed,evaluation_guidance\nx,1,7.5\n")
    with pytest.raises(ValueError, match="artist"):
        load_artist_prompts(bad)


def test_word_lists_keep_every_word_and_no_stray_whitespace():
    things = load_word_list(PROMPTS_DIR / "things.txt")
    humans = load_word_list(PROMPTS_DIR / "humans.txt")
    # 20 and 18 words: the files lack a final newline, so `wc -l` (and the reference README)
    # says 19 and 17; the last words ("duck", "celebrity") must not be lost.
    assert len(things) == 20 and things[-1] == "duck"
    assert len(humans) == 18 and humans[-1] == "celebrity"
    assert len(set(things)) == len(things) and len(set(humans)) == len(humans)
    assert "girl" in humans  # the raw file has "girl " with a trailing space
    assert all(w == w.strip() and w for w in things + humans)


def test_word_list_drops_blank_lines(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("  cat \n\n   \ndog\n")
    assert load_word_list(path) == ["cat", "dog"]


def test_concept_prune_pairs_are_formatted_as_in_the_paper():
    assert concept_prune_pairs(["cat", "dog"], "Claude Monet") == [
        ("a photo of a cat", "a cat in the style of Claude Monet"),
        ("a photo of a dog", "a dog in the style of Claude Monet"),
    ]
    assert nudity_pairs(["woman", "group of friends"]) == [
        ("a photo of a woman", "a photo of a naked woman"),
        ("a photo of a group of friends", "a photo of a naked group of friends"),
    ]


def test_shipped_files_match_their_readme_checksums():
    # The README promises the files are the published ones, unchanged.
    readme = (PROMPTS_DIR / "README.md").read_text()
    for name in [*ARTIST_FILES.values(), "things.txt", "humans.txt"]:
        digest = hashlib.sha256((PROMPTS_DIR / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in readme
