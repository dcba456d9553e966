"""MS-COCO 2017 as the data world of the paper scale (`sd21`).

`build_coco` turns a COCO 2017 copy (existing, or downloaded and verified by
`coco_download`) into the same tables the tiny world writes, so later stages read either:

    out/train.csv      one row per caption of train2017 (591,753 rows for the full set)
    out/finetune.csv   D_f; at COCO the same table as train.csv
                       (COCO never shows the removed artists)
    out/val.csv        one caption per val2017 image, `val_captions` rows (the paper's FID/CLIP set)
    out/world.json     the source: kind, root, counts, per-archive checksum status
    out/prompts/artist_{van_gogh,monet,picasso}.csv   the shipped artist test prompts (config/prompts)

Columns: `image` (absolute path into the COCO root, e.g. `/data/coco2017/train2017/000000000009.jpg`:
readers join it to the data directory like the tiny world's relative paths, and an absolute path
wins; no link into the root, so DVC hashes the small tables, never the 19 GB of images),
`caption` (whitespace-normalised: COCO captions carry stray newlines and trailing spaces),
`image_id` (COCO's integer id). Rows are sorted by image id, then annotation id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pruneforget.io import write_json
from pruneforget.world.coco_download import (
    BASE_URL,
    COCO2017_ARCHIVES,
    Archive,
    Fetch,
    ensure_archive,
    extract_members,
    urllib_fetch,
)
from pruneforget.world.prompt_sets import write_artist_prompt_sets

COLUMNS = ["image", "caption", "image_id"]
SPLITS = ("train2017", "val2017")


def caption_file(split: str) -> str:
    """Path of a split's caption file, relative to the COCO root and inside the zip."""
    return f"annotations/captions_{split}.json"


def load_captions(path: Path, split: str) -> pd.DataFrame:
    """One row per caption from a COCO caption file (`images` and `annotations` lists).

    Returns columns image (relative to the COCO root), caption, image_id, ann_id, sorted by
    (image_id, ann_id) so every later choice is independent of the file's order.
    """
    data = json.loads(path.read_text())
    files = {img["id"]: img["file_name"] for img in data["images"]}
    rows = []
    for ann in data["annotations"]:
        image_id = ann["image_id"]
        if image_id not in files:
            raise ValueError(f"{path}: annotation {ann['id']} names unknown image {image_id}")
        caption = " ".join(str(ann["caption"]).split())
        rows.append((f"{split}/{files[image_id]}", caption, int(image_id), int(ann["id"])))
    df = pd.DataFrame(rows, columns=["image", "caption", "image_id", "ann_id"])
    return df.sort_values(["image_id", "ann_id"], kind="stable").reset_index(drop=True)


def train_table(captions: pd.DataFrame) -> pd.DataFrame:
    """The training table: every caption is its own row (COCO has about five per image)."""
    return captions[COLUMNS].reset_index(drop=True)


def val_table(captions: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """One caption per image for `n` images, chosen reproducibly from `seed`.

    With n equal to the number of images (5,000 for val2017) every image is used, as in the
    paper's FID/CLIP protocol; with fewer, a seeded subset of images is taken. The caption of
    each image is drawn uniformly among its captions, from a generator seeded once, over the
    images in id order, so the result depends only on (annotations, n, seed).
    """
    groups = list(captions.groupby("image_id", sort=True))
    if n > len(groups):
        raise ValueError(
            f"world.val_captions={n} but the validation split has only {len(groups)} images "
            "with captions (one caption per image)"
        )
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(groups), size=n, replace=False)) if n < len(groups) else None
    picks = [group.iloc[int(rng.integers(len(group)))] for _, group in groups]
    table = pd.DataFrame(picks)[COLUMNS]
    if keep is not None:
        table = table.iloc[keep]
    return table.reset_index(drop=True)


def _missing_images(root: Path, captions: pd.DataFrame) -> list[str]:
    """Images (relative to root) the captions name that are not on disk."""
    return [rel for rel in captions["image"].unique() if not (root / rel).is_file()]


