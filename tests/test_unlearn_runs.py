"""Two-stage run names and continual stages are read in one place (unlearn/runs.py,
unlearn/stages.py): rule unlearn's wildcard, its input model and the upper-level names agree."""

from __future__ import annotations

import re

import pytest

from pruneforget.unlearn import METHODS, UPPER_METHODS
from pruneforget.unlearn.runs import NAME_PATTERN, UnlearnRun, parse_run
from pruneforget.unlearn.stages import stage_concepts, stage_section
from pruneforget.unlearn.upper import UPPER


@pytest.mark.parametrize("name, run, source", [
    ("esdx-artists-s0", UnlearnRun("esdx", "artists", 0), "ft-80-kd-pruned-s0"),
    ("uce-global-s2", UnlearnRun("uce", "global", 2), "ft-80-kd-pruned-s2"),
    ("esd-artists-taylor-s1", UnlearnRun("esd", "artists", 1, "taylor"), "ft-80-taylor-kd-pruned-s1"),
    ("esdadv-artists-s0", UnlearnRun("esdadv", "artists", 0), "ft-80-kd-pruned-s0"),
    ("esdall-first-blocks-s0", UnlearnRun("esdall", "first", 0, "blocks"), "ft-80-blocks-kd-pruned-s0"),
    ("esdx-later-s4", UnlearnRun("esdx", "later", 4), "esdx-first-s4"),
    ("conceptprune-later-magnitude-s1", UnlearnRun("conceptprune", "later", 1, "magnitude"),
     "conceptprune-first-magnitude-s1"),
])
def test_names_parse_to_their_runs_and_the_model_they_start_from(name, run, source):
    assert parse_run(name) == run
    assert re.fullmatch(NAME_PATTERN, name)
    assert run.source() == source


@pytest.mark.parametrize("name", ["esdx-cats-s0", "esdz-artists-s0", "esdx-artists-aptp-s0", "bilevel-artists-s0",
                                  "ft-80-kd-pruned-s0", "esdx-artists", "esdx-artists-taylor-uce-s0"])
def test_other_names_are_neither_parsed_nor_matched_by_the_rule(name):
    assert not re.fullmatch(NAME_PATTERN, name)
    with pytest.raises(ValueError, match="not a two-stage unlearning run name"):
        parse_run(name)


def test_the_upper_level_names_the_rules_parse_are_the_registry():
    assert sorted(UPPER_METHODS) == sorted(UPPER)
    # Every two-stage ESD method is a method of the unlearn command, served by the ESD module.
    assert {m for m, module in METHODS.items() if module == "esd"} == {"esd", "esdx", "esdu", "esdall", "esdadv"}


def test_continual_stages_split_the_artist_setting_and_keep_its_other_keys():
    unlearn = {"artists": {"concepts": ["a", "b", "c"], "guide": "g", "preserve": ["p"]}, "global": {"concepts": ["n"]}}
    assert stage_section(unlearn, "first") == {"concepts": ["a"], "guide": "g", "preserve": ["p"]}
    assert stage_section(unlearn, "later")["concepts"] == ["b"]
    assert stage_section(unlearn, "both")["concepts"] == ["a", "b"]
    assert stage_section(unlearn, "global") == unlearn["global"]
    assert unlearn["artists"]["concepts"] == ["a", "b", "c"]  # not changed in place
    with pytest.raises(ValueError, match="two concepts"):
        stage_concepts(["a"], "later")
