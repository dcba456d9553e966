"""The ground-truth evaluator and the judge: learnable, faithful on save/load, honest on labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from pruneforget.metrics.evaluator import load_evaluator, save_evaluator
from pruneforget.train.classifier import held_out_accuracy, train_evaluator
from pruneforget.cli import main
from pruneforget.world.build import build_tiny
from pruneforget.world.tables import load_images, read_table, read_world
from test_world import small_world

STYLES = ["plain", "stripes", "vertical stripes", "dots"]
PARAMS = {"steps": 200, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "width": 8, "feature_dim": 32,
          "noise": 0.05, "blur_prob": 0.2, "blur_sigma": 1.0, "seed": 0, "min_accuracy": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A four-style, two-shape, two-colour world: 256 training images, 48 held out."""
    cfg = small_world(shapes=["triangle", "square"], images_per_combo=16, val_images_per_combo=3,
                      remove_styles=["stripes"])
    cfg["styles"] = {k: v for k, v in cfg["styles"].items() if k in STYLES}
    cfg["colours"] = {k: v for k, v in list(cfg["colours"].items())[:2]}
    out = tmp_path_factory.mktemp("eval") / "data"
    build_tiny(cfg, out)
    return out


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    torch.set_num_threads(1)
    train = read_table(world, "train")
    evaluator = train_evaluator(load_images(world, train), train, read_world(world)["labels"], PARAMS,
                                tmp_path_factory.mktemp("eval") / "work", progress=False)
    out = tmp_path_factory.mktemp("eval") / "evaluator"
    save_evaluator(evaluator, out)
    return evaluator, out


def test_evaluator_learns_well_above_chance(world, trained):
    val = read_table(world, "val")
    acc = held_out_accuracy(trained[0], load_images(world, val), val)["accuracy"]
    # Chance is 0.25 for style and 0.5 for shape and colour.
    assert acc["style_acc"] >= 0.9 and acc["shape_acc"] >= 0.9 and acc["colour_acc"] >= 0.9


def test_save_load_round_trip_gives_identical_outputs(world, trained):
    evaluator, path = trained
    images = load_images(world, read_table(world, "val"))
    loaded = load_evaluator(path)
    assert loaded.labels == evaluator.labels
    for head, p in evaluator.probabilities(images).items():
        assert torch.equal(p, loaded.probabilities(images)[head])
    assert torch.equal(evaluator.features(images), loaded.features(images))
    assert loaded.features(images).shape == (len(images), PARAMS["feature_dim"])


def test_pil_and_array_inputs_agree(world, trained):
    evaluator = trained[0]
    val = read_table(world, "val")
    pil = [Image.open(world / f) for f in val["image"]]
    assert evaluator.predict(pil) == evaluator.predict(load_images(world, val))


def _sample_dir(world: Path, out: Path, relabel: dict[str, str] | None = None) -> Path:
    """A sample set made of real held-out images with a manifest like `sample` writes."""
    val = read_table(world, "val")
    out.mkdir()
    rows = []
    for i, r in enumerate(val.itertuples(index=False)):
        Image.open(world / r.image).save(out / f"{i:05d}.png")
        style = relabel.get(r.style, r.style) if relabel else r.style
        rows.append({"file": f"{i:05d}.png", "prompt": r.caption, "seed": i, "guidance": 5.0, "steps": 25,
                     "model": "real", "style": style, "shape": r.shape, "colour": r.colour})
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out


def judge(samples: Path, evaluator: Path) -> dict:
    """The `judge` metric of `score` on one sample set, in this process."""
    out = samples.parent / f"{samples.name}-judge.json"
    main(["score", "--metric", "judge", "--samples", str(samples), "--evaluator", str(evaluator),
          "--params", json.dumps({"metrics": ["judge"]}), "--out", str(out)])
    return json.loads(out.read_text())


def per_style(score: dict) -> dict[str, dict]:
    return {row["style"]: row for row in score["per_item"]}


def test_judge_scores_real_images_near_one(world, trained, tmp_path):
    score = judge(_sample_dir(world, tmp_path / "s"), trained[1])
    assert score["metric"] == "judge" and score["n"] == 48
    assert min(score["value"].values()) >= 0.95
    assert set(per_style(score)) == set(STYLES)


def test_judge_scores_mislabeled_images_low(world, trained, tmp_path):
    # Every style label moved to the next style: the style accuracy collapses, content does not.
    shift = dict(zip(STYLES, STYLES[1:] + STYLES[:1]))
    score = judge(_sample_dir(world, tmp_path / "s", shift), trained[1])
    assert score["value"]["style_acc"] <= 0.1
    assert score["value"]["shape_acc"] >= 0.95
    # Where the "stripes"-labelled images went: predicted as plain, which they are.
    assert per_style(score)["stripes"]["predicted_style"].get("plain", 0) >= 0.9


def test_judge_rejects_labels_from_another_world(world, trained, tmp_path):
    samples = _sample_dir(world, tmp_path / "s", {"plain": "impressionism"})
    with pytest.raises(SystemExit, match="impressionism"):
        judge(samples, trained[1])
    assert not (tmp_path / "s-judge.json").exists()


def test_judge_writes_the_score_document(world, trained, tmp_path):
    score = judge(_sample_dir(world, tmp_path / "s"), trained[1])
    assert set(score) == {"metric", "version", "inputs", "value", "per_item", "n"}
    assert set(score["value"]) == {"style_acc", "shape_acc", "colour_acc"}


def test_score_judges_a_bundle_as_each_set_alone_and_a_bad_set_writes_none(world, trained, tmp_path):
    """`score --metric judge --samples A --out A.json --samples B --out B.json` (rule score_bundle)
    writes what two single-set calls write; with one set unjudgeable it writes neither."""
    good = _sample_dir(world, tmp_path / "good")
    shifted = _sample_dir(world, tmp_path / "shifted", {"plain": "stripes"})
    bad = _sample_dir(world, tmp_path / "bad", {"plain": "impressionism"})

    def judge(*pairs):
        args = [a for samples, out in pairs for a in ("--samples", str(samples), "--out", str(out))]
        return subprocess.run([sys.executable, "-m", "pruneforget", "score", "--metric", "judge", *args,
                               "--evaluator", str(trained[1]), "--params", json.dumps({"metrics": ["judge"]})],
                              capture_output=True, text=True)

    for name, samples in (("good", good), ("shifted", shifted)):
        assert judge((samples, tmp_path / f"{name}-alone.json")).returncode == 0
    assert judge((good, tmp_path / "good-bundle.json"), (shifted, tmp_path / "shifted-bundle.json")).returncode == 0
    for name in ("good", "shifted"):
        alone, bundled = (json.loads((tmp_path / f"{name}-{kind}.json").read_text()) for kind in ("alone", "bundle"))
        assert alone == bundled
    failed = judge((good, tmp_path / "a.json"), (bad, tmp_path / "b.json"))
    assert failed.returncode != 0 and "impressionism" in failed.stderr
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_train_evaluator_cli_fails_below_min_accuracy_and_leaves_nothing(world, tmp_path):
    params = {**PARAMS, "steps": 1, "min_accuracy": 1.0}
    out = tmp_path / "evaluator"
    proc = subprocess.run([sys.executable, "-m", "pruneforget", "train-evaluator", "--threads", "1",
                           "--params", json.dumps(params), "--data", str(world), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "min_accuracy" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_train_evaluator_rejects_unknown_key(world, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pruneforget", "train-evaluator", "--params",
                           json.dumps({**PARAMS, "epochs": 3}), "--data", str(world), "--out", str(tmp_path / "e")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "evaluator.epochs" in proc.stderr
