"""The shared unlearning interface: bad input fails clearly for every method; the `unlearn` command
writes a loadable edited pipeline plus unlearn.json, and writes nothing when it fails; the config
checks and the rule at the paper scale."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import UNet2DConditionModel, UNet2DModel

from pruneforget.cli import main
from pruneforget.config import ConfigError, validate_config
from pruneforget.io import write_json
from pruneforget.models.load import load_pipeline
from pruneforget.unlearn import METHODS, method_module
from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "uce": {"lam": 0.5, "erase_scale": 1.0, "preserve_scale": None, "preserve_empty": True},
    "conceptprune": {"skill_ratio": 0.01, "select_ratio": 0.0, "scheduler": "ddim", "steps": 2, "guidance": 5.0, "batch_size": 4},
}
PAIRS = {"stripes": (("a red circle", "a red circle in the style of stripes"),)}


def unet_without_cross_attention(kind: str):
    if kind == "conditional":
        return UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
            mid_block_type=None, norm_num_groups=4, cross_attention_dim=384,
        )
    return UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)


@pytest.mark.parametrize("method", ["uce", "conceptprune"])
def test_empty_concept_list_is_rejected(tiny_pipe, method):
    with pytest.raises(UnlearnInputError, match="concept list is empty"):
        method_module(method).unlearn(tiny_pipe, ConceptSet(erase=(), pairs=PAIRS), PARAMS[method])


@pytest.mark.parametrize("method", ["uce", "conceptprune"])
def test_unknown_concept_word_is_rejected_by_name(tiny_pipe, method):
    with pytest.raises(UnlearnInputError, match="'⛧☊'.*tokenises to nothing.*UNK"):
        method_module(method).unlearn(tiny_pipe, ConceptSet(erase=("stripes", "⛧☊"), pairs=PAIRS), PARAMS[method])


@pytest.mark.parametrize("method", ["uce", "conceptprune"])
@pytest.mark.parametrize("kind", ["conditional", "unconditional"])
def test_model_without_cross_attention_is_rejected(tiny_pipe, method, kind):
    tiny_pipe.unet = unet_without_cross_attention(kind)
    with pytest.raises(UnlearnInputError, match="no cross-attention"):
        method_module(method).unlearn(tiny_pipe, ConceptSet(erase=("stripes",), pairs=PAIRS), PARAMS[method])


def test_concept_both_erased_and_preserved_is_rejected(tiny_pipe):
    with pytest.raises(UnlearnInputError, match="both erased and preserved"):
        method_module("uce").unlearn(tiny_pipe, ConceptSet(erase=("stripes",), preserve=("stripes",)), PARAMS["uce"])


def test_every_method_has_its_config_section():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    sections = {getattr(method_module(m), "SECTION", m) for m in METHODS}
    assert sections <= set(config["unlearn"])


def _unlearn_config(method: str) -> dict:
    return {
        "artists": {"concepts": ["stripes", "dots"], "guide": "plain", "preserve": ["checker"],
                    "prompt_pairs": {"subjects": "world", "base": "a {subject}", "target": "a {subject} in the style of {concept}"}},
        method: PARAMS[method],
    }


@pytest.fixture()
def saved(tiny_pipe, tmp_path):
    """The tiny pipeline saved as a model directory, and a data directory with its world.json."""
    tiny_pipe.save_pretrained(tmp_path / "model")
    write_json(tmp_path / "data" / "world.json",
               {"kind": "tiny", "labels": {"shape": ["circle", "square"], "colour": ["red", "blue"], "style": ["plain", "stripes"]}})
    return tmp_path


def _run(tmp_path: Path, method: str, params: dict, out: str) -> None:
    main(["unlearn", "--method", method, "--setting", "artists", "--model", str(tmp_path / "model"),
          "--data", str(tmp_path / "data"), "--params", json.dumps(params), "--seed", "1", "--out", str(tmp_path / out)])


def test_unlearn_command_writes_the_edited_pipeline_and_its_record(saved, tiny_pipe):
    _run(saved, "uce", _unlearn_config("uce"), "uce-artists-s1")
    out = saved / "uce-artists-s1"
    record = json.loads((out / "unlearn.json").read_text())
    assert record["method"] == "uce" and record["concepts"] == ["stripes", "dots"] and record["seconds"] > 0
    assert record["stats"]["edited_weights"] > 0
    edited = load_pipeline(out)
    reference = copy.deepcopy(tiny_pipe)
    method_module("uce").unlearn(reference, ConceptSet(erase=("stripes", "dots"), guide="plain", preserve=("checker",)), PARAMS["uce"])
    for (name, value), ref in zip(edited.unet.state_dict().items(), reference.unet.state_dict().values()):
        torch.testing.assert_close(value, ref, rtol=1e-5, atol=1e-6, msg=name)

    _run(saved, "conceptprune", _unlearn_config("conceptprune"), "conceptprune-artists-s1")
    out = saved / "conceptprune-artists-s1"
    record = json.loads((out / "unlearn.json").read_text())
    zeros = sum(int((v == 0).sum()) for k, v in load_pipeline(out).unet.state_dict().items() if k.endswith("ff.net.2.weight"))
    assert zeros == record["stats"]["zeroed_weights"] > 0


def test_unlearn_command_fails_before_writing_anything(saved):
    bad = _unlearn_config("uce")
    bad["artists"]["concepts"] = ["stripes", "⛧☊"]
    with pytest.raises(SystemExit, match="⛧☊"):
        _run(saved, "uce", bad, "uce-artists-s1")
    assert not (saved / "uce-artists-s1").exists()
    with pytest.raises(SystemExit, match="no 'conceptprune' entry"):
        _run(saved, "conceptprune", _unlearn_config("uce"), "conceptprune-artists-s1")


@pytest.mark.parametrize(
    "config_file, edit, key",
    [
        ("config/config.yaml", lambda u: u["artists"].update(concepts=["not a style"]), "unlearn.artists.concepts"),
        ("config/config.yaml", lambda u: u["global"].update(guide="van gogh"), "unlearn.global.guide"),
        ("config/config.yaml", lambda u: u["artists"].update(preserve=["stripes"]), "unlearn.artists"),
        ("config/sd21.yaml", lambda u: u["artists"]["prompt_pairs"].update(subjects="world"), "unlearn.artists.prompt_pairs.subjects"),
        ("config/sd21.yaml", lambda u: u["global"]["prompt_pairs"].update(target="a {thing}, {subject}"), "unlearn.global.prompt_pairs.target"),
    ],
)
def test_bad_unlearn_config_is_rejected_naming_the_key(config_file, edit, key):
    config = yaml.safe_load((ROOT / config_file).read_text())
    edit(config["unlearn"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config)


def test_unlearn_rule_dry_runs_at_paper_scale_on_a_gpu(tmp_path):
    """Both methods and settings from the distilled model of a seed, with the unlearn resources.
    (The distilled model's rule belongs to fine-tuning; an empty stand-in directory takes its place.)"""
    for item in ("Snakefile", "rules", "workflow", "config", "envs", "src", "slurm"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / item)
    (tmp_path / "results/sd21/ft-80-kd-pruned-s0").mkdir(parents=True)
    targets = ["results/sd21/uce-artists-s0", "results/sd21/conceptprune-global-s0"]
    result = subprocess.run(["snakemake", "-n", "--profile", "slurm", "--configfile", "config/sd21.yaml", "--", *targets],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = out.split("rule unlearn:")[1:]
    assert len(jobs) == 2
    for job in jobs:
        assert "input: results/sd21/ft-80-kd-pruned-s0, results/sd21/data" in job
        assert "gpu=1" in job and "runtime=120" in job
    assert "--method uce --setting artists" in out and "--method conceptprune --setting global" in out
    assert '"Vincent van Gogh"' in out and '"bodily fluids"' in out
