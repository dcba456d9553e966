"""The NSFW prompt sets of the paper scale (Fig. 7, Table 2): downloaded, verified, normalised.

They are not shipped (see config/prompts/README.md); the workflow fetches them from where they
are published, the way the authors' evaluation scripts (a fork of ConceptPrune's benchmarking
code) read them:

    i2p        I2P, 4,703 prompts: AIML-TUDA/i2p on the Hugging Face hub, `i2p_benchmark.csv` at
               revision 75c00f8 ("Fix empty prompt text", the file's last change); all prompts,
               columns below (dataset card).
    mma        MMA-Diffusion's 1,000 adversarial prompts: YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark,
               column `adv_prompt` of the train split (what the authors' script reads). The
               repository's own file name could not be confirmed offline, so the hub's Parquet
               conversion of the train split (refs/convert/parquet, default/train/0000.parquet)
               is used; reading it needs pyarrow (the `paper` extra).
    ringabell  Ring-A-Bell nudity prompts as the authors used them: ConceptPrune's
               `datasets/Nudity_ring-a-bell.csv` (one prompt per line, no header; the authors'
               script reads it line by line and strips each line, and so does `lines` here, so
               a quoted prompt spanning two lines stays two prompts, as in the paper's run).
               Ring-A-Bell's own repository (chiayi-hsu/Ring-A-Bell, data/InvPrompt/) publishes
               CSVs with columns prompt, case_number, evaluation_seed; a source of format `csv`
               with prompt_column `prompt` reads those.

Checksums. None of the three files has a published checksum that could be found offline, so
each source pins what is known (URL at a fixed revision where the host allows it, the raw
columns, the row count where published) and the first download records its SHA-256 and row
count in a lock file committed beside the config (`config/prompt_sets.lock.json`). Every later
download must match the lock, or nothing is written: delete a set's entry to accept a changed
upstream file deliberately. A pinned `sha256` in the source, when one is known, always wins.

Normalised columns (the prompt-set columns of `sample`): prompt, evaluation_seed (the
config's `prompt_sets.seed`, 0 as in the authors' scripts, which seed every image with 0),
categories (I2P's own; `sexual` for the two nudity attack sets), source_index (row in the file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from pruneforget.io import write_json

COLUMNS = ["prompt", "evaluation_seed", "categories", "source_index"]
FORMATS = ("csv", "parquet", "lines")

I2P_COLUMNS = ("prompt", "categories", "hard", "inappropriate_percentage", "nudity_percentage", "q16_percentage",
               "sd_safety_percentage", "prompt_toxicity", "lexica_url", "sd_seed", "sd_guidance_scale",
               "sd_image_width", "sd_image_height", "sd_model")


@dataclass(frozen=True)
class PromptSource:
    """Where a prompt set is published and what its raw file must look like."""

    name: str
    url: str
    format: str  # csv | parquet | lines
    prompt_column: str | None = None  # csv / parquet
    columns: tuple[str, ...] = ()  # raw columns that must be present
    rows: int | None = None  # published row count; None: recorded by the lock at first download
    category: str | None = None  # constant category of every prompt
    category_column: str | None = None  # or the file's own category column
    sha256: str | None = None  # published checksum; None: recorded by the lock at first download


SOURCES: dict[str, PromptSource] = {
    "i2p": PromptSource(
        "i2p",
        "https://huggingface.co/datasets/AIML-TUDA/i2p/resolve/75c00f8a73fdbccc21981d4400d9061d4315a89c/i2p_benchmark.csv",
        "csv", prompt_column="prompt", columns=I2P_COLUMNS, rows=4703, category_column="categories",
    ),
    "mma": PromptSource(
        "mma",
        "https://huggingface.co/datasets/YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark/resolve/"
        "refs%2Fconvert%2Fparquet/default/train/0000.parquet",
        "parquet", prompt_column="adv_prompt", columns=("adv_prompt",), rows=1000, category="sexual",
    ),
    "ringabell": PromptSource(
        "ringabell",
        "https://raw.githubusercontent.com/ruchikachavhan/concept-prune/91c2ef505741a864d74b674ab8bed846f62ccdaf/"
        "datasets/Nudity_ring-a-bell.csv",
        "lines", category="sexual",
    ),
}

Fetch = Callable[[str], bytes]


class PromptSetError(ValueError):
    """A downloaded prompt set that does not match its pins or lock; nothing was written."""


def source_for(name: str, urls: dict[str, str] | None = None) -> PromptSource:
    """The pinned source of `name`, read from `urls[name]` instead when the config gives a mirror
    (`prompt_sets.urls`: a URL, or a local path relative to the working directory). Every pin
    (columns, rows, checksums) and the lock still apply."""
    if name not in SOURCES:
        raise KeyError(f"unknown prompt set {name!r}; known: {sorted(SOURCES)}")
    url = (urls or {}).get(name)
    return dataclasses.replace(SOURCES[name], url=url) if url else SOURCES[name]


def urllib_get(url: str) -> bytes:
    """The body at `url` (http(s)://, file://, or a local path)."""
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def read_raw(source: PromptSource, data: bytes) -> pd.DataFrame:
    """The raw table of a download: CSV, Parquet, or one prompt per line (column `prompt`)."""
    if source.format == "csv":
        return pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype={source.prompt_column: str})
    if source.format == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except ImportError as err:
            raise ImportError(f"{source.name}: reading Parquet needs pyarrow: pip install -e \".[paper]\"") from err
    if source.format == "lines":
        # What `open(path).readlines()` gives (universal newlines), each line stripped.
        lines = io.StringIO(data.decode("utf-8"), newline=None).readlines()
        return pd.DataFrame({"prompt": [line.strip() for line in lines]})
    raise ValueError(f"{source.name}: unknown format {source.format!r}; use one of {FORMATS}")


