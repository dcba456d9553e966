"""Issue 19's generalisation: world variants as extra scales. An overlay changes only the world
(removed styles, seed) and the artist concepts, is refused by name otherwise, leaves the configured
scale's jobs and DVC stages exactly as they were, and the table reads each world's own scores."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_fixtures import write_score

from pruneforget.config import ConfigError, validate_config
from pruneforget.report.build import build_figure
from pruneforget.report.specs import figure_inputs, resolve_figure
from pruneforget.variants import OVERLAY_KEYS, VariantError, overlaid, scale_config, scales, shares_images

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow/scripts"))

import dvc_sync  # noqa: E402


def load(name: str = "config/config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_overlay_sets_the_variant_world_and_leaves_the_config_untouched():
    cfg = load()
    before = copy.deepcopy(cfg)
    near = overlaid(cfg, "near")
    overlay = cfg["generalisation"]["variants"]["near"]
    assert near["scale"] == "tiny-near"
    assert near["world"]["remove_styles"] == overlay["world"]["remove_styles"]
    assert near["unlearn"]["artists"]["concepts"] == overlay["unlearn"]["artists"]["concepts"]
    # Deep merge: the keys the overlay does not name are the config's.
    assert near["world"]["styles"] == cfg["world"]["styles"] and near["unlearn"]["artists"]["guide"] == cfg["unlearn"]["artists"]["guide"]
    assert {k: v for k, v in near.items() if k not in ("scale", "world", "unlearn", "figures")} == \
        {k: v for k, v in cfg.items() if k not in ("scale", "world", "unlearn", "figures", "generalisation")}
    # A variant has no variants, nor the figure that compares them.
    assert "generalisation" not in near and "table_generalisation" not in near["figures"]
    assert overlaid(cfg, "seed1")["world"]["seed"] == overlay_seed(cfg) and cfg == before


def overlay_seed(cfg: dict) -> int:
    return cfg["generalisation"]["variants"]["seed1"]["world"]["seed"]


def test_the_configured_scale_reads_the_config_itself():
    """The base scale's sections (every job's --params) are the config's, byte for byte."""
    cfg = load()
    assert scale_config(cfg, "tiny") is cfg
    for name in ("world", "unlearn", "sample", "base"):
        assert json.dumps(scale_config(cfg, "tiny")[name], sort_keys=True) == json.dumps(cfg[name], sort_keys=True)
    assert scales(cfg) == ["tiny", "tiny-near", "tiny-otherset", "tiny-seed1"]
    with pytest.raises(VariantError, match="sd21"):
        scale_config(cfg, "sd21")


@pytest.mark.parametrize("overlay, key", [
    ({"world": {"image_size": 64}}, "image_size"),
    ({"finetune": {"steps": 10}}, "finetune"),
    ({"unlearn": {"esd": {"steps": 10}}}, "esd"),
])
def test_an_overlay_key_a_variant_may_not_change_is_refused_by_name(overlay, key):
    cfg = load()
    cfg["generalisation"]["variants"]["bad"] = overlay
    with pytest.raises(ConfigError, match=key):
        validate_config(cfg)
    with pytest.raises(VariantError, match=key):  # the package refuses it without the schema too
        overlaid(cfg, "bad")


def test_a_removed_style_missing_from_the_world_is_refused():
    cfg = load()
    cfg["generalisation"]["variants"]["near"]["world"]["remove_styles"] = ["zigzag"]
    with pytest.raises(ConfigError, match=r"generalisation.variants.near: .*zigzag"):
        validate_config(cfg)


def test_a_variant_erasing_a_style_it_also_preserves_is_refused():
    cfg = load()
    cfg["generalisation"]["variants"]["near"]["unlearn"]["artists"]["preserve"].append("checker")
    with pytest.raises(ConfigError, match="both in concepts and in preserve"):
        validate_config(cfg)


def test_a_variant_name_must_fit_a_directory_name():
    cfg = load()
    cfg["generalisation"]["variants"]["Near-1"] = {"world": {"seed": 3}}
    with pytest.raises(ConfigError, match="Near-1"):
        validate_config(cfg)


def test_only_variants_keeping_the_training_images_share_the_teacher():
    cfg = load()
    assert shares_images(cfg, "near") and shares_images(cfg, "otherset")
    assert not shares_images(cfg, "seed1")
    cfg["generalisation"]["variants"]["same"] = {"world": {"seed": cfg["world"]["seed"]}}
    assert shares_images(cfg, "same")  # the config's own seed is no other world
    assert set(OVERLAY_KEYS["world"]) == {"remove_styles", "seed"}


