"""The paper's shipped prompt sets: artist-erasure test prompts and ConceptPrune's word lists.

The files live in `config/prompts/` at the repository root (outside the package, next to the
other config), see its README for their source and licence. The artist CSVs come from different
authors' scripts and disagree on columns (`artist` vs `artists`, leftover pandas index columns,
an optional `base`); `load_artist_prompts` gives every file the same four columns so the
sampling and scoring code never has to know which file it got.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

# src/pruneforget/world/prompt_sets.py -> repository root is three levels above the package dir.
PROMPTS_DIR = Path(__file__).resolve().parents[3] / "config" / "prompts"

ARTIST_FILES = {
    "van_gogh": "artist_van_gogh.csv",
    "monet": "artist_monet.csv",
    "picasso": "artist_picasso.csv",
}
PROMPT_COLUMNS = ["prompt", "evaluation_seed", "evaluation_guidance", "artist"]
_ARTIST_ALIASES = ("artist", "artists")


def load_artist_prompts(path: str | os.PathLike) -> pd.DataFrame:
    """An artist prompt CSV as columns `prompt, evaluation_seed, evaluation_guidance, artist`.

    `artists` is renamed to `artist`; index leftovers (`Unnamed: 0`, ...), `case_number` and
    `base` are dropped. Seeds are ints, guidance floats, prompts stripped of stray whitespace.
    """
    path = Path(path)
    table = pd.read_csv(path)
    found = [c for c in _ARTIST_ALIASES if c in table.columns]
    if len(found) != 1:
        raise ValueError(f"{path}: need exactly one of the columns {_ARTIST_ALIASES}, found {list(table.columns)}")
    table = table.rename(columns={found[0]: "artist"})
    missing = [c for c in PROMPT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (has {list(table.columns)})")
    if table[PROMPT_COLUMNS].isna().any().any():
        raise ValueError(f"{path}: empty cells in {PROMPT_COLUMNS}")
    return pd.DataFrame({
        "prompt": table["prompt"].astype(str).str.strip(),
        "evaluation_seed": table["evaluation_seed"].astype(int),
        "evaluation_guidance": table["evaluation_guidance"].astype(float),
        "artist": table["artist"].astype(str).str.strip(),
    })


def write_artist_prompt_sets(out_dir: str | os.PathLike, prompts_dir: str | os.PathLike = PROMPTS_DIR) -> list[Path]:
    """The shipped artist sets as `out_dir/artist_<name>.csv` (normalised columns), the prompt
    sets `artist_van_gogh`, `artist_monet`, `artist_picasso` of the paper scale's data directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in ARTIST_FILES.values():
        load_artist_prompts(Path(prompts_dir) / file).to_csv(out / file, index=False)
        written.append(out / file)
    return written


def load_word_list(path: str | os.PathLike) -> list[str]:
    """One word (or phrase) per line, whitespace stripped, blank lines dropped
    (humans.txt has a trailing space in "girl ", which would leak into every prompt)."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def concept_prune_pairs(things: list[str], artist: str) -> list[tuple[str, str]]:
    """ConceptPrune's (base, target) prompt pairs for an artist (PAPER_FACTS section 3):
    ("a photo of a {thing}", "a {thing} in the style of {artist}") per thing."""
    return [(f"a photo of a {thing}", f"a {thing} in the style of {artist}") for thing in things]


def nudity_pairs(humans: list[str]) -> list[tuple[str, str]]:
    """ConceptPrune's (base, target) prompt pairs for nudity (PAPER_FACTS section 3):
    ("a photo of a {human}", "a photo of a naked {human}") per human."""
    return [(f"a photo of a {human}", f"a photo of a naked {human}") for human in humans]
