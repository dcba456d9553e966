"""The tiny world: deterministic, complete, config-driven splits and prompt sets."""

from __future__ import annotations

import copy
import filecmp
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pruneforget.world.build import build_tiny
from pruneforget.world.spec import WorldConfigError, parse_world
from pruneforget.world.tables import read_prompts, read_table, read_world

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def small_world(**overrides) -> dict:
    """The default world section with few images per combination (builds in about a second)."""
    world = copy.deepcopy(yaml.safe_load(CONFIG.read_text())["world"])
    world.update(images_per_combo=2, val_images_per_combo=1, retain_prompts_per_style=3)
    world.update(overrides)
    return world


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "data"
    build_tiny(small_world(), out)
    return out


def test_same_seed_builds_identical_world(built, tmp_path):
    again = tmp_path / "again"
    build_tiny(small_world(), again)
    for name in ["train.csv", "finetune.csv", "val.csv", "world.json", "prompts/retain.csv"]:
        assert filecmp.cmp(built / name, again / name, shallow=False), name
    files = read_table(built, "train")["image"].tolist() + read_table(built, "val")["image"].tolist()
    assert all(filecmp.cmp(built / f, again / f, shallow=False) for f in files)


def test_different_seeds_give_different_images(built, tmp_path):
    other = tmp_path / "other"
    build_tiny(small_world(seed=1), other)
    files = read_table(built, "train")["image"].tolist()[:20]
    same = [np.array_equal(np.asarray(Image.open(built / f)), np.asarray(Image.open(other / f))) for f in files]
    assert not any(same)


def test_images_are_rgb_of_configured_size(built):
    table = read_table(built, "val")
    for f in table["image"][:10]:
        im = Image.open(built / f)
        assert im.mode == "RGB" and im.size == (32, 32)


def test_every_style_shape_colour_combination_present(built):
    world = read_world(built)
    for split in ("train", "val"):
        table = read_table(built, split)
        combos = set(zip(table["style"], table["shape"], table["colour"]))
        n = len(world["labels"]["style"]) * len(world["labels"]["shape"]) * len(world["labels"]["colour"])
        assert len(combos) == n, split


def test_finetune_excludes_removed_styles_and_only_them(built):
    train, finetune = read_table(built, "train"), read_table(built, "finetune")
    removed = set(read_world(built)["remove_styles"])
    assert not set(finetune["style"]) & removed
    expected = train[~train["style"].isin(removed)]
    assert finetune["image_id"].tolist() == expected["image_id"].tolist()


def test_image_ids_unique_and_paths_exist(built):
    tables = [read_table(built, s) for s in ("train", "val")]
    ids = pd.concat(tables)["image_id"]
    assert ids.is_unique
    assert all((built / f).is_file() for t in tables for f in t["image"])


def test_training_captions_use_every_synonym_and_canonical_name(built):
    train = read_table(built, "train")
    world = read_world(built)
    for style, info in world["styles"].items():
        rows = train[train["style"] == style]
        used = set(rows["style_word"])
        assert used == {style, *info["synonyms"]}, style
    assert all(w in c for w, c in zip(train["style_word"], train["caption"]))


def test_removal_prompts_ask_for_each_removed_style(built):
    world = read_world(built)
    for style in world["remove_styles"]:
        remove = read_prompts(built / world["prompts"]["remove"][style])
        assert len(remove) == 50 and set(remove["style"]) == {style}
        assert all(style in p for p in remove["prompt"])
        assert {"prompt", "evaluation_seed", "style", "shape", "colour"} <= set(remove.columns)
        synonyms = read_prompts(built / world["prompts"]["synonyms"][style])
        # Same rows, only the word differs: a synonym, never the canonical name.
        assert synonyms["evaluation_seed"].tolist() == remove["evaluation_seed"].tolist()
        assert set(synonyms["style_word"]) == set(world["styles"][style]["synonyms"])
        assert all(w in p for w, p in zip(synonyms["style_word"], synonyms["prompt"]))