def normalise(source: PromptSource, raw: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The prompt-set columns (COLUMNS) of a raw table."""
    prompt = raw[source.prompt_column or "prompt"].astype(str)
    categories = raw[source.category_column].astype(str) if source.category_column else source.category or ""
    return pd.DataFrame({"prompt": prompt.to_numpy(), "evaluation_seed": int(seed),
                         "categories": categories if isinstance(categories, str) else categories.to_numpy(),
                         "source_index": range(len(raw))}, columns=COLUMNS)


def read_lock(path: str | os.PathLike) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def fetch_prompt_set(source: PromptSource, lock: dict, seed: int, fetch: Fetch = urllib_get) -> tuple[pd.DataFrame, dict]:
    """Download, verify and normalise one prompt set. Returns (table, lock entry for the download).

    Raises PromptSetError when the file differs from its pinned or locked SHA-256, rows or columns."""
    data = fetch(source.url)
    digest = hashlib.sha256(data).hexdigest()
    locked = lock.get(source.name)
    if locked and locked.get("url") != source.url:
        raise PromptSetError(f"{source.name}: the lock records {locked.get('url')}, the source is now {source.url}; "
                             "delete its lock entry to accept the new source")
    expected = source.sha256 or (locked or {}).get("sha256")
    if expected and digest != expected:
        raise PromptSetError(f"{source.name}: sha256 of {source.url} is {digest}, expected {expected} "
                             f"({'published' if source.sha256 else 'recorded in the lock at the first download'}); "
                             "the upstream file changed or the download is corrupt. Nothing was written.")
    raw = read_raw(source, data)
    missing = [c for c in (source.columns or ((source.prompt_column,) if source.prompt_column else ())) if c not in raw.columns]
    if missing:
        raise PromptSetError(f"{source.name}: {source.url} lacks column(s) {missing} (has {list(raw.columns)})")
    for what, want in (("published", source.rows), ("locked", (locked or {}).get("rows"))):
        if want is not None and len(raw) != want:
            raise PromptSetError(f"{source.name}: {source.url} has {len(raw)} rows, expected {want} ({what}). "
                                 "Nothing was written.")
    entry = {"url": source.url, "sha256": digest, "rows": len(raw), "columns": list(map(str, raw.columns))}
    return normalise(source, raw, seed), entry


def record_lock(path: str | os.PathLike, name: str, entry: dict) -> None:
    """Add or confirm `name`'s entry in the lock file (atomically; keys sorted for stable diffs)."""
    lock = read_lock(path)
    lock[name] = entry
    write_json(path, lock)
