"""Reading a sample set (PNGs + manifest.csv, written by `sample`) for scoring, refusing bad ones.

A score of a broken sample set would be a plausible-looking wrong number (an empty set scores
"no nudity", a half-written one a mean over the wrong images), so every reader goes through
`read_sample_set`, which checks the directory against its manifest before anything is computed:
the directory and manifest exist, the manifest has a `file` column and rows, no file is listed
twice, every listed PNG exists and no PNG is left unlisted. Each error names the file at fault.

`pair_sample_sets` lines up two sets image by image (CP score, CSD against the reference model):
by (prompt_index, seed_index) when both manifests have them, else by file name, and checks that
paired images share their prompt and seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
from PIL import Image

from pruneforget.world.tables import LABEL_COLUMNS

MANIFEST = "manifest.csv"
PAIR_KEYS = ("prompt_index", "seed_index")


class SampleSetError(ValueError):
    """A sample directory that cannot be scored; the message names the file at fault."""


@dataclass(frozen=True)
class SampleSet:
    """A checked sample set: its directory, manifest (one row per image) and image paths in
    manifest order."""

    root: Path
    manifest: pd.DataFrame

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.manifest["file"]]

    def __len__(self) -> int:
        return len(self.manifest)


def read_sample_set(sample_dir: str | os.PathLike) -> SampleSet:
    """Read and check a sample directory (see the module docstring); raise SampleSetError."""
    root = Path(sample_dir)
    if not root.is_dir():
        raise SampleSetError(f"sample directory {root} does not exist; sample it first (rule sample)")
    path = root / MANIFEST
    if not path.is_file():
        raise SampleSetError(f"sample directory {root} has no {MANIFEST} (an interrupted `sample`?); sample it again")
    manifest = pd.read_csv(path, dtype={c: str for c in ["file", "prompt", *LABEL_COLUMNS]}, keep_default_na=False)
    if "file" not in manifest.columns:
        raise SampleSetError(f"{path} has no 'file' column (found {list(manifest.columns)})")
    pngs = sorted(p.name for p in root.glob("*.png"))
    if manifest.empty or not pngs:
        raise SampleSetError(f"{path}: empty sample set ({len(manifest)} manifest rows, {len(pngs)} PNGs in {root})")
    duplicated = manifest["file"][manifest["file"].duplicated()]
    if len(duplicated):
        raise SampleSetError(f"{path} lists {duplicated.iloc[0]} more than once")
    listed = set(manifest["file"])
    missing = [f for f in manifest["file"] if not (root / f).is_file()]
    if missing:
        raise SampleSetError(f"{path} lists {len(missing)} image(s) missing from {root}, first: {root / missing[0]}")
    extra = [f for f in pngs if f not in listed]
    if extra:
        raise SampleSetError(
            f"{root} holds {len(extra)} PNG(s) that {path} does not list, first: {root / extra[0]} "
            f"({len(manifest)} manifest rows, {len(pngs)} PNGs); the manifest does not describe this directory"
        )
    return SampleSet(root, manifest.reset_index(drop=True))


def pair_sample_sets(a: SampleSet, b: SampleSet) -> tuple[list[int], list[int]]:
    """Row indices (into a.manifest, into b.manifest) of images drawn from the same prompt with
    the same seed, in a's order. Raises SampleSetError when the sets do not pair one to one."""
    keys = list(PAIR_KEYS) if all(k in m.columns for k in PAIR_KEYS for m in (a.manifest, b.manifest)) else ["file"]
    if len(a) != len(b):
        raise SampleSetError(
            f"{a.manifest_path} has {len(a)} images but {b.manifest_path} has {len(b)}: "
            "a paired score needs both models sampled on the same prompt set with the same seeds"
        )
    index_b = {tuple(row): i for i, row in enumerate(b.manifest[keys].itertuples(index=False, name=None))}
    rows_a, rows_b = [], []
    for i, key in enumerate(a.manifest[keys].itertuples(index=False, name=None)):
        j = index_b.get(tuple(key))
        if j is None:
            raise SampleSetError(f"{a.manifest_path}: image {a.manifest['file'].iloc[i]} ({dict(zip(keys, key))}) "
                                 f"has no partner in {b.manifest_path}")
        for column in ("prompt", "seed"):
            if column in a.manifest.columns and column in b.manifest.columns:
                va, vb = a.manifest[column].iloc[i], b.manifest[column].iloc[j]
                if str(va) != str(vb):
                    raise SampleSetError(
                        f"{a.manifest_path} image {a.manifest['file'].iloc[i]} and {b.manifest_path} image "
                        f"{b.manifest['file'].iloc[j]} differ in {column} ({va!r} vs {vb!r}); sample both sets "
                        "from the same prompt set and seeds"
                    )
        rows_a.append(i)
        rows_b.append(j)
    return rows_a, rows_b


def load_images(paths: list[Path]) -> list[Image.Image]:
    """The images as RGB PIL images (loaded now, files closed)."""
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    return images


def image_batches(paths: list[Path], batch_size: int) -> Iterator[list[Image.Image]]:
    """`load_images` in chunks of `batch_size`, so thousands of 768 px samples never sit in memory at once."""
    for start in range(0, len(paths), batch_size):
        yield load_images(paths[start : start + batch_size])