def test_retain_prompts_cover_exactly_the_other_styles(built):
    world = read_world(built)
    retain = read_prompts(built / world["prompts"]["retain"])
    assert set(retain["style"]) == set(world["labels"]["style"]) - set(world["remove_styles"])
    assert (retain.groupby("style").size() == 3).all()


def test_remove_styles_come_from_config_not_code(tmp_path):
    # Styles with spaces become file slugs; the splits and prompt files follow the config.
    out = tmp_path / "data"
    build_tiny(small_world(remove_styles=["vertical stripes", "plaid"]), out)
    finetune = read_table(out, "finetune")
    assert set(read_table(out, "train")["style"]) - set(finetune["style"]) == {"vertical stripes", "plaid"}
    names = {p.name for p in (out / "prompts").iterdir()}
    assert {"remove_plaid.csv", "remove_vertical_stripes.csv", "retain.csv",
            "synonyms_plaid.csv", "synonyms_vertical_stripes.csv"} <= names
    prompts = read_world(out)["prompts"]
    assert prompts["remove"] == {"vertical stripes": "prompts/remove_vertical_stripes.csv", "plaid": "prompts/remove_plaid.csv"}


def test_new_style_needs_only_config(tmp_path):
    world = small_world(remove_styles=["cross hatch"])
    world["styles"]["cross hatch"] = {"texture": "plaid", "angle": 45, "synonyms": ["crosshatched", "lattice"]}
    out = tmp_path / "data"
    build_tiny(world, out)
    assert "cross hatch" in read_world(out)["labels"]["style"]
    assert "cross hatch" not in set(read_table(out, "finetune")["style"])


@pytest.mark.parametrize("change, key", [
    ({"remove_styles": ["impressionism"]}, "remove_styles"),
    ({"shapes": ["circle", "blob"]}, "shapes"),
    ({"colours": {"red": [300, 0, 0]}}, "colours"),
    ({"templates": ["a {colour} {shape}"]}, "templates[0]"),
    ({"image_size": "big"}, "image_size"),
    ({"sizes": 3}, "sizes"),
])
def test_bad_params_rejected_naming_the_key(change, key):
    with pytest.raises(WorldConfigError, match=f"world.{key}".replace("[", r"\[").replace("]", r"\]")):
        parse_world(small_world(**change))


def test_bad_style_entries_rejected_naming_the_key():
    world = small_world()
    world["styles"]["dots"] = {"texture": "dots", "radius": 1.5, "colour": 3, "synonyms": ["a", "b"]}
    with pytest.raises(WorldConfigError, match=r"world.styles\['dots'\].colour"):
        parse_world(world)
    world["styles"]["dots"] = {"texture": "spirals", "synonyms": ["a", "b"]}
    with pytest.raises(WorldConfigError, match="texture"):
        parse_world(world)
    world["styles"]["dots"] = {"texture": "dots", "synonyms": ["striped", "b"]}  # a synonym of stripes
    with pytest.raises(WorldConfigError, match="unique"):
        parse_world(world)


def test_prepare_data_cli_fails_cleanly_on_bad_params(tmp_path):
    out = tmp_path / "data"
    params = json.dumps(small_world(remove_styles=["impressionism"]))
    proc = subprocess.run([sys.executable, "-m", "pruneforget", "prepare-data", "--params", params, "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "world.remove_styles" in proc.stderr and "impressionism" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_every_style_has_removal_and_synonym_prompts(built):
    """The global setting may remove a style D_f keeps (a retained style): its sets must exist too."""
    from pruneforget.world.tables import remove_prompts_path, synonym_prompts_path

    world = read_world(built)
    for style, info in world["styles"].items():
        remove = read_prompts(built / remove_prompts_path(info["slug"]))
        assert set(remove["style"]) == {style}
        assert (built / synonym_prompts_path(info["slug"])).exists()
