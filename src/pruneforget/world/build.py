"""Building the tiny world's data directory (see `pruneforget.world.tables` for the contract)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from pruneforget.io import write_json
from pruneforget.world.prompts import removal_prompts, retain_prompts, synonym_prompts
from pruneforget.world.render import render_image
from pruneforget.world.spec import WorldSpec, parse_world
from pruneforget.world.splits import IMAGE_STREAM, finetune_split, plan_split, row_rng
from pruneforget.world.tables import (
    RETAIN_PROMPTS_PATH,
    TINY_IMAGE_COLUMNS,
    remove_prompts_path,
    synonym_prompts_path,
    write_table,
)

WORLD_VERSION = 1


def _render_split(spec: WorldSpec, split: str, table: pd.DataFrame, out: Path) -> None:
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(tqdm(table.itertuples(index=False), total=len(table), desc=f"render {split}",
                                 unit="img", mininterval=2.0)):
        img = render_image(spec, spec.styles[row.style], row.shape, row.colour, row_rng(spec, split, i, IMAGE_STREAM))
        Image.fromarray(img).save(out / row.image, compress_level=1)


def world_description(spec: WorldSpec, counts: dict[str, int]) -> dict:
    """The resolved world (world.json): label orders, synonyms, textures, removed styles, files."""
    return {
        "kind": "tiny",
        "version": WORLD_VERSION,
        "image_size": spec.image_size,
        "seed": spec.seed,
        # Label index orders: the evaluator's heads and every confusion table use these.
        "labels": {"style": list(spec.styles), "shape": list(spec.shapes), "colour": list(spec.colours)},
        "styles": {s.name: {"slug": s.slug, "synonyms": list(s.synonyms), "texture": s.texture,
                            "params": s.params, "contrast": s.contrast} for s in spec.styles.values()},
        "colours": {k: list(v) for k, v in spec.colours.items()},
        "remove_styles": list(spec.remove_styles),
        "retain_styles": list(spec.retain_styles),
        "templates": list(spec.templates),
        "prompts": {
            "remove": {s: remove_prompts_path(spec.styles[s].slug) for s in spec.remove_styles},
            "synonyms": {s: synonym_prompts_path(spec.styles[s].slug) for s in spec.remove_styles},
            "retain": RETAIN_PROMPTS_PATH,
        },
        "counts": counts,
        "params": spec.raw,
    }


def build_tiny(params: dict, out_dir: str | os.PathLike) -> WorldSpec:
    """Build the tiny world described by the `world` config section into `out_dir`.

    Validates `params` first (WorldConfigError names the bad key). Writes the image tables,
    PNGs, prompt sets and world.json; deterministic for a given config."""
    spec = parse_world(params)
    out = Path(out_dir)
    train = plan_split(spec, "train", spec.images_per_combo, first_id=0)
    val = plan_split(spec, "val", spec.val_images_per_combo, first_id=len(train))
    finetune = finetune_split(train, spec.remove_styles)
    for name, table in (("train", train), ("val", val)):
        _render_split(spec, name, table, out)
    for name, table in (("train", train), ("finetune", finetune), ("val", val)):
        write_table(table[TINY_IMAGE_COLUMNS], out / f"{name}.csv")
    for s in spec.remove_styles:
        style = spec.styles[s]
        write_table(removal_prompts(spec, style), out / remove_prompts_path(style.slug))
        write_table(synonym_prompts(spec, style), out / synonym_prompts_path(style.slug))
    retain = retain_prompts(spec)
    write_table(retain, out / RETAIN_PROMPTS_PATH)
    # The other styles' removal and synonym prompts too, last (the sets above stay as they were):
    # the global setting (figures.global_style, unlearn.global) may remove a style D_f keeps.
    for s in spec.retain_styles:
        style = spec.styles[s]
        write_table(removal_prompts(spec, style), out / remove_prompts_path(style.slug))
        write_table(synonym_prompts(spec, style), out / synonym_prompts_path(style.slug))
    counts = {"train": len(train), "finetune": len(finetune), "val": len(val), "retain_prompts": len(retain),
              "prompts_per_style": spec.prompts_per_style}
    write_json(out / "world.json", world_description(spec, counts))
    return spec