def test_the_table_reads_each_world_from_its_own_scale(tmp_path):
    """Fake scores with the same model names in every world: each block's cells are its world's."""
    cfg = load()
    cfg["figures"]["seeds"] = [0, 1]
    spec = resolve_figure(cfg, "table_generalisation")
    assert [b["scale"] for b in spec["blocks"]] == ["tiny", "tiny-near", "tiny-otherset", "tiny-seed1"]
    near = spec["blocks"][1]
    assert near["columns"][0]["promptsets"] == ["remove_diagonal_stripes", "remove_checker"]
    paths = figure_inputs(spec, "tiny")["scores"]
    assert "results/tiny-near/scores/ft-80-kd-pruned-s1/remove_checker/judge.json" in paths
    assert not any("tiny-near/scores/ft-80-kd-pruned-s0/remove_stripes" in p for p in paths)
    # Write only the distilled model's UA-removal scores: style accuracy 0.1 x world index + seed / 100.
    written = []
    for i, block in enumerate(spec["blocks"]):
        for seed in (0, 1):
            for promptset in block["columns"][0]["promptsets"]:
                written.append(write_score(tmp_path, f"ft-80-kd-pruned-s{seed}", promptset, "judge",
                                           {"style_acc": 0.1 * i + seed / 100}, scale=block["scale"]))
    fig, frame = build_figure(spec, scores=written)
    cells = frame[frame["column"] == "UA removal prompts"].set_index("row")
    for i, block in enumerate(spec["blocks"]):
        assert cells.loc[f"{block['name']}: distilled", "mean"] == pytest.approx(100 * (1 - 0.1 * i - 0.005))
        assert cells.loc[f"{block['name']}: distilled", "n"] == 2
    # Every other cell is a note (never a number), one world's missing scores named in its block.
    notes = frame[frame["column"] == ""]
    assert set(notes["world"]) == {b["name"] for b in spec["blocks"]}
    assert all(note.startswith(f"{world}: not built: ") for note, world in zip(notes["note"], notes["world"]))
    assert frame.loc[frame["column"] == "", "mean"].isna().all()


@pytest.fixture(scope="module")
def jobs() -> list:
    return dvc_sync.dag_jobs()


def test_variants_rebuild_from_their_data_and_reuse_the_teacher_when_the_images_are_the_same(jobs):
    made = {o: j for j in jobs for o in j.outputs}
    assert made["results/tiny-near/data"].rule == "prepare_data"
    for artifact in ("base", "evaluator"):
        assert made[f"results/tiny-near/{artifact}"].rule == "share_base_world"
        assert made[f"results/tiny-near/{artifact}"].inputs == (f"results/tiny/{artifact}",)
    assert "results/tiny-near/vae" not in made  # only the teacher's training reads it, and that is copied
    assert made["results/tiny-seed1/base"].rule == "train_base"  # another world seed: another teacher
    assert made["results/tiny-near/aptp-80"].rule == "prune_aptp"  # APTP reads D_f
    assert "results/tiny-otherset/samples/ft-80-kd-pruned-s2/remove_speckle" in made
    assert made["results/tiny-otherset/samples/ft-80-kd-pruned-s2/remove_speckle"].rule == "sample_bundle_otherset"
    # The table is the only figure reading variants: a variant builds what it needs, no more.
    variant_models = {Path(o).parts[2] for o in made if re.match(r"results/tiny-", o) and "/scores/" not in o
                      and "/samples/" not in o}
    assert variant_models <= {"data", "base", "vae", "evaluator", "aptp-80", "aptp-55", "expert-80", "expert-55"} | {
        f"{m}-s{s}" for m in ("ft-80-kd-pruned", "esdx-artists", "uce-artists", "conceptprune-artists", "bilevel-artists")
        for s in (0, 1, 2)}


def test_adding_variants_leaves_the_configured_scales_stages_as_they_were(jobs, tmp_path):
    """dvc.yaml of the config without its variants is the same for every stage it has: the
    configured scale's jobs, commands, deps and params do not change; the variants only add stages."""
    cfg = load()
    del cfg["generalisation"], cfg["figures"]["table_generalisation"]
    plain = tmp_path / "config.yaml"
    plain.write_text(yaml.safe_dump(cfg, sort_keys=False))
    without = dvc_sync.stages_of(dvc_sync.dag_jobs(str(plain)))
    with_variants = dvc_sync.stages_of(jobs)
    assert without == {name: with_variants[name] for name in without}
    added = set(with_variants) - set(without)
    assert added and all(re.search(r"-tiny-(near|otherset|seed1)$", n) for n in added - {"report_table_generalisation"})


def test_a_variant_job_gets_the_overlaid_world_and_the_base_job_the_config_world():
    """The jobs' --params (dry run): the base world's JSON is the config's section unchanged."""
    result = subprocess.run(["snakemake", "-n", "-p", "--forceall", "results/tiny/data", "results/tiny-near/data"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    cfg = load()
    base_line = next(line for line in out.splitlines() if "prepare-data" in line and "results/tiny/data" in line)
    near_line = next(line for line in out.splitlines() if "prepare-data" in line and "results/tiny-near/data" in line)
    assert json.dumps(cfg["world"], sort_keys=True) in base_line.replace("'\\''", "'")
    assert json.dumps(overlaid(cfg, "near")["world"], sort_keys=True) in near_line.replace("'\\''", "'")