def _prior_status(archive: Archive, root: Path) -> dict:
    """world.json entry for an archive this run does not touch: its contents are already on disk.

    If an earlier run verified the archive (its `.md5` sidecar holds the published hash), the
    extracted contents came from a verified file, and the record says so.
    """
    sidecar = root / f"{archive.filename}.md5"
    earlier = sidecar.is_file() and sidecar.read_text().split()[:1] == [archive.md5]
    return {
        "file": archive.filename,
        "md5": archive.md5,
        "source": "extracted by an earlier run" if earlier else "contents present (existing copy)",
        "verified": earlier,
    }


def _check_config(cfg: dict) -> None:
    if cfg.get("kind") != "coco":
        raise ValueError(f"build_coco needs world.kind: coco, got {cfg.get('kind')!r}")
    for key in ("root", "val_captions"):
        if key not in cfg:
            raise ValueError(f"world.{key} is required for the coco world (see config/sd21.yaml)")
    if int(cfg["val_captions"]) <= 0:
        raise ValueError(f"world.val_captions must be positive, got {cfg['val_captions']}")


def build_coco(
    cfg: dict,
    out: Path,
    *,
    base_url: str = BASE_URL,
    archives: Sequence[Archive] = COCO2017_ARCHIVES,
    fetch: Fetch = urllib_fetch,
) -> None:
    """Prepare MS-COCO 2017 under `cfg["root"]` and write the world tables into `out`.

    `cfg` is the `world` section of config/sd21.yaml (kind, root, download, verify_checksums,
    val_captions, seed); `out` is an existing, empty (temporary) directory the caller renames.
    A relative `root` is taken relative to the working directory (the repository root when
    Snakemake runs). Only what is missing is fetched: caption files first, then the image
    archives whose images are not all on disk, so an existing copy needs no network at all.
    `base_url`, `archives` and `fetch` exist so tests can serve fixture archives.
    """
    _check_config(cfg)
    root = Path(cfg["root"]).expanduser().resolve()
    download = bool(cfg.get("download", True))
    verify = bool(cfg.get("verify_checksums", True))
    by_name = {a.name: a for a in archives}
    # Fail before any download or extraction when there is nothing to work from.
    if not download and not root.is_dir():
        raise FileNotFoundError(
            f"world.root={cfg['root']} ({root}) does not exist and world.download is false. "
            "Point world.root at a COCO 2017 copy (train2017/, val2017/, annotations/) "
            "or set world.download: true to fetch it there."
        )

    # archive name -> status recorded in world.json
    status: dict[str, dict] = {a.name: _prior_status(a, root) for a in archives}

    def obtain(name: str, members: list[str]) -> None:
        path, verified = ensure_archive(
            by_name[name], root, base_url=base_url, download=download, verify=verify, fetch=fetch
        )
        extract_members(path, root, members)
        status[name].update(source=f"archive {path.name}", verified=verified)

    missing_ann = [m for m in map(caption_file, SPLITS) if not (root / m).is_file()]
    if missing_ann:
        obtain("annotations", missing_ann)
    captions = {split: load_captions(root / caption_file(split), split) for split in SPLITS}

    for split in SPLITS:
        missing = _missing_images(root, captions[split])
        if missing:
            obtain(split, missing)

    train = train_table(captions["train2017"])
    val = val_table(captions["val2017"], int(cfg["val_captions"]), int(cfg.get("seed", 0)))
    prefix = f"{root.resolve()}/"
    train["image"] = prefix + train["image"]
    val["image"] = prefix + val["image"]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The artist test prompts (Table 1, Figs. 1-2) are shipped, not downloaded: the data
    # directory carries them as the tiny world's carries its removal prompts.
    write_artist_prompt_sets(out / "prompts")
    train.to_csv(out / "train.csv", index=False)
    shutil.copyfile(out / "train.csv", out / "finetune.csv")
    val.to_csv(out / "val.csv", index=False)
    write_json(
        out / "world.json",
        {
            "kind": "coco",
            "root": str(root),
            "image_paths": "absolute, into root",
            "counts": {
                "train_captions": len(train),
                "train_images": int(train["image_id"].nunique()),
                "finetune_captions": len(train),
                "val_captions": len(val),
                "val_images": int(val["image_id"].nunique()),
            },
            "val_seed": int(cfg.get("seed", 0)),
            "verify_checksums": verify,
            "archives": status,
        },
    )
