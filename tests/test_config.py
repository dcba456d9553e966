"""The config schema and cross-field checks reject bad configs, naming the key, and accept ours."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pruneforget.config import ConfigError, check_config, validate_config
from pruneforget.io import is_local_path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["config/config.yaml", "config/sd21.yaml", "config/micro.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_pass_schema_and_cross_checks(name):
    validate_config(load(name))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_resource_group_the_rules_ask_for_is_a_resources_key_of_each_config(name):
    """A group misplaced outside `resources:` (or missing) leaves its rule on Snakemake's defaults:
    a paper-scale bilevel run would go to SLURM with no GPU and one process."""
    import re

    used = set()
    for smk in (ROOT / "rules").glob("*.smk"):
        used |= set(re.findall(r'(?:resources_of|threads_of|launcher)\("(\w+)"\)', smk.read_text()))
    assert {"bilevel", "finetune", "unlearn"} <= used
    config = load(name)
    needed = used - ({"evaluator", "vae"} if config["world"]["kind"] != "tiny" else set())  # only the tiny world trains them
    assert needed <= set(config["resources"]), sorted(needed - set(config["resources"]))
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert used <= set(schema["properties"]["resources"]["properties"])


def test_unknown_key_is_rejected_by_name():
    config = load("config/config.yaml")
    config["sample"]["stpes"] = 25
    with pytest.raises(ConfigError, match=r"sample\.stpes"):
        validate_config(config)


def test_unknown_top_level_section_is_rejected_by_name():
    config = load("config/config.yaml")
    config["finetun"] = {}
    with pytest.raises(ConfigError, match="finetun"):
        validate_config(config)


def test_removed_style_missing_from_styles_is_rejected():
    config = load("config/config.yaml")
    config["world"]["remove_styles"] = ["stripes", "van gogh"]
    with pytest.raises(ConfigError, match=r"world\.remove_styles.*'van gogh'"):
        check_config(config)


@pytest.mark.parametrize("key", [("base", "unet", "steps"), ("base", "vae", "steps"), ("sample", "steps"), ("evaluator", "steps")])
@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_step_count_is_rejected_naming_the_key(key, value):
    config = load("config/config.yaml")
    node = config
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    dotted = ".".join(key)
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
        check_config(config)
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
        validate_config(config)


def test_zero_warmup_steps_is_allowed():
    config = load("config/config.yaml")
    config["base"]["unet"]["warmup_steps"] = 0
    validate_config(config)


def test_missing_local_model_path_is_rejected(tmp_path):
    config = load("config/sd21.yaml")
    config["base"]["pretrained"] = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=r"base\.pretrained.*no-such-model"):
        check_config(config)


def test_existing_local_model_path_and_hub_id_are_accepted(tmp_path):
    config = load("config/sd21.yaml")
    config["base"]["pretrained"] = str(tmp_path)
    check_config(config)
    config["base"]["pretrained"] = "stabilityai/stable-diffusion-2-1"
    check_config(config)


@pytest.mark.parametrize(
    "value, local",
    [("stabilityai/stable-diffusion-2-1", False), ("gpt2", False), ("./sd21", True), ("/models/sd21", True),
     ("~/sd21", True), ("../sd21", True), ("data/models/sd21", True)],
)
def test_local_paths_are_told_from_hub_ids(value, local):
    assert is_local_path(value) is local


def test_coco_without_download_needs_an_existing_root(tmp_path):
    config = load("config/sd21.yaml")
    config["world"]["download"] = False
    config["world"]["root"] = str(tmp_path / "coco")
    with pytest.raises(ConfigError, match=r"world\.root"):
        check_config(config)
    (tmp_path / "coco").mkdir()
    check_config(config)


def test_tiny_world_needs_an_evaluator_section():
    config = load("config/config.yaml")
    del config["evaluator"]
    with pytest.raises(ConfigError, match="evaluator"):
        validate_config(config)


def test_coco_world_rejects_tiny_world_keys():
    config = load("config/sd21.yaml")
    config["world"]["shapes"] = ["circle"]
    with pytest.raises(ConfigError, match=r"world\.shapes"):
        validate_config(config)


def test_every_schema_key_documents_itself():
    """Each property in the schema carries a description (unit and paper value live there)."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    undocumented = []

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    undocumented.append(f"{path}.{name}")
            for key, sub in node.items():
                if key not in ("if", "then"):  # conditions restate keys documented elsewhere
                    walk(sub, f"{path}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(schema, "")
    assert not undocumented, undocumented


def test_shipped_configs_are_not_modified_by_validation():
    config = load("config/config.yaml")
    before = copy.deepcopy(config)
    validate_config(config)
    assert config == before


def test_one_seed_overlay_merges_onto_the_tiny_config_and_keeps_three_seeds_for_the_curves():
    from snakemake.utils import update_config

    from pruneforget.report.specs import resolve_figure

    config = load("config/config.yaml")
    update_config(config, load("config/one_seed.yaml"))  # what --configfile a b does
    validate_config(config)
    assert resolve_figure(config, "table1")["seeds"] == [0]
    assert resolve_figure(config, "fig4")["seeds"] == resolve_figure(config, "fig5")["seeds"] == [0, 1, 2]
    assert resolve_figure(config, "fig4")["groups"] == load("config/config.yaml")["figures"]["fig4"]["groups"]


def test_a_uce_guide_that_is_also_erased_is_rejected():
    """A guide equal to an erased concept maps the concept onto itself: nothing is erased."""
    bad = load("config/config.yaml")
    bad["unlearn"]["artists"]["guide"] = bad["unlearn"]["artists"]["concepts"][0]
    with pytest.raises(ConfigError, match=r"unlearn\.artists\.guide: .* is also erased"):
        check_config(bad)


def test_an_esd_anchor_that_is_also_erased_is_rejected():
    bad = load("config/config.yaml")
    bad["unlearn"]["esd"]["anchor"] = bad["unlearn"]["global"]["concepts"][0]
    with pytest.raises(ConfigError, match=r"unlearn\.esd\.anchor: .* is erased in unlearn\.\w+\.concepts"):
        check_config(bad)


def test_the_methods_refuse_a_guide_or_anchor_that_is_erased():
    """The same checks where a command meets its concepts (a config is not the only way in)."""
    from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError
    from pruneforget.unlearn.esd import esd_prompts

    with pytest.raises(UnlearnInputError, match="guide 'stripes' is one of the concepts to erase"):
        ConceptSet(erase=["stripes", "dots"], guide="stripes")
    with pytest.raises(UnlearnInputError, match="anchor 'dots' is one of the concepts to erase"):
        esd_prompts(ConceptSet(erase=["stripes", "dots"]), "concept", "dots")


def test_a_micro_batch_that_does_not_divide_the_batch_is_rejected_by_the_config_check():
    bad = load("config/config.yaml")
    bad["finetune"]["micro_batch_size"] = 5
    with pytest.raises(ConfigError, match=r"finetune\.micro_batch_size: 5 x 1 process\(es\).*does not divide finetune\.batch_size 32"):
        check_config(bad)
    paper = load("config/sd21.yaml")
    paper["finetune"]["micro_batch_size"] = 16  # 16 x 8 GPUs > 64
    with pytest.raises(ConfigError, match=r"16 x 8 process\(es\) \(resources\.finetune\.gpu\)"):
        check_config(paper)


def test_a_malformed_yaml_file_is_named_with_its_line(tmp_path):
    from pruneforget.config import read_config_file

    path = tmp_path / "config.yaml"
    path.write_text("scale: tiny\nworld:\n  seed: [0, 1\n  kind: tiny\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 4, column 7: .*fix the YAML there"):
        read_config_file(path)
    assert read_config_file(ROOT / "config/config.yaml")["scale"] == "tiny"


@pytest.mark.parametrize("entry, message", [
    ("val", "'val' cannot be bundled"),
    ("retain", "names a prompt set twice"),
])
def test_a_sample_bundle_holds_only_sets_sampled_alike(entry, message):
    config = load("config/config.yaml")
    config["sample"]["bundle"] = ["retain", entry]
    with pytest.raises(ConfigError, match=rf"sample\.bundle: .*{message}"):
        validate_config(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_yaml12_rewrite_of_the_config_reads_the_same(name):
    """`dvc exp run -S` rewrites config/config.yaml with ruamel (YAML 1.2), which drops the quotes
    of "no"; read back by PyYAML (YAML 1.1) it would be False. The Snakefile restores it."""
    import io

    import yaml
    from ruamel.yaml import YAML

    from pruneforget.config import restore_yaml11_strings

    original = load(name)
    buffer = io.StringIO()
    YAML().dump(original, buffer)  # how DVC writes it back
    reread = yaml.safe_load(buffer.getvalue())
    assert reread != original  # the hazard: "no" read as False, 1.0e-6 as a string
    assert restore_yaml11_strings(reread) == original
    validate_config(reread)
